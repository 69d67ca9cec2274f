// Local vector–Jacobian products as IR: given a node n and an expression E for its adjoint, the expressions its
// operands receive. Shared by the pair-level pass (pair-adjoints.ts) and the token/parameter sweeps (sweep.ts).
//
// Adjoints may be *implicitly broadcast*: E's axes are a subset of n's axes, and E stands for its copy along the
// missing ones (the adjoint of sum(x, a) is the adjoint of the sum, unchanged, broadcast along a). Reducing such an
// adjoint onto an operand that lacks an axis therefore sums where E has the axis and multiplies by the axis's size
// where it does not; the size is spelled Σ_a (E ⊙ 1_a) with the builtin ones along a, since the IR has no size node.
//
// Derivatives (x the operand, y = n): exp′ = y, log′ = 1/x, elu′ = min(eˣ, 1), relu′ = step(x), sigmoid′ = y(1−y),
// silu′ = σ(x)(1 + x(1−σ(x))), cos′ = −sin x, sin′ = cos x, sqrt′ = 1/(2y), abs′ = step(x) − step(−x),
// tanh′ = 1 − y², recip′ = −y², step′ = 0; d(a/b) = (E/b, −E y/b), d(aᵇ) = (E b aᵇ⁻¹, E y log a),
// d max(a, b) = (E step(a−b), E (1 − step(a−b))), d min(a, b) = (E step(b−a), E (1 − step(b−a)));
// norm: E x/y; softmax: y ⊙ (E − Σ_axis E ⊙ y); matmul over k: (Σ_{b's other axes} E ⊙ b, …);
// concat and outer: matmuls with 0/1 selection builtins (the IR has no slice or reshape); rope: the inverse rotation.
import type { GraphBuilder } from '../../src/ir/builder.ts';
import type { Builtin } from '../../src/ir/grad.ts';
import { ropeOp } from '../../src/ir/rope.ts';
import { assertNever, type BinaryFn, type Id, type Node, type Op, type UnaryFn } from '../../src/ir/types.ts';

/** The builtin constant tensors, created on demand as leaves of whichever graph asks. */
export class Builtins {
  private readonly defs = new Map<string, Builtin>();

  list(): Builtin[] {
    return [...this.defs.values()];
  }

  private leaf(g: GraphBuilder, def: Builtin): Id {
    this.defs.set(def.name, def);
    const token = def.kind === 'ones' && def.token;
    return g.leaf({ op: token ? 'input' : 'param', name: def.name }, def.axes);
  }

  /** Ones along one axis, parameter-shaped: multiplying by it broadcasts, and Σ_a (x ⊙ it) is |a|·x. */
  ones(g: GraphBuilder, axis: string): Id {
    return this.leaf(g, { name: `one.${axis}`, kind: 'ones', token: false, axes: [axis] });
  }

  /** A per-token tensor of ones over `axes` (the value of a term that sums its score alone). */
  tokenOnes(g: GraphBuilder, axes: readonly string[]): Id {
    return this.leaf(g, { name: `ones.${axes.join('.') || 'scalar'}`, kind: 'ones', token: true, axes });
  }

  concatPart(g: GraphBuilder, n: Extract<Node, { op: 'concat' }>, k: number): Id {
    const part = n.parts[k];
    return this.leaf(g, { name: `sel.${n.axis}.${k}`, kind: 'concat-part', axis: n.axis, parts: n.parts, part: k, axes: part === null ? [n.axis] : [n.axis, part] });
  }

  outerFactor(g: GraphBuilder, n: Extract<Node, { op: 'outer' }>, which: 0 | 1): Id {
    return this.leaf(g, { name: `sel.${n.axis}.${which === 0 ? 'first' : 'second'}`, kind: 'outer-factor', axis: n.axis, from: n.from, which, axes: [n.axis, n.from] });
  }
}

/** Small constructors over a builder. */
export class Ops {
  constructor(
    readonly g: GraphBuilder,
    readonly builtins: Builtins,
  ) {}

