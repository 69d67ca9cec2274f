// Builds one term stage: an ordinary Program whose terms are copied out of the master graph (the forward program
// plus the adjoint expressions), in forward or in reverse time.
//
// Reverse time. A sum over later positions, y_j = Σ_{i: (i,j) ∈ M} a(i, j), runs as a causal sum over the reversed
// sequence: reversed position p holds original token T_pad − 1 − p, the output position is p = T_pad − 1 − j and
// the summed one r = T_pad − 1 − i. Then
//   – the roles of i and j swap: a value read at i in a(i, j) is read at the summed position, i.e. at j in the
//     stage program (at.i ↔ at.j);
//   – the lag is unchanged: i − j = p − r. So causal, window(K) and centered(K) masks stay as they are, and a
//     score that depends on positions only through the lag keeps its lag (`sub(position i, position j)` is
//     copied as is; Toeplitz terms stay Toeplitz);
//   – an absolute position needs a rule: reversed positions are numbered −(T_pad − 1) … 0, so that position p
//     reads −(original position). Then original i = −(position j) and original j = −(position i), exactly; the
//     stage is marked `positions: negated` and the executor numbers its positions that way; a token's rope(x)
//     rotates by sign·p, so its sign flips too (rope(x, sign −1) at −p is rope(x) at p);
//   – group(C) and past_groups(C) stay aligned only when T_pad is a multiple of C: ⌊(T_pad−1−x)/C⌋ =
//     T_pad/C − 1 − ⌊x/C⌋, so "same group" and "earlier group" are preserved. The stage pads T; padded positions
//     are summed over only with a cotangent factor read there, which pads with 0, so they contribute nothing;
//   – a gate: Π_{l=j+1..i} α_l = Π_{m=r..p−1} α′_m with α′ the reversed α, but decay(x) in the stage program means
//     Π_{m=r+1..p} x_m. So the stage reads β_t = α_{t+1} (shifted by one, 1 past the end), reversed: the same
//     product, with no division by α (gates near 0 stay finite).
import { GraphBuilder } from '../../src/ir/builder.ts';
import type { Binding, TermStage } from '../../src/ir/grad.ts';
import { rebuild, termRoots } from '../../src/ir/rebuild.ts';
import { ropeOp } from '../../src/ir/rope.ts';
import { mapOperands, operands, type Id, type MaskAtom, type Op, type Program, type TensorDecl, type Term, type TermForm } from '../../src/ir/types.ts';
import { verify } from '../../src/ir/verify.ts';
import { positionFree } from './pair-adjoints.ts';
import { Ops, type Builtins } from './vjp.ts';

export interface StageContext {
  readonly forward: Program;
  /** The master graph: the forward program's nodes, cotangent leaves, adjoint expressions. */
  readonly master: GraphBuilder;
  readonly builtins: Builtins;
  /** The environment tensor that holds the per-token gate x (written by the gates map stage). */
  gateTensor(x: Id): string;
  /** How padded positions of a reversed stage fill this environment tensor. */
  padOf(tensor: string): Binding['pad'];
  /** The let that names a forward node, if any. */
  letName(id: Id): string | undefined;
}

export interface TermSpec {
  readonly mask: readonly MaskAtom[];
  readonly noncausal: boolean;
  /**
   * Classified quadratic as built (the passes keep a form once set): softmax attention's gradient terms, whose
   * scores are probabilities exp(logit − lse_i) under the unbounded causal mask, run in the parallel form.
   */
  readonly quadratic?: boolean;
}

const formOf = (spec: TermSpec): TermForm => (spec.quadratic ? { kind: 'quadratic' } : { kind: 'general' });

export class TermStageBuilder {
  readonly g: GraphBuilder;
  readonly o: Ops;
  private readonly copies = new Map<Id, Id>();
  private readonly bindings: Record<string, Binding> = {};
  private readonly leaves = new Map<string, Id>();
  private readonly lets: Record<string, Id> = {};
  private readonly terms: Term[] = [];
  private negated = false;

