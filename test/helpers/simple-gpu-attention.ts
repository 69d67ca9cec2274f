// A reference GpuAttention for the model's tests and the decode bench: the math of
// examples/paper/elu_dwconv.la in plain WGSL, recurrent over the new tokens of each (b, h):
//
//   φ(x) = elu(x) + 1
//   S[d, e] += φ(k_i)[d]·v_i[e];   z[d] += φ(k_i)[d]
//   o_i[e]  = Σ_d φ(q_i)[d]·S[d, e] / (Σ_d φ(q_i)[d]·z[d] + eps)  +  Σ_{l<K} w[h, e, l]·v_{i−l}[e]
//
// State per (b, h): S [d, e], z [d] and the last K−1 values (zeros before the sequence starts, which is
// the convolution's causal mask). One workgroup per (b, h), one thread per column e; prefill walks its
// t tokens one by one, so it is slow at long prompts: the compiled variant's chunked form replaces it.
import type { Gpu } from '../../src/runtime/device.ts';
import { BufferUsage } from '../../src/runtime/device.ts';
import { compileKernel } from '../../src/runtime/pipeline-cache.ts';
import type { GpuAttention, GpuAttentionFactory, GpuAttentionState } from '../../src/runtime/gpu-attention.ts';

export interface SimpleAttentionOptions {
  readonly heads: number;
  readonly headDim: number;
  /** Taps of the depthwise convolution (the variant's size K). */
  readonly K: number;
  /** The normalisation's eps (elu_dwconv.la: 1e-6). */
  readonly eps?: number;
}

export function simpleAttentionWgsl(o: SimpleAttentionOptions): string {
  const { heads: H, headDim: D, K } = o;
  const KM1 = Math.max(K - 1, 1);
  const eps = o.eps ?? 1e-6;
  return `// elu+1 linear attention + ${K}-tap depthwise conv on v, recurrent per (b, h); one thread per column e
struct Params { b: u32, t: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> q: array<f32>;           // [b, t, H, D]
@group(0) @binding(1) var<storage, read> k: array<f32>;           // [b, t, H, D]
@group(0) @binding(2) var<storage, read> v: array<f32>;           // [b, t, H, D]
@group(0) @binding(3) var<storage, read_write> o: array<f32>;     // [b, t, H, D]
@group(0) @binding(4) var<storage, read_write> S: array<f32>;     // [b, H, D, D]
@group(0) @binding(5) var<storage, read_write> z: array<f32>;     // [b, H, D]
@group(0) @binding(6) var<storage, read_write> hist: array<f32>;  // [b, H, KM1, D]: v at positions p−1, p−2, …
@group(0) @binding(7) var<storage, read> w: array<f32>;           // [H, D, K]
@group(0) @binding(8) var<uniform> params: Params;

const H = ${H}u;
const D = ${D}u;
const K = ${K}u;
const KM1 = ${KM1}u;
const EPS = ${eps.toExponential()};
var<workgroup> fq: array<f32, D>;
var<workgroup> fk: array<f32, D>;
var<workgroup> zs: array<f32, D>;

fn phi(x: f32) -> f32 { return select(exp(x), x + 1.0, x > 0.0); }

@compute @workgroup_size(D)
fn main(@builtin(local_invocation_index) x: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let bh = wid.x;
  let bi = bh / H;
  let h = bh % H;
  var s: array<f32, D>;
  for (var d = 0u; d < D; d++) { s[d] = S[(bh * D + d) * D + x]; }
  zs[x] = z[bh * D + x];
  var win: array<f32, KM1>;
  for (var l = 0u; l < KM1; l++) { win[l] = hist[(bh * KM1 + l) * D + x]; }
  var taps: array<f32, K>;
  for (var l = 0u; l < K; l++) { taps[l] = w[(h * D + x) * K + l]; }

  for (var i = 0u; i < params.t; i++) {
    let at = ((bi * params.t + i) * H + h) * D;
    fq[x] = phi(q[at + x]);
    let fkx = phi(k[at + x]);
    fk[x] = fkx;
    zs[x] += fkx;
    workgroupBarrier();
    let vx = v[at + x];
    var num = 0.0;
    var den = 0.0;
    for (var d = 0u; d < D; d++) {
      s[d] += fk[d] * vx;
      num += fq[d] * s[d];
      den += fq[d] * zs[d];
    }
    var conv = taps[0] * vx;
    for (var l = 1u; l < K; l++) { conv += taps[l] * win[l - 1u]; }
    if (K > 1u) {
      for (var l = KM1 - 1u; l > 0u; l--) { win[l] = win[l - 1u]; }
      win[0] = vx;
    }
    o[at + x] = num / (den + EPS) + conv;
    workgroupBarrier();
  }

  for (var d = 0u; d < D; d++) { S[(bh * D + d) * D + x] = s[d]; }
  z[bh * D + x] = zs[x];
  for (var l = 0u; l < KM1; l++) { hist[(bh * KM1 + l) * D + x] = win[l]; }
}
`;
}