  add(op: Op): Id {
    return this.g.add(op);
  }
  c(value: number): Id {
    return this.g.const(value);
  }
  un(fn: UnaryFn, x: Id): Id {
    return this.g.add({ op: 'unary', fn, x });
  }
  bin(fn: BinaryFn, a: Id, b: Id): Id {
    return this.g.add({ op: 'binary', fn, a, b });
  }
  mul(a: Id, b: Id): Id {
    return this.bin('mul', a, b);
  }
  sum(x: Id, axis: string): Id {
    return this.g.add({ op: 'sum', x, axis });
  }
  axes(id: Id): readonly string[] {
    return this.g.type(id).axes;
  }

  /**
   * The adjoint an operand over `target` receives from E, an adjoint over (a subset of) `full` ⊇ target: Σ over
   * E's axes outside target, times |a| for each axis a of full outside target that E lacks.
   */
  reduceTo(E: Id, target: readonly string[], full: readonly string[]): Id {
    let e = E;
    const has = this.axes(E);
    for (const a of has) if (!target.includes(a)) e = this.sum(e, a);
    for (const a of full) if (!target.includes(a) && !has.includes(a)) e = this.sum(this.mul(e, this.builtins.ones(this.g, a)), a);
    return e;
  }

  /** x with axes exactly `axes` in that order (x's axes must be a subset): a leading product of ones fixes both. */
  ordered(x: Id, axes: readonly string[]): Id {
    const have = this.axes(x);
    if (have.join() === axes.join()) return x;
    const lead = axes.reduce<Id | null>((acc, a) => (acc === null ? this.builtins.ones(this.g, a) : this.mul(acc, this.builtins.ones(this.g, a))), null);
    return lead === null ? x : this.mul(lead, x);
  }
}

/**
 * [operand, contribution] pairs for the operands `wants` accepts. Not for the position-dependent ops (`at`,
 * `select`, `decay`), which their callers handle.
 */
