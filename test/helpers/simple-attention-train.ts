// The training half of the reference attention (simple-gpu-attention.ts): examples/paper/elu_dwconv.la's forward
// from a zero state and its backward, hand-written in WGSL, so the trainer runs end to end before the compiler
// derives backward kernels. Per (b, h), with φ(x) = elu(x) + 1, φ′(x) = [x > 0] + [x ≤ 0]·eˣ:
//
//   S_i = Σ_{j≤i} φk_j v_jᵀ,  z_i = Σ_{j≤i} φk_j,  n_i = φq_iᵀ S_i,  den_i = φq_i·z_i + ε,  lin_i = n_i / den_i
//   o_i = lin_i + Σ_{l<K} w[h, :, l] ⊙ v_{i−l}         (elu_aug.la: one tap per head, w[h, l])
//
//   dn_i = do_i / den_i,   dden_i = −(do_i·lin_i) / den_i
//   dφq_i[d] = Σ_e dn_i[e] S_i[d, e] + dden_i z_i[d]                        (forward time, with S_i)
//   U_j = Σ_{i≥j} φq_i dn_iᵀ,  y_j = Σ_{i≥j} dden_i φq_i                      (reverse time)
//   dφk_j[d] = Σ_e v_j[e] U_j[d, e] + y_j[d],   dv_j[e] = Σ_d φk_j[d] U_j[d, e] + Σ_l w[h, e, l] do_{j+l}[e]
//   dw[h, e, l] = Σ_{b, i} do_i[e] v_{i−l}[e]          (per head: dw[h, l] = Σ_e of that)
//
// One workgroup per (b, h), thread x owns row x and column x of S (and of U), so neither contraction needs
// a transpose. The backward's first pass leaves dn_i in dv and dden_i in a scratch for the second; dw is
// summed per sequence, then over sequences by a second kernel in a fixed order (no atomics).
import type { Gpu } from '../../src/runtime/device.ts';
import { BufferUsage } from '../../src/runtime/device.ts';
import type { GpuAttentionFactory, TrainableGpuAttention } from '../../src/runtime/gpu-attention.ts';
import { compileKernel } from '../../src/runtime/pipeline-cache.ts';
import type { PrepareAttention } from '../../src/model/attention-context.ts';
import { simpleAttentionFactory, type SimpleAttentionOptions } from './simple-gpu-attention.ts';

export interface TrainableAttentionOptions extends SimpleAttentionOptions {
  /** 'channel': w[h, e, K] (elu_dwconv, the default); 'head': w[h, K] (elu_aug). */
  readonly taps?: 'channel' | 'head';
}

function header(o: TrainableAttentionOptions): string {
  return `struct Params { b: u32, t: u32, pad0: u32, pad1: u32 }
const H = ${o.heads}u;
const D = ${o.headDim}u;
const K = ${o.K}u;
const EPS = ${(o.eps ?? 1e-6).toExponential()};
fn phi(x: f32) -> f32 { return select(exp(x), x + 1.0, x > 0.0); }
fn dphi(x: f32) -> f32 { return select(exp(x), 1.0, x > 0.0); }
// where tap l of head h, column e lives in w
fn tap_at(h: u32, e: u32, l: u32) -> u32 { return ${o.taps === 'head' ? 'h * K + l' : '(h * D + e) * K + l'}; }`;
}

