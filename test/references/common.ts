// Shared plumbing of the independent references: dense row-major tensors and the outer loop over
// (b, i, h, j). Nothing here knows about the IR; every variant's math is written out in its own file.
export interface Dense {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

export type Inputs = Readonly<Record<string, Dense>>;
/** The variant's sizes (K, C, M, m, W …) as the test compiled it. */
export type Sizes = Readonly<Record<string, number>>;
export type Reference = (x: Inputs, sizes: Sizes) => Float64Array;

export function tensorOf(x: Inputs, name: string): Dense {
  const t = x[name];
  if (!t) throw new Error(`reference: missing tensor '${name}'`);
  return t;
}

/** x[b, t, h, :] of a per-token tensor [b, t, h, n] (n = 1 when the tensor is [b, t, h]). */
export function row(x: Dense, b: number, t: number, h: number): number[] {
  const [, T, H] = x.shape;
  const n = x.shape.length > 3 ? x.shape[3] : 1;
  const off = ((b * T + t) * H + h) * n;
  return Array.from({ length: n }, (_, c) => x.data[off + c]);
}

/** A parameter's element at a full index. */
export function param(x: Dense, ...index: number[]): number {
  let off = 0;
  index.forEach((ix, a) => {
    off = off * x.shape[a] + ix;
  });
  return x.data[off];
}

export const dot = (a: readonly number[], b: readonly number[]): number => a.reduce((s, ak, c) => s + ak * b[c], 0);
export const elu = (x: number): number => (x > 0 ? x : Math.exp(x) - 1);
export const relu = (x: number): number => Math.max(0, x);
export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x));
export const l2 = (a: readonly number[]): number => Math.sqrt(dot(a, a));

export interface Attention {
  /** s(i, j) for head h of batch b, called only for the pairs the mask admits. */
  score(b: number, h: number, i: number, j: number): number;
  /** Which keys j the query i sees. */
  sees(i: number, j: number): boolean;
  /** When set, the output is Σ s v / (Σ s + eps). */
  eps?: number;
}

/** o[b, i, h, :] = Σ_{j : sees(i, j)} s(i, j) v_j (÷ (Σ s + eps)), written over [b, t, h, e]. */
export function attend(x: Inputs, a: Attention): Float64Array {
  const v = tensorOf(x, 'v');
  const [B, T, H, E] = v.shape;
  const out = new Float64Array(B * T * H * E);
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < T; i++) {
      for (let h = 0; h < H; h++) {
        const num = new Array<number>(E).fill(0);
        let den = 0;
        for (let j = 0; j < T; j++) {
          if (!a.sees(i, j)) continue;
          const s = a.score(b, h, i, j);
          const vj = row(v, b, j, h);
          for (let c = 0; c < E; c++) num[c] += s * vj[c];
          den += s;
        }
        const off = ((b * T + i) * H + h) * E;
        for (let c = 0; c < E; c++) out[off + c] = a.eps === undefined ? num[c] : num[c] / (den + a.eps);
      }
    }
  }
  return out;
}

export const causal = (i: number, j: number): boolean => j <= i;

/** Elementwise sum of references that add into the same output. */
export function sum(...parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts[0].length);
  for (const p of parts) for (let n = 0; n < out.length; n++) out[n] += p[n];
  return out;
}