export function vjp(o: Ops, n: Node, E: Id, wants: (id: Id) => boolean): [Id, Id][] {
  const Y = n.type.axes;
  const out: [Id, Id][] = [];
  const give = (x: Id, contribution: () => Id) => {
    if (wants(x)) out.push([x, o.reduceTo(contribution(), o.axes(x), Y)]);
  };
  const { mul, un, bin, c } = { mul: o.mul.bind(o), un: o.un.bind(o), bin: o.bin.bind(o), c: o.c.bind(o) };
  switch (n.op) {
    case 'unary': {
      const x = n.x;
      const y = n.id;
      const d: Record<Exclude<UnaryFn, 'neg' | 'step'>, () => Id> = {
        exp: () => y,
        log: () => un('recip', x),
        elu: () => bin('min', un('exp', x), c(1)),
        relu: () => un('step', x),
        sigmoid: () => mul(y, bin('sub', c(1), y)),
        silu: () => {
          const s = un('sigmoid', x);
          return mul(s, bin('add', c(1), mul(x, bin('sub', c(1), s))));
        },
        cos: () => un('neg', un('sin', x)),
        sin: () => un('cos', x),
        sqrt: () => un('recip', mul(c(2), y)),
        abs: () => bin('sub', un('step', x), un('step', un('neg', x))),
        tanh: () => bin('sub', c(1), mul(y, y)),
        recip: () => un('neg', mul(y, y)),
      };
      const fn = n.fn;
      if (fn === 'step') return out; // zero almost everywhere
      give(x, () => (fn === 'neg' ? un('neg', E) : mul(E, d[fn]())));
      return out;
    }
    case 'binary': {
      const { a, b } = n;
      switch (n.fn) {
        case 'add':
          give(a, () => E);
          give(b, () => E);
          break;
        case 'sub':
          give(a, () => E);
          give(b, () => un('neg', E));
          break;
        case 'mul':
          give(a, () => mul(E, b));
          give(b, () => mul(E, a));
          break;
        case 'div':
          give(a, () => bin('div', E, b));
          give(b, () => un('neg', bin('div', mul(E, n.id), b)));
          break;
        case 'pow':
          give(a, () => mul(E, mul(b, bin('pow', a, bin('sub', b, c(1))))));
          give(b, () => mul(E, mul(n.id, un('log', a))));
          break;
        case 'max':
        case 'min': {
          const first = n.fn === 'max' ? un('step', bin('sub', a, b)) : un('step', bin('sub', b, a));
          give(a, () => mul(E, first));
          give(b, () => mul(E, bin('sub', c(1), first)));
          break;
        }
      }
      return out;
    }
    case 'sum':
      give(n.x, () => E);
      return out;
    case 'norm':
      give(n.x, () => mul(n.x, bin('div', E, n.id)));
      return out;
    case 'softmax':
      give(n.x, () => mul(n.id, bin('sub', E, o.sum(mul(E, n.id), n.axis))));
      return out;
    case 'matmul': {
      // y = Σ_k a ⊙ b: E is broadcast along k; a receives Σ over b's axes that a lacks of E ⊙ b
      const P = [...o.axes(n.a), ...o.axes(n.b).filter((x) => !o.axes(n.a).includes(x))];
      if (wants(n.a)) out.push([n.a, o.reduceTo(mul(E, n.b), o.axes(n.a), P)]);
      if (wants(n.b)) out.push([n.b, o.reduceTo(mul(E, n.a), o.axes(n.b), P)]);
      return out;
    }
    case 'concat': {
      const rest = Y.slice(0, -1);
      const hasAxis = o.axes(E).includes(n.axis);
      n.xs.forEach((x, k) => {
        if (!wants(x)) return;
        const part = n.parts[k];
        const partAxes = part === null ? rest : [...rest, part];
        // part k of E: Σ_f E[…, f] S_k[f, p] (E constant along f: E itself, broadcast along the part)
        const piece = hasAxis ? o.add({ op: 'matmul', a: E, b: o.builtins.concatPart(o.g, n, k), axis: n.axis }) : E;
        out.push([x, o.reduceTo(piece, o.axes(x), partAxes)]);
      });
      return out;
    }
    case 'outer': {
      if (!wants(n.x)) return out;
      const x = n.x;
      if (!o.axes(E).includes(n.axis)) {
        // E constant along p·q: dx[r] = Σ_q E x_q + Σ_p E x_p = 2 E Σ x
        out.push([x, mul(mul(E, c(2)), o.sum(x, n.from))]);
        return out;
      }
      // dx[r] = Σ_{pq} E[pq] (δ_pr x_q + x_p δ_qr), with x_q = Σ_r' F1[pq, r'] x[r'] and δ_pr = F0[pq, r]
      const F0 = o.builtins.outerFactor(o.g, n, 0);
      const F1 = o.builtins.outerFactor(o.g, n, 1);
      const xp = o.add({ op: 'matmul', a: x, b: F0, axis: n.from });
      const xq = o.add({ op: 'matmul', a: x, b: F1, axis: n.from });
      const first = o.add({ op: 'matmul', a: mul(E, xq), b: F0, axis: n.axis });
      const second = o.add({ op: 'matmul', a: mul(E, xp), b: F1, axis: n.axis });
      out.push([x, o.ordered(bin('add', first, second), o.axes(x))]);
      return out;
    }
    case 'rope': {
      // a rotation's adjoint is the opposite rotation at the same position; E must vary along the rotated axis
      const along = o.axes(E).includes(n.axis) ? E : mul(E, o.builtins.ones(o.g, n.axis));
      give(n.x, () => o.add(ropeOp(along, n.axis, n, n.sign === 1 ? -1 : 1)));
      return out;
    }
    case 'input':
    case 'param':
    case 'const':
    case 'position':
      return out;
    case 'at':
    case 'select':
    case 'decay':
      throw new Error(`internal: vjp of ${n.op} is its caller's business`);
    default:
      return assertNever(n, 'op');
  }
}