export function trainForwardWgsl(o: TrainableAttentionOptions): string {
  return `// elu+1 linear attention + masked depthwise conv, forward from a zero state; one workgroup per (b, h)
${header(o)}
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;
@group(0) @binding(4) var<storage, read> w: array<f32>;          // [H, D, K] or [H, K]
@group(0) @binding(5) var<uniform> params: Params;
var<workgroup> fq: array<f32, D>;
var<workgroup> fk: array<f32, D>;
var<workgroup> zs: array<f32, D>;

@compute @workgroup_size(D)
fn main(@builtin(local_invocation_index) x: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let bi = wid.x / H;
  let h = wid.x % H;
  let T = params.t;
  var col: array<f32, D>;            // S[:, x]
  zs[x] = 0.0;
  for (var i = 0u; i < T; i++) {
    let at = ((bi * T + i) * H + h) * D;
    let fkx = phi(k[at + x]);
    fq[x] = phi(q[at + x]);
    fk[x] = fkx;
    zs[x] += fkx;
    workgroupBarrier();
    let vx = v[at + x];
    var num = 0.0;
    var den = EPS;
    for (var d = 0u; d < D; d++) {
      col[d] += fk[d] * vx;
      num += fq[d] * col[d];
      den += fq[d] * zs[d];
    }
    var conv = 0.0;
    for (var l = 0u; l < K && l <= i; l++) { conv += w[tap_at(h, x, l)] * v[at - l * H * D + x]; }
    o[at + x] = num / den + conv;
    workgroupBarrier();
  }
}
`;
}

export function backwardWgsl(o: TrainableAttentionOptions): string {
  return `// backward of trainForwardWgsl (see simple-attention-train.ts); one workgroup per (b, h)
${header(o)}
@group(0) @binding(0) var<storage, read> q: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dq: array<f32>;
@group(0) @binding(5) var<storage, read_write> dk: array<f32>;
@group(0) @binding(6) var<storage, read_write> dv: array<f32>;
@group(0) @binding(7) var<storage, read_write> dden: array<f32>;   // [b, t, H] scratch
@group(0) @binding(8) var<storage, read_write> dw_seq: array<f32>; // [b, H, D, K] per-sequence dw
@group(0) @binding(9) var<storage, read> w: array<f32>;            // [H, D, K] or [H, K]
@group(0) @binding(10) var<uniform> params: Params;
var<workgroup> fq: array<f32, D>;
var<workgroup> fk: array<f32, D>;
var<workgroup> zs: array<f32, D>;
var<workgroup> vs: array<f32, D>;
var<workgroup> dns: array<f32, D>;
var<workgroup> red: array<f32, D>;

@compute @workgroup_size(D)
fn main(@builtin(local_invocation_index) x: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let bi = wid.x / H;
  let h = wid.x % H;
  let T = params.t;
  var col: array<f32, D>;   // S[:, x], then U[:, x]
  var row: array<f32, D>;   // S[x, :], then U[x, :]
  zs[x] = 0.0;
  // Forward time: dq, and dn (into dv) and dden for the second pass.
  for (var i = 0u; i < T; i++) {
    let at = ((bi * T + i) * H + h) * D;
    let qx = q[at + x];
    let fkx = phi(k[at + x]);
    let vx = v[at + x];
    fq[x] = phi(qx);
    fk[x] = fkx;
    vs[x] = vx;
    zs[x] += fkx;
    workgroupBarrier();
    var num = 0.0;
    var den = EPS;
    for (var d = 0u; d < D; d++) {
      col[d] += fk[d] * vx;
      row[d] += fkx * vs[d];
      num += fq[d] * col[d];
      den += fq[d] * zs[d];
    }
    let dox = dout[at + x];
    let dnx = dox / den;
    red[x] = dox * num / den;
    dns[x] = dnx;
    workgroupBarrier();
    var dlin = 0.0;
    for (var e = 0u; e < D; e++) { dlin += red[e]; }
    let ddn = -dlin / den;
    var dfq = ddn * zs[x];
    for (var e = 0u; e < D; e++) { dfq += dns[e] * row[e]; }
    dq[at + x] = dfq * dphi(qx);
    dv[at + x] = dnx;
    if (x == 0u) { dden[(bi * T + i) * H + h] = ddn; }
    workgroupBarrier();
  }
  // Reverse time: dk, dv, and this sequence's dw.
  for (var d = 0u; d < D; d++) { col[d] = 0.0; row[d] = 0.0; }
  var y = 0.0;
  var dwl: array<f32, K>;
  for (var jj = 0u; jj < T; jj++) {
    let j = T - 1u - jj;
    let at = ((bi * T + j) * H + h) * D;
    let kx = k[at + x];
    let fqx = phi(q[at + x]);
    let vx = v[at + x];
    let dnx = dv[at + x];
    let ddn = dden[(bi * T + j) * H + h];
    fq[x] = fqx;
    fk[x] = phi(kx);
    vs[x] = vx;
    dns[x] = dnx;
    workgroupBarrier();
    y += ddn * fqx;
    var dvx = 0.0;
    var dfk = y;
    for (var d = 0u; d < D; d++) {
      col[d] += fq[d] * dnx;
      row[d] += fqx * dns[d];
      dvx += fk[d] * col[d];
      dfk += vs[d] * row[d];
    }
    dk[at + x] = dfk * dphi(kx);
    let dox = dout[at + x];
    for (var l = 0u; l < K; l++) {
      if (j + l < T) { dvx += w[tap_at(h, x, l)] * dout[at + l * H * D + x]; }
      if (l <= j) { dwl[l] += dox * v[at - l * H * D + x]; }
    }
    dv[at + x] = dvx;
    workgroupBarrier();
  }
  for (var l = 0u; l < K; l++) { dw_seq[((bi * H + h) * D + x) * K + l] = dwl[l]; }
}
`;
}