class SimpleState implements GpuAttentionState {
  position = 0;
  readonly bindGroups = new Map<string, GPUBindGroup>();
  constructor(
    readonly b: number,
    readonly S: GPUBuffer,
    readonly z: GPUBuffer,
    readonly hist: GPUBuffer,
  ) {}
}

/** Compiles the kernel once; the factory then makes each layer's attention around its `w`. */
export async function simpleAttentionFactory(gpu: Gpu, o: SimpleAttentionOptions): Promise<GpuAttentionFactory> {
  const { heads: H, headDim: D, K } = o;
  if (D > gpu.limits.maxComputeWorkgroupSizeX) throw new Error(`simple attention: head_dim ${D} exceeds the workgroup size limit`);
  const pipeline = await compileKernel(gpu, {
    label: `simple elu+1 dwconv attention [H=${H} D=${D} K=${K}]`,
    code: simpleAttentionWgsl(o),
    bindings: ['read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'storage', 'storage', 'storage', 'read-only-storage', 'uniform'],
  });
  const shapeUniforms = new Map<string, GPUBuffer>();
  const bufferIds = new WeakMap<GPUBuffer, number>();
  let nextId = 0;
  const id = (b: GPUBuffer) => {
    let n = bufferIds.get(b);
    if (n === undefined) bufferIds.set(b, (n = nextId++));
    return n;
  };
  const zeros = (label: string, floats: number) =>
    gpu.device.createBuffer({ label, size: floats * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST }); // created zeroed

  return (layer, params) => {
    const w = params['w'];
    if (!w) throw new Error(`simple attention, layer ${layer}: no parameter 'w' (got ${Object.keys(params).join(', ') || 'none'})`);
    const attention: GpuAttention = {
      heads: H,
      headDim: D,
      createState(b) {
        return new SimpleState(
          b,
          zeros(`layer ${layer} S [b=${b}]`, b * H * D * D),
          zeros(`layer ${layer} z [b=${b}]`, b * H * D),
          zeros(`layer ${layer} conv history [b=${b}]`, b * H * Math.max(K - 1, 1) * D),
        );
      },
      encodeForward(pass, io, state, b, t) {
        if (!(state instanceof SimpleState)) throw new Error('simple attention: a state from another attention');
        if (state.b !== b) throw new Error(`simple attention: state for ${state.b} sequences, called with ${b}`);
        const shapeKey = `${b}:${t}`;
        let uniform = shapeUniforms.get(shapeKey);
        if (!uniform) {
          uniform = gpu.device.createBuffer({ label: `simple attention params [b=${b} t=${t}]`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
          gpu.device.queue.writeBuffer(uniform, 0, new Uint32Array([b, t, 0, 0]));
          shapeUniforms.set(shapeKey, uniform);
        }
        const key = `${shapeKey}:${id(io.q)}:${id(io.k)}:${id(io.v)}:${id(io.o)}`;
        let group = state.bindGroups.get(key);
        if (!group) {
          group = gpu.device.createBindGroup({
            label: `simple attention layer ${layer} [b=${b} t=${t}]`,
            layout: pipeline.getBindGroupLayout(0),
            entries: [io.q, io.k, io.v, io.o, state.S, state.z, state.hist, w, uniform].map((buffer, binding) => ({ binding, resource: { buffer } })),
          });
          state.bindGroups.set(key, group);
        }
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(b * H);
      },
      advance(state, t) {
        (state as SimpleState).position += t;
      },
    };
    return attention;
  };
}
