// IR expression → WGSL statements. Every kernel evaluates IR nodes through this one generator; what differs
// between kernels is where leaves come from (a Resolver): inputs read from global memory, features already
// staged in workgroup memory, positions. Axis sizes are compile-time constants, so loops have literal bounds.
// The statements go into a Block (wgsl-block.ts), which names them.
import { ropeInvFreq } from '../../src/ir/rope.ts';
import { assertNever, type Id, type Node, type Program } from '../../src/ir/types.ts';
import type { Block, Scope } from './wgsl-block.ts';

/** WGSL u32 expressions for the index along each axis of the element being computed. */
export type Index = Readonly<Record<string, string>>;

/** The WGSL u32 variable that holds the token position a token-side node is read at. */
export type Where = string;

/**
 * Supplies leaves and short-circuits: returns a WGSL f32 expression for (node, index, where), or null to let
 * the generator compute the node from its operands. `at` is the block the value is being computed in: a
 * resolver may emit statements there first (a gradient stage computes a tensor it does not store that way).
 */
export type Resolver = (n: Node, idx: Index, where: Where, at: Block) => string | null;

/** A softmax's max and Σ exp(x − max) over its axis, as WGSL f32 expressions. */
export interface SoftmaxStats {
  readonly max: string;
  readonly sum: string;
}

/** Supplies a softmax's statistics already computed (staged once per row: row-quantities.ts), or null to compute them. */
export type StatsResolver = (n: Extract<Node, { op: 'softmax' }>, idx: Index, where: Where) => SoftmaxStats | null;

/**
 * The WGSL u32 variables holding the query and key positions (absolute), and optionally an f32 expression added
 * to a position where a score reads it as a number (a reversed gradient stage numbers its positions −(T−1) … 0).
 */
export interface Positions {
  readonly i: string;
  readonly j: string;
  readonly offset?: string;
}

export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`cannot write ${x} as a WGSL f32 literal`);
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return `${x}.0`;
  const s = x.toString();
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

const UNARY: Record<string, (x: string) => string> = {
  neg: (x) => `(-${x})`,
  exp: (x) => `exp(${x})`,
  log: (x) => `log(${x})`,
  elu: (x) => `select(exp(${x}) - 1.0, ${x}, ${x} > 0.0)`,
  relu: (x) => `max(${x}, 0.0)`,
  sigmoid: (x) => `(1.0 / (1.0 + exp(-${x})))`,
  silu: (x) => `(${x} / (1.0 + exp(-${x})))`,
  cos: (x) => `cos(${x})`,
  sin: (x) => `sin(${x})`,
  sqrt: (x) => `sqrt(${x})`,
  abs: (x) => `abs(${x})`,
  tanh: (x) => `tanh(${x})`,
  recip: (x) => `(1.0 / ${x})`,
  step: (x) => `select(0.0, 1.0, ${x} > 0.0)`,
};

/**
 * Evaluates IR nodes into a Block: `value` emits the statements that compute a node at an index and returns the
 * name holding it. A node already computed at the same index and position in the block or a block around it
 * is reused, not recomputed.
 */
export class ExprGen {
  private readonly computed = new Map<Scope, Map<string, string>>();

  constructor(
    readonly program: Program,
    readonly sizes: Readonly<Record<string, number>>,
    readonly resolve: Resolver,
    readonly pos: Positions,
    readonly stats: StatsResolver = () => null,
  ) {}

  /** Emits into `at` the statements that compute node `id` at `idx` and returns the name of an f32 holding it. */
  value(at: Block, id: Id, idx: Index, where: Where): string {
    const n = this.program.nodes[id];
    const key = `${id}|${where}|${n.type.axes.map((a) => idx[a]).join(',')}`;
    for (let s: Scope | null = at.scope; s; s = s.parent) {
      const hit = this.computed.get(s)?.get(key);
      if (hit) return hit;
    }
    const expr = this.resolve(n, idx, where, at) ?? this.compute(at, n, idx, where);
    const name = at.let(`x${n.id}`, expr, `%${n.id} ${n.op}`);
    if (!this.computed.has(at.scope)) this.computed.set(at.scope, new Map());
    this.computed.get(at.scope)!.set(key, name);
    return name;
  }