export function dwReduceWgsl(o: TrainableAttentionOptions): string {
  const perHead = o.taps === 'head';
  return `// grad_w[n] += Σ_b ${perHead ? 'Σ_e dw_seq[b, h, e, l]' : 'dw_seq[b, n]'} in a fixed order, n over ${perHead ? '[H, K]' : '[H, D, K]'}
${header(o)}
@group(0) @binding(0) var<storage, read> dw_seq: array<f32>;   // [b, H, D, K]
@group(0) @binding(1) var<storage, read_write> grad_w: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  if (n >= ${perHead ? 'H * K' : 'H * D * K'}) { return; }
  var s = 0.0;
  for (var bi = 0u; bi < params.b; bi++) {
${perHead
    ? '    for (var e = 0u; e < D; e++) { s += dw_seq[((bi * H + n / K) * D + e) * K + n % K]; }'
    : '    s += dw_seq[bi * H * D * K + n];'}
  }
  grad_w[n] += s;
}
`;
}

interface Scratch {
  readonly uniform: GPUBuffer;
  readonly dden: GPUBuffer;
  readonly dwSeq: GPUBuffer;
}

/**
 * simpleAttentionFactory's layers, each also a TrainableGpuAttention; the parameter is `w` [heads, headDim, K]
 * (or [heads, K] with taps 'head'). Decoding (encodeForward) keeps the per-channel layout: train elu_aug only.
 */
