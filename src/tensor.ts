// A dense row-major tensor. Float64 on the CPU oracle paths, float32 at the GPU and file boundaries.
export type TensorData = Float64Array | Float32Array;

export interface Tensor<D extends TensorData = TensorData> {
  readonly shape: readonly number[];
  readonly data: D;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function tensor<D extends TensorData>(shape: readonly number[], data: D): Tensor<D> {
  if (data.length !== numel(shape)) {
    throw new Error(`tensor data has ${data.length} elements but shape [${shape.join(', ')}] needs ${numel(shape)}`);
  }
  return { shape: [...shape], data };
}

export function zeros64(shape: readonly number[]): Tensor<Float64Array> {
  return { shape: [...shape], data: new Float64Array(numel(shape)) };
}

export function toFloat64(t: Tensor): Tensor<Float64Array> {
  return { shape: t.shape, data: Float64Array.from(t.data) };
}

export function toFloat32(t: Tensor): Tensor<Float32Array> {
  return { shape: t.shape, data: Float32Array.from(t.data) };
}

/** ‖a − b‖ / ‖b‖ over all elements (0 when both are zero). */
export function relativeError(a: TensorData, b: TensorData): number {
  if (a.length !== b.length) throw new Error(`relativeError: lengths differ (${a.length} vs ${b.length})`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (den === 0) return Math.sqrt(num);
  return Math.sqrt(num / den);
}

/** Deterministic PRNG (mulberry32) so every random test input is reproducible from its seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal samples (Box–Muller) from a seeded generator. */
export function randn(shape: readonly number[], seed: number, scale = 1): Tensor<Float64Array> {
  const r = rng(seed);
  const n = numel(shape);
  const data = new Float64Array(n);
  for (let i = 0; i < n; i += 2) {
    const u = Math.max(r(), 1e-12);
    const v = r();
    const m = Math.sqrt(-2 * Math.log(u)) * scale;
    data[i] = m * Math.cos(2 * Math.PI * v);
    if (i + 1 < n) data[i + 1] = m * Math.sin(2 * Math.PI * v);
  }
  return { shape: [...shape], data };
}