  /** `for (l in 0..size(axis))` around body; values computed inside stay inside. */
  private loop(at: Block, axis: string, body: (b: Block, l: string) => void): void {
    at.for('l', '0u', (l) => `${l} < ${this.sizes[axis]}u`, body);
  }

  private reduceOver(at: Block, x: Id, axis: string, idx: Index, where: Where, init: string, step: (acc: string, v: string) => string): string {
    const acc = at.var('acc', init);
    this.loop(at, axis, (b, l) => {
      const v = this.value(b, x, { ...idx, [axis]: l }, where);
      b.line(`${acc} = ${step(acc, v)};`);
    });
    return acc;
  }

  /** Emits the loops over a softmax's axis that compute its max and Σ exp(x − max) at `idx` (whose axis is ignored). */
  softmaxStats(at: Block, n: Extract<Node, { op: 'softmax' }>, idx: Index, where: Where): SoftmaxStats {
    const max = this.reduceOver(at, n.x, n.axis, idx, where, '-3.4e38', (acc, v) => `max(${acc}, ${v})`);
    const sum = this.reduceOver(at, n.x, n.axis, idx, where, '0.0', (acc, v) => `${acc} + exp(${v} - ${max})`);
    return { max, sum };
  }

  private compute(at: Block, n: Node, idx: Index, where: Where): string {
    switch (n.op) {
      case 'input':
      case 'param':
        throw new Error(`internal: no resolver for ${n.op} %${n.id}`);
      case 'position': {
        const p = `f32(${n.which === 'i' ? this.pos.i : this.pos.j})`;
        return this.pos.offset ? `(${p} + ${this.pos.offset})` : p;
      }
      case 'const':
        return f32(n.value);
      case 'unary':
        return UNARY[n.fn](this.value(at, n.x, idx, where));
      case 'binary':
        return this.binary(at, n, idx, where);
      case 'sum':
        return this.reduceOver(at, n.x, n.axis, idx, where, '0.0', (acc, v) => `${acc} + ${v}`);
      case 'norm':
        return `sqrt(${this.reduceOver(at, n.x, n.axis, idx, where, '0.0', (acc, v) => `${acc} + ${v} * ${v}`)})`;
      case 'softmax': {
        const s = this.stats(n, idx, where) ?? this.softmaxStats(at, n, idx, where);
        return `exp(${this.value(at, n.x, idx, where)} - ${s.max}) / ${s.sum}`;
      }
      case 'matmul': {
        const acc = at.var('acc', '0.0');
        this.loop(at, n.axis, (b, l) => {
          const x = this.value(b, n.a, { ...idx, [n.axis]: l }, where);
          const y = this.value(b, n.b, { ...idx, [n.axis]: l }, where);
          b.line(`${acc} = ${acc} + ${x} * ${y};`);
        });
        return acc;
      }
      case 'concat':
        return this.concat(at, n, idx, where);
      case 'outer': {
        const w = this.sizes[n.from];
        const pos = idx[n.axis];
        const a = this.value(at, n.x, { ...idx, [n.from]: `(${pos} / ${w}u)` }, where);
        const b = this.value(at, n.x, { ...idx, [n.from]: `(${pos} % ${w}u)` }, where);
        return `${a} * ${b}`;
      }
      case 'at':
        return this.value(at, n.x, idx, n.which === 'i' ? this.pos.i : this.pos.j);
      case 'select': {
        const ix = this.value(at, n.index, idx, where);
        return this.value(at, n.x, { ...idx, [n.axis]: `u32(round(${ix}))` }, where);
      }
      case 'decay':
        return this.decay(at, n, idx, where);
      case 'rope':
        return this.rope(at, n, idx, where);
      default:
        return assertNever(n, 'op');
    }
  }

  private binary(at: Block, n: Extract<Node, { op: 'binary' }>, idx: Index, where: Where): string {
    const a = this.value(at, n.a, idx, where);
    const bn = this.program.nodes[n.b];
    if (n.fn === 'pow' && bn.op === 'const' && Number.isInteger(bn.value) && bn.value >= 1 && bn.value <= 4) {
      return Array(bn.value).fill(a).join(' * '); // exact for negative bases, unlike pow()
    }
    const b = this.value(at, n.b, idx, where);
    switch (n.fn) {
      case 'add': return `${a} + ${b}`;
      case 'sub': return `${a} - ${b}`;
      case 'mul': return `${a} * ${b}`;
      case 'div': return `${a} / ${b}`;
      case 'pow': return `pow(${a}, ${b})`;
      case 'max': return `max(${a}, ${b})`;
      case 'min': return `min(${a}, ${b})`;
      default: return assertNever(n.fn, 'binary fn');
    }
  }

