// AdamW over every parameter in one dispatch. Parameters p, gradients g and the moments m, v are flat buffers
// with one layout (src/model/train/param-layout.ts); a table of tensors [start, end, decay] (ascending starts)
// says which tensor an element belongs to and whether it decays; elements between tensors are left alone.
// The gradient's global squared norm n² comes from train-reduce.ts (stats[0]); the host writes the step's
// numbers into the uniform (lr from the schedule, the bias corrections 1/(1 − βᵗ) in float64):
//
//   c   = min(1, max_norm / (√n² + 1e-6))            (max_norm = 0: no clipping)
//   g'  = c·g
//   m   = β₁·m + (1 − β₁)·g'
//   v   = β₂·v + (1 − β₂)·g'²
//   p   = p·(1 − lr·λ)  [decayed tensors only]  − lr · (m·bc₁) / (√(v·bc₂) + ε)
//
// When n² is not finite (a NaN or an overflow anywhere in the gradient) nothing changes: the step is skipped,
// so the parameters stay those of the last good step while the host reports the loss and stops.
export const ADAMW_WORKGROUP = 256;

export interface AdamWStep {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  /** 1-based: the number of updates including this one. */
  readonly step: number;
  /** 0: no clipping. */
  readonly maxNorm: number;
}

/** Bindings: p, g, m, v, table (u32 [tensors, 3]), stats (f32, n² at 0), params. */
export function adamwWgsl(): string {
  return `// AdamW, one thread per element of the flat parameter buffer (see train-adamw.ts)
struct Params {
  lr: f32, beta1: f32, beta2: f32, eps: f32,
  decay_factor: f32, bc1: f32, bc2: f32, max_norm: f32,
  count: u32, tensors: u32, pad0: u32, pad1: u32,
}
@group(0) @binding(0) var<storage, read_write> p: array<f32>;
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read> table: array<u32>;     // [tensors, 3]: start, end, decay
@group(0) @binding(5) var<storage, read> stats: array<f32>;     // stats[0] = Σ g²
@group(0) @binding(6) var<uniform> params: Params;

const WG = ${ADAMW_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.y * nwg.x + wid.x) * WG + lid;
  if (i >= params.count) { return; }
  let n2 = stats[0];
  // An infinite or NaN norm (exponent bits all ones) skips the step.
  if ((bitcast<u32>(n2) & 0x7f800000u) == 0x7f800000u) { return; }
  // The tensor holding i: the last start ≤ i.
  var lo = 0u;
  var hi = params.tensors;
  while (hi - lo > 1u) {
    let mid = (lo + hi) / 2u;
    if (table[mid * 3u] <= i) { lo = mid; } else { hi = mid; }
  }
  if (i < table[lo * 3u] || i >= table[lo * 3u + 1u]) { return; }
  var clip = 1.0;
  if (params.max_norm > 0.0) { clip = min(1.0, params.max_norm / (sqrt(n2) + 1e-6)); }
  let gi = g[i] * clip;
  let mi = params.beta1 * m[i] + (1.0 - params.beta1) * gi;
  let vi = params.beta2 * v[i] + (1.0 - params.beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  var pi = p[i];
  if (table[lo * 3u + 2u] != 0u) { pi = pi * params.decay_factor; }
  p[i] = pi - params.lr * (mi * params.bc1) / (sqrt(vi * params.bc2) + params.eps);
}
`;
}

/** The uniform's 48 bytes for one update over `count` floats and `tensors` table rows. */
export function adamwParams(s: AdamWStep, count: number, tensors: number): ArrayBuffer {
  if (!(Number.isInteger(s.step) && s.step >= 1)) throw new Error(`AdamW: step must be a positive integer, got ${s.step}`);
  const data = new ArrayBuffer(48);
  new Float32Array(data, 0, 8).set([
    s.lr, s.beta1, s.beta2, s.eps,
    1 - s.lr * s.weightDecay, 1 / (1 - s.beta1 ** s.step), 1 / (1 - s.beta2 ** s.step), s.maxNorm,
  ]);
  new Uint32Array(data, 32, 4).set([count, tensors, 0, 0]);
  return data;
}