export async function simpleTrainableAttentionFactory(gpu: Gpu, o: TrainableAttentionOptions): Promise<GpuAttentionFactory> {
  const { heads: H, headDim: D, K } = o;
  const inference = await simpleAttentionFactory(gpu, o);
  const ro = 'read-only-storage' as const;
  const rw = 'storage' as const;
  const tag = `[H=${H} D=${D} K=${K}]`;
  const forward = await compileKernel(gpu, { label: `simple attention train forward ${tag}`, code: trainForwardWgsl(o), bindings: [ro, ro, ro, rw, ro, 'uniform'] });
  const backward = await compileKernel(gpu, { label: `simple attention backward ${tag}`, code: backwardWgsl(o), bindings: [ro, ro, ro, ro, rw, rw, rw, rw, rw, ro, 'uniform'] });
  const reduce = await compileKernel(gpu, { label: `simple attention dw sum ${tag}`, code: dwReduceWgsl(o), bindings: [ro, rw, 'uniform'] });
  const scratches = new Map<string, Scratch>();
  const scratch = (b: number, t: number): Scratch => {
    const key = `${b}:${t}`;
    let s = scratches.get(key);
    if (!s) {
      const uniform = gpu.device.createBuffer({ label: `simple attention params [b=${b} t=${t}]`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
      gpu.device.queue.writeBuffer(uniform, 0, new Uint32Array([b, t, 0, 0]));
      const storage = (label: string, floats: number) => gpu.device.createBuffer({ label, size: Math.max(4, floats * 4), usage: BufferUsage.STORAGE });
      s = { uniform, dden: storage(`simple attention dden [b=${b} t=${t}]`, b * t * H), dwSeq: storage(`simple attention dw per sequence [b=${b}]`, b * H * D * K) };
      scratches.set(key, s);
    }
    return s;
  };
  // Bind groups are remembered by the buffers they bind: a trainer passes the same ones every step.
  const ids = new WeakMap<GPUBuffer, number>();
  const groups = new Map<string, GPUBindGroup>();
  let nextId = 0;
  const idOf = (b: GPUBuffer) => {
    let id = ids.get(b);
    if (id === undefined) ids.set(b, (id = nextId++));
    return id;
  };
  const group = (pipeline: GPUComputePipeline, label: string, buffers: GPUBuffer[]) => {
    const key = `${label}|${buffers.map(idOf).join(',')}`;
    let g = groups.get(key);
    if (!g) {
      g = gpu.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
      groups.set(key, g);
    }
    return g;
  };

  return (layer, params) => {
    const base = inference(layer, params);
    const w = params['w']!;
    const layerAttention: TrainableGpuAttention = {
      ...base,
      heads: base.heads,
      headDim: base.headDim,
      createState: (b) => base.createState(b),
      encodeForward: (pass, io, state, b, t) => {
        if (o.taps === 'head') throw new Error('the reference attention decodes per-channel taps only (elu_dwconv)');
        base.encodeForward(pass, io, state, b, t);
      },
      advance: (state, t) => base.advance(state, t),
      encodeTrainForward(pass, io, b, t) {
        const s = scratch(b, t);
        pass.setPipeline(forward);
        pass.setBindGroup(0, group(forward, `layer ${layer} train forward`, [io.q, io.k, io.v, io.o, w, s.uniform]));
        pass.dispatchWorkgroups(b * H);
      },
      encodeBackward(pass, io, grads, b, t) {
        const gw = grads['w'];
        if (!gw) throw new Error(`simple attention layer ${layer}: no gradient buffer for 'w' (got ${Object.keys(grads).join(', ') || 'none'})`);
        const s = scratch(b, t);
        pass.setPipeline(backward);
        pass.setBindGroup(0, group(backward, `layer ${layer} backward`, [io.q, io.k, io.v, io.do, io.dq, io.dk, io.dv, s.dden, s.dwSeq, w, s.uniform]));
        pass.dispatchWorkgroups(b * H);
        pass.setPipeline(reduce);
        pass.setBindGroup(0, group(reduce, `layer ${layer} dw sum`, [s.dwSeq, gw, s.uniform]));
        pass.dispatchWorkgroups(Math.ceil(((o.taps === 'head' ? 1 : D) * H * K) / 64));
      },
    };
    return layerAttention;
  };
}

/**
 * The reference as a model's attention for elu_dwconv.la or elu_aug.la (taps read from the variant's `w`); any
 * other variant is refused, so a test cannot train one variant's math under another's name.
 */
export const referenceTrainableAttention: PrepareAttention = ({ gpu, config, source }) => {
  const w = source.params.find((p) => p.name === 'w');
  const K = source.sizes['K'];
  if (!['elu_dwconv', 'elu_aug'].includes(source.name) || !w || K === undefined) {
    throw new Error(`the reference trainable attention implements elu_dwconv and elu_aug, not ${source.name}`);
  }
  return simpleTrainableAttentionFactory(gpu, { heads: config.numHeads, headDim: config.headDim, K, taps: w.axes.length === 2 ? 'head' : 'channel' });
};
