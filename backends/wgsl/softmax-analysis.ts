// What the softmax-attention kernels (softmax-chunked.ts prefill, softmax-decode.ts decoding, softmax-tree.ts
// verification) share: the one softmax term o_i = Σ_{j≤i} exp(s_ij) v_j / Σ_{j≤i} exp(s_ij), its logit's query-
// and key-side frontier (the per-token features s_ij is computed from), and the decoding state, a key/value cache:
//
//   state:kc<ID>  [capacity, b, NS, W_ID]   key feature ID (e.g. rope(k)[j]) of every position, per head slice
//   state:vc      [capacity, b, NS, NR]     the value's columns of every position
//
// Position-major, so a kernel indexes it without knowing the capacity and a longer cache keeps every offset. The
// capacity is the plan's maxLength (the model passes its maximum sequence length; DEFAULT_CACHE_POSITIONS
// otherwise), or t when a plan is allocated for a one-shot run of t tokens; the runtime refuses to run past it
// (src/runtime/compiled-attention.ts). The cache grows with t: nothing is ever folded or evicted.
import { frontier } from './layout.ts';
import type { Id, Program, Term } from '../../src/ir/types.ts';
import type { SoftmaxForm } from '../../src/ir/terms.ts';
import { count, type Sizes } from './common.ts';
import type { PlanBuffer } from './plan.ts';

/** Positions a cache holds when the caller does not say (a model says: its max_position_embeddings or less). */
export const DEFAULT_CACHE_POSITIONS = 2048;

/** Does the program hold softmax attention (and so run on these kernels)? */
export function isSoftmaxProgram(p: Program): boolean {
  return p.terms.some((t) => t.form.kind === 'softmax');
}

export interface SoftmaxFeature {
  readonly id: Id;
  /** The node's axes other than the head axes, flattened per head slice. */
  readonly axes: readonly string[];
  readonly W: number;
}

export interface SoftmaxAnalysis {
  readonly p: Program;
  readonly sizes: Sizes;
  readonly term: Term & { readonly form: SoftmaxForm };
  /** Output axes that index workgroups (the score's axes) and value columns. */
  readonly head: readonly string[];
  readonly rest: readonly string[];
  readonly NS: number;
  readonly NR: number;
  /** Elements of o per token. */
  readonly per: number;
  readonly query: readonly SoftmaxFeature[];
  readonly key: readonly SoftmaxFeature[];
  /** Floats per position of all query (key) features. */
  readonly WQ: number;
  readonly WK: number;
  readonly capacity: number;
  readonly buffers: readonly PlanBuffer[];
}

export const keyCache = (id: Id) => `state:kc${id}`;
export const VALUE_CACHE = 'state:vc';

/**
 * The analysis of a softmax program: exactly one term, softmax, alone in normalize(term, 0) (what the running max
 * needs; other terms would have to share it). Throws with the reason otherwise.
 */
export function analyseSoftmax(p: Program, sizes: Sizes, maxLength = DEFAULT_CACHE_POSITIONS): SoftmaxAnalysis {
  const soft = p.terms.filter((t) => t.form.kind === 'softmax');
  if (soft.length === 0) throw new Error(`internal: ${p.name} has no softmax term`);
  if (p.terms.length !== 1 || p.output.length !== 1) {
    throw new Error(`${p.name}: the softmax kernels run one softmax term alone (output normalize(${soft[0].name}, 0)); this variant has terms ${p.terms.map((t) => t.name).join(', ')}`);
  }
  if (!(Number.isInteger(maxLength) && maxLength >= 1)) throw new Error(`${p.name}: the key/value cache needs a positive number of positions, got ${maxLength}`);
  const term = soft[0] as Term & { form: SoftmaxForm };
  const scoreAxes = p.nodes[term.score].type.axes;
  const head = p.outAxes.filter((a) => scoreAxes.includes(a));
  const rest = p.outAxes.filter((a) => !scoreAxes.includes(a));
  const fr = frontier(p, term.form.logit);
  const feature = (id: Id): SoftmaxFeature => {
    const axes = p.nodes[id].type.axes.filter((x) => !head.includes(x));
    return { id, axes, W: count(axes, sizes) };
  };
  const query = fr.query.sort((a, b) => a - b).map(feature);
  const key = fr.key.sort((a, b) => a - b).map(feature);
  const NS = count(head, sizes);
  const NR = count(rest, sizes);
  const cache = (name: string, W: number): PlanBuffer => ({
    name,
    role: 'state',
    floats: (b, t) => Math.max(t, maxLength) * b * NS * W,
    shape: (b, t) => [Math.max(t, maxLength), b, NS, W],
  });
  const buffers = [...key.map((f) => cache(keyCache(f.id), f.W)), cache(VALUE_CACHE, NR)];
  return {
    p, sizes, term, head, rest, NS, NR, per: count(p.outAxes, sizes), query, key,
    WQ: query.reduce((n, f) => n + f.W, 0), WK: key.reduce((n, f) => n + f.W, 0),
    capacity: maxLength, buffers,
  };
}

/** WGSL index of element `off` of key feature `f` (or the value, W = NR) at position `pos` in its cache. */
export function cacheIndex(a: SoftmaxAnalysis, W: number, pos: string, off: string): string {
  return `(((${pos}) * dims.b + b) * ${a.NS}u + s) * ${W}u + ${off}`;
}

/** Offsets of each feature inside a row of WQ (or WK) floats staged in workgroup memory. */
export function featureOffsets(fs: readonly SoftmaxFeature[]): Map<Id, number> {
  const m = new Map<Id, number>();
  let at = 0;
  for (const f of fs) {
    m.set(f.id, at);
    at += f.W;
  }
  return m;
}

/** Workgroup floats of the flash kernel at chunk C: query rows, key rows, value rows, scores, accumulators, m/l/scale. */
export function softmaxSharedFloats(a: Pick<SoftmaxAnalysis, 'WQ' | 'WK' | 'NR'>, C: number): number {
  return C * a.WQ + C * a.WK + C * a.NR + C * C + C * a.NR + 3 * C;
}