  constructor(
    private readonly ctx: StageContext,
    readonly time: 'forward' | 'reverse',
  ) {
    this.g = new GraphBuilder([], ctx.master.axes);
    this.o = new Ops(this.g, ctx.builtins);
  }

  private get reversed(): boolean {
    return this.time === 'reverse';
  }

  private leaf(kind: 'input' | 'param', local: string, axes: readonly string[], binding: Binding): Id {
    let id = this.leaves.get(local);
    if (id === undefined) {
      this.bindings[local] = binding;
      this.leaves.set(local, (id = this.g.leaf({ op: kind, name: local }, axes)));
    }
    return id;
  }

  /** The stage's copy of a master node (transformed to reverse time when the stage runs reversed). */
  copy(id: Id): Id {
    const hit = this.copies.get(id);
    if (hit !== undefined) return hit;
    const m = this.ctx.master;
    const n = m.node(id);
    let out: Id;
    const rev = this.reversed;
    if (n.op === 'input') out = this.leaf('input', n.name, n.type.axes, { tensor: n.name, pad: this.ctx.padOf(n.name) });
    else if (n.op === 'param') out = this.leaf('param', n.name, n.type.axes, { tensor: n.name, pad: 'zero' });
    else if (rev && n.op === 'position') {
      this.negated = true;
      out = this.o.un('neg', this.g.add({ op: 'position', which: n.which === 'i' ? 'j' : 'i' }));
    } else if (rev && n.op === 'rope') {
      // positions read −(original): the angle sign·p keeps the original position's when the sign flips
      this.negated = true;
      out = this.g.add(ropeOp(this.copy(n.x), n.axis, n, n.sign === 1 ? -1 : 1));
    } else if (rev && isLag(m, id)) out = this.g.add({ op: 'binary', fn: 'sub', a: this.g.add({ op: 'position', which: 'i' }), b: this.g.add({ op: 'position', which: 'j' }) });
    else if (rev && n.op === 'at') out = this.g.add({ op: 'at', x: this.copy(n.x), which: n.which === 'i' ? 'j' : 'i' });
    else if (rev && n.op === 'decay' && m.type(n.x).side === 'token') {
      const gate = this.ctx.gateTensor(n.x);
      out = this.g.add({ op: 'decay', x: this.leaf('input', `${gate}.next`, m.type(n.x).axes, { tensor: gate, shift: 1, pad: 'one' }) });
    } else {
      const { id: _i, type: _t, span: _s, ...op } = n;
      out = this.g.add(mapOperands(op as Op, (x) => this.copy(x)));
    }
    const name = this.ctx.letName(id);
    if (name !== undefined && this.lets[name] === undefined) this.lets[name] = out;
    this.copies.set(id, out);
    return out;
  }

  /** A term Σ_j M(i, j) score(i, j) ⊙ value_j, with score and value given as master nodes. */
  addTerm(name: string, spec: TermSpec, score: Id, value: Id): void {
    this.terms.push({ name, noncausal: spec.noncausal, mask: spec.mask, score: this.copy(score), value: this.copy(value), form: formOf(spec) });
  }

  /**
   * Terms for y_i = Σ_j M(i, j) a(i, j) over `axes` (a given as a master node, in this stage's time): each summand of
   * a is split into its key-side factors, which become the value (recomputed per token), and the rest, the score.
   */
  addSumOf(name: string, spec: TermSpec, a: Id, axes: readonly string[]): void {
    const o = this.o;
    summands(this.g, this.copy(a), 1).forEach(([sign, s], k) => {
      const fs = factors(this.g, s);
      const free = new Map<Id, boolean>();
      const keyed = fs.filter((f) => this.g.type(f).side === 'key' && positionFree(this.g, f, free));
      const rest = fs.filter((f) => !keyed.includes(f));
      const value = keyed.length
        ? o.ordered(keyed.map((f) => this.tokenOf(f)).reduce((x, y) => o.mul(x, y)), axes)
        : this.copy(this.ctx.builtins.tokenOnes(this.ctx.master, axes));
      let score = rest.length ? rest.reduce((x, y) => o.mul(x, y)) : o.c(1);
      if (sign < 0) score = o.un('neg', score);
      this.terms.push({ name: `${name}.${k}`, noncausal: spec.noncausal, mask: spec.mask, score, value, form: formOf(spec) });
    });
  }

