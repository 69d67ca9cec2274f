// How much of the demo's shape the float64 oracle checks. The oracle interprets the IR (about 10 million state updates
// a second), so the paper's shape on a hardware GPU (b 4, t 4096, h 16, d 64: 1.1 G updates) would take it minutes
// (138 s on the H200's host). Past a budget it runs the first sequence's first tokens instead: a causal layer's outputs
// there depend on nothing later, so they are exactly the whole run's (test/demo-oracle.test.ts checks that in float64).
import type { Tensor } from '../tensor.ts';

/** State updates (b·t·h·d·e) the oracle runs whole by default: about 3 s. */
export const ORACLE_BUDGET = 34_000_000;

export interface OracleExtent {
  readonly whole: boolean;
  /** Sequences and tokens the oracle runs: all of them, or the first sequence's first `t` (a multiple of 64, ≥ 64). */
  readonly b: number;
  readonly t: number;
}

export function oracleExtent(b: number, t: number, h: number, d: number, e: number, budget = ORACLE_BUDGET): OracleExtent {
  if (b * t * h * d * e <= budget) return { whole: true, b, t };
  return { whole: false, b: 1, t: Math.min(t, Math.max(64, Math.floor(budget / (h * d * e) / 64) * 64)) };
}

/** The first `b` sequences' first `t` tokens of a tensor laid out [b, t, …]. */
export function causalSlice(x: Tensor, b: number, t: number): Tensor<Float64Array> {
  const [B, T, ...rest] = x.shape;
  if (b > B || t > T) throw new Error(`causalSlice: [${b}, ${t}] is outside the tensor's [${B}, ${T}]`);
  const per = rest.reduce((a, n) => a * n, 1);
  const data = new Float64Array(b * t * per);
  for (let i = 0; i < b; i++) data.set(Float64Array.from(x.data.subarray(i * T * per, (i * T + t) * per)), i * t * per);
  return { shape: [b, t, ...rest], data };
}