  /** x_k's element at (pos − base_k) along its part, for the k whose slot range holds pos. */
  private concat(at: Block, n: Extract<Node, { op: 'concat' }>, idx: Index, where: Where): string {
    const r = at.var('cat', '0.0');
    const pos = idx[n.axis];
    let base = 0;
    at.ifChain(
      n.xs.map((x, k) => {
        const part = n.parts[k];
        const width = part === null ? 1 : this.sizes[part];
        const from = base;
        base += width;
        const inner = part === null ? idx : { ...idx, [part]: `(${pos} - ${from}u)` };
        return [`${pos} >= ${from}u && ${pos} < ${from + width}u`, (b: Block) => b.line(`${r} = ${this.value(b, x, inner, where)};`)] as const;
      }),
    );
    return r;
  }

  /**
   * rope(x)[c] at the token position `where` (src/ir/rope.ts): x[c]·cos a ∓ x[partner]·sin a, a = sign·p·ω_{c mod D/2},
   * with ω a module table of f32 constants and the angle reduced to [−π, π] before cos/sin (Cody–Waite with
   * 2π = 6.28125 + 0.0019353…, whose first part times any integer below 2¹⁵ is exact), so that only the f32
   * product p·ω itself is rounded, as in Hugging Face's float32 rotary embedding.
   */
  private rope(at: Block, n: Extract<Node, { op: 'rope' }>, idx: Index, where: Where): string {
    const D = this.sizes[n.axis];
    const half = D / 2;
    const w = ropeInvFreq(D, n);
    const values = Array.from(w, (x) => f32(Math.fround(x)));
    const table = at.scope.moduleDeclaration('ROPE_FREQ', `rope:${values.join(',')}`, (name) => `var<private> ${name}: array<f32, ${half}> = array<f32, ${half}>(${values.join(', ')});`);
    const c = idx[n.axis];
    const low = at.let('rlo', `${c} < ${half}u`);
    const x = this.value(at, n.x, idx, where);
    const xp = this.value(at, n.x, { ...idx, [n.axis]: `select(${c} - ${half}u, ${c} + ${half}u, ${low})` }, where);
    // the token's position as a number: a reversed gradient stage numbers its positions −(T−1) … 0 (pos.offset)
    const p = this.pos.offset ? `(f32(${where}) + ${this.pos.offset})` : `f32(${where})`;
    const a = at.let('ra', `${n.sign < 0 ? '-' : ''}${p} * ${table}[${c} % ${half}u]`);
    const k = at.let('rk', `round(${a} * 0.15915494309189535)`);
    const r = at.let('rr', `(${a} - ${k} * 6.28125) - ${k} * 0.0019353071795864769`);
    return `${x} * cos(${r}) + select(${xp}, -${xp}, ${low}) * sin(${r})`;
  }

  /** x^(i−j) for a parameter x; Π_{l=j+1..i} x_l for a token x, read token by token. */
  private decay(at: Block, n: Extract<Node, { op: 'decay' }>, idx: Index, where: Where): string {
    const x = this.program.nodes[n.x];
    const lag = `f32(${this.pos.i} - ${this.pos.j})`;
    if (x.type.side !== 'token') return `pow(${this.value(at, n.x, idx, where)}, ${lag})`;
    const acc = at.var('gate', '1.0');
    at.for('l', `${this.pos.j} + 1u`, (l) => `${l} <= ${this.pos.i}`, (b, l) => b.line(`${acc} = ${acc} * ${this.value(b, n.x, idx, l)};`));
    return acc;
  }
}

/** Row-major offset of `idx` in a tensor over `axes`, as a WGSL u32 expression. */
export function offset(axes: readonly string[], sizes: Readonly<Record<string, number>>, idx: Index, base = ''): string {
  let expr = base;
  for (const a of axes) {
    const i = idx[a];
    if (i === undefined) throw new Error(`internal: no index for axis ${a}`);
    expr = expr ? `(${expr}) * ${sizes[a]}u + ${i}` : i;
  }
  return expr || '0u';
}