  /** The per-token expression a position-free key-side value reads at j. */
  private tokenOf(id: Id): Id {
    const n = this.g.node(id);
    if (n.type.side !== 'key') return id;
    if (n.op === 'at') return n.x;
    const { id: _i, type: _t, span: _s, ...op } = n;
    return this.g.add(mapOperands(op as Op, (x) => this.tokenOf(x)));
  }

  finish(name: string, writes: string, why: string, outAxes: readonly string[]): TermStage {
    if (!this.terms.length) throw new Error(`internal: stage ${name} has no terms`);
    // every leaf is declared: copies of master leaves carry their binding; builtin leaves made here (the ones
    // that order a value's axes) read the builtin itself
    const leaves = this.g.nodes.flatMap((n) => (n.op === 'input' || n.op === 'param' ? [{ kind: n.op, decl: { name: n.name, axes: [...n.type.axes], id: n.id } as TensorDecl }] : []));
    for (const { decl } of leaves) this.bindings[decl.name] ??= { tensor: decl.name, pad: 'one' };
    const draft: Program = {
      name,
      file: this.ctx.forward.file,
      sizes: this.ctx.forward.sizes,
      axes: { ...this.g.axes },
      inputs: leaves.filter((l) => l.kind === 'input').map((l) => l.decl),
      params: leaves.filter((l) => l.kind === 'param').map((l) => l.decl),
      nodes: this.g.nodes,
      lets: this.lets,
      terms: this.terms,
      output: this.terms.map((t) => ({ kind: 'term', term: t.name })),
      outAxes: [...outAxes],
    };
    // keep only the leaves the terms read, then drop dead nodes and renumber
    const live = new Set<Id>();
    const stack = termRoots(draft);
    while (stack.length) {
      const id = stack.pop()!;
      if (live.has(id)) continue;
      live.add(id);
      stack.push(...operands(draft.nodes[id]));
    }
    const inputs = draft.inputs.filter((d) => live.has(d.id));
    const params = draft.params.filter((d) => live.has(d.id));
    const program = rebuild({ ...draft, inputs, params });
    verify(program);
    const used = new Set([...inputs, ...params].map((d) => d.name));
    const bindings = Object.fromEntries(Object.entries(this.bindings).filter(([k]) => used.has(k)));
    const sizes = this.reversed ? this.terms.flatMap((t) => t.mask.flatMap((m) => (m.kind === 'group' || m.kind === 'past_groups' ? [m.size] : []))) : [];
    return {
      kind: 'term',
      name,
      why,
      bindings,
      time: this.time,
      pad: sizes.reduce(lcm, 1),
      positions: this.negated ? 'negated' : 'forward',
      program,
      writes,
    };
  }
}

function isLag(g: GraphBuilder, id: Id): boolean {
  const n = g.node(id);
  if (n.op !== 'binary' || n.fn !== 'sub') return false;
  const a = g.node(n.a);
  const b = g.node(n.b);
  return a.op === 'position' && a.which === 'i' && b.op === 'position' && b.which === 'j';
}

/** The summands of an expression with their signs (through add, sub and neg). */
function summands(g: GraphBuilder, id: Id, sign: number): [number, Id][] {
  const n = g.node(id);
  if (n.op === 'binary' && (n.fn === 'add' || n.fn === 'sub')) return [...summands(g, n.a, sign), ...summands(g, n.b, n.fn === 'sub' ? -sign : sign)];
  if (n.op === 'unary' && n.fn === 'neg') return summands(g, n.x, -sign);
  return [[sign, id]];
}

/** The factors of a product (through mul). */
function factors(g: GraphBuilder, id: Id): Id[] {
  const n = g.node(id);
  return n.op === 'binary' && n.fn === 'mul' ? [...factors(g, n.a), ...factors(g, n.b)] : [id];
}

function gcd(a: number, b: number): number {
  return b ? gcd(b, a % b) : a;
}

function lcm(a: number, b: number): number {
  return (a * b) / gcd(a, b);
}
