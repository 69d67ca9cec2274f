// Would joining the q|k|v projection and the recurrent step into one dispatch pay at batch 1 (issue 15: decode
// ≥ 3,000 tokens/s through `generate` on the 12-layer model, whose step is 62 dependent dispatches)? A stand-in
// of one step's attention half, per layer, in one pass: the projection (768 → 2304, 8 rows a workgroup of 256,
// 32 lanes a row), the step (S += k vᵀ, o = Sᵀ q, a workgroup per (head, block of value columns)), then the o
// projection with its residual, whose output the next layer reads — against the fused form: a workgroup per
// (head, block of VC value columns) computes its head's q and k (128 rows of W) and its VC rows of v itself, then
// the step on its columns of S, so one dispatch a layer disappears but every workgroup reads 128 + VC rows of W
// (each head's q and k rows read by 64 / VC workgroups, from L2 after the first). Every fused form's output is
// first checked against the unfused one's (they add in the same order: equal to the bit); then each stream is
// timed in 3 rounds, side by side.
//
//   npx tsx bench/fused-qkv-step.ts [--out DIR]     (writes DIR/fused-qkv-step.json; default $OUT or out/)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getDevice } from '../src/runtime/dawn.ts';
import { BufferUsage, MapMode } from '../src/runtime/device.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';
import { timeDispatches } from '../src/runtime/timing.ts';

const gpu = await getDevice();
const soft = gpu.isSoftware;
const LAYERS = soft ? 2 : 12;
const H = 12, D = 64, HID = H * D, NQKV = 3 * HID, KV4 = HID / 4;
const iters = 30;

const lanes = 32, per = KV4 / lanes; // 6 vec4 a lane

/**
 * R rows of W a workgroup of 32·R invocations (32 lanes a row, `per` vec4 each) against the vector `input`: the q|k|v
 * projection (R 8, y = W x), or the o projection with the residual (R 4, y = x + 0.01 · W a).
 */
const rowsCode = (R: number, residual: boolean) => `
@group(0) @binding(0) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> ${residual ? 'a' : 'x'}: array<vec4<f32>>;
${residual ? `@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;` : '@group(0) @binding(2) var<storage, read_write> y: array<f32>;'}
var<workgroup> red: array<f32, ${33 * R}>;
@compute @workgroup_size(${32 * R})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x * ${R}u + lid / 32u;
  let l = lid % 32u;
  var acc = 0.0;
  for (var j = 0u; j < ${per}u; j++) { acc += dot(w[r * ${KV4}u + l + 32u * j], ${residual ? 'a' : 'x'}[l + 32u * j]); }
  red[(lid / 32u) * 33u + l] = acc;
  workgroupBarrier();
  if (lid < ${R}u) {
    var s = 0.0;
    for (var j = 0u; j < 32u; j++) { s += red[lid * 33u + j]; }
    ${residual ? `y[wid.x * ${R}u + lid] = x[wid.x * ${R}u + lid] + 0.01 * s;` : `y[wid.x * ${R}u + lid] = s;`}
  }
}`;
// The q|k|v projection: 8 rows a workgroup of 256; the o projection with the residual: 4 rows a workgroup of 128.
const projCode = rowsCode(8, false);
const oCode = rowsCode(4, true);

/** Both step kernels' end: column c's output o = Σ_i part[c][i] (q_i · S_new[i][c]) by VC invocations. */
const stepOutput = (VC: number) => `  workgroupBarrier();
  if (lid < ${VC}u) {
    var o = 0.0;
    for (var j = 0u; j < 64u; j++) { o += part[lid * 65u + j]; }
    a[h * 64u + c0 + lid] = o;
  }
}`;

// Recurrent step alone: workgroup (head, block of VC columns), 64·VC threads, thread (i, c) owns S[h][i][c0 + c].
const recCode = (VC: number) => `
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> S: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;
var<workgroup> part: array<f32, ${64 * (VC + 1)}>;
@compute @workgroup_size(${64 * VC})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x / ${64 / VC}u;
  let c0 = (wid.x % ${64 / VC}u) * ${VC}u;
  let i = lid / ${VC}u;
  let c = lid % ${VC}u;
  let si = (h * 64u + i) * 64u + c0 + c;
  let s = S[si] + qkv[${HID}u + h * 64u + i] * qkv[${2 * HID}u + h * 64u + c0 + c];
  S[si] = s;
  part[c * 65u + i] = qkv[h * 64u + i] * s;
${stepOutput(VC)}`;

// Fused: workgroup (head, block of VC columns) of T threads computes q_h, k_h (128 rows) and its VC rows of v_h,
// then the step on its S columns.
const fusedCode = (VC: number, T: number) => {
  const R = 128 + VC;
  const RPP = T / 32; // rows a pass
  const passes = Math.ceil(R / RPP);
  return `
@group(0) @binding(0) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> S: array<f32>;
@group(0) @binding(3) var<storage, read_write> a: array<f32>;
var<workgroup> red: array<f32, ${passes * RPP * 33}>;
var<workgroup> qkv: array<f32, ${R}>;
var<workgroup> part: array<f32, ${64 * (VC + 1)}>;
@compute @workgroup_size(${T})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let h = wid.x / ${64 / VC}u;
  let c0 = (wid.x % ${64 / VC}u) * ${VC}u;
  let l = lid % 32u;
  // state first: its loads start with the weights'
  var s: array<f32, ${Math.ceil((64 * VC) / T)}>;
  for (var e = 0u; e < ${Math.ceil((64 * VC) / T)}u; e++) {
    let idx = lid + e * ${T}u;
    if (idx < ${64 * VC}u) { s[e] = S[(h * 64u + idx / ${VC}u) * 64u + c0 + idx % ${VC}u]; }
  }
  var xr: array<vec4<f32>, ${per}>;
  for (var j = 0u; j < ${per}u; j++) { xr[j] = x[l + 32u * j]; }
  for (var p = 0u; p < ${passes}u; p++) {
    let rr = p * ${RPP}u + lid / 32u;
    if (rr < ${R}u) {
      // rows 0..63 q_h, 64..127 k_h, then v_h's columns c0..
      var row = h * 64u + rr;
      if (rr >= 64u && rr < 128u) { row = ${HID}u + h * 64u + rr - 64u; }
      if (rr >= 128u) { row = ${2 * HID}u + h * 64u + c0 + rr - 128u; }
      var acc = 0.0;
      for (var j = 0u; j < ${per}u; j++) { acc += dot(w[row * ${KV4}u + l + 32u * j], xr[j]); }
      red[rr * 33u + l] = acc;
    }
  }
  workgroupBarrier();
  for (var rr = lid; rr < ${R}u; rr += ${T}u) {
    var t = 0.0;
    for (var j = 0u; j < 32u; j++) { t += red[rr * 33u + j]; }
    qkv[rr] = t;
  }
  workgroupBarrier();
  for (var e = 0u; e < ${Math.ceil((64 * VC) / T)}u; e++) {
    let idx = lid + e * ${T}u;
    if (idx < ${64 * VC}u) {
      let i = idx / ${VC}u;
      let c = idx % ${VC}u;
      let sn = s[e] + qkv[64u + i] * qkv[128u + c];
      S[(h * 64u + i) * 64u + c0 + c] = sn;
      part[c * 65u + i] = qkv[i] * sn;
    }
  }
${stepOutput(VC)}`;
};

const S_ = BufferUsage.STORAGE | BufferUsage.COPY_DST | BufferUsage.COPY_SRC;
const buf = (n: number, fill?: (i: number) => number) => {
  const b = gpu.device.createBuffer({ size: n * 4, usage: S_ });
  if (fill) gpu.device.queue.writeBuffer(b, 0, Float32Array.from({ length: n }, (_, i) => fill(i)));
  return b;
};
let seed = 1;
const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff - 0.5) * 0.1;
const Wqkv = Array.from({ length: LAYERS }, () => buf(NQKV * HID, rnd));
const Wo = Array.from({ length: LAYERS }, () => buf(HID * HID, rnd));
const state = (k: number) => Array.from({ length: LAYERS }, () => buf(H * D * D, (i) => ((i * 7 + k) % 13) * 0.01));
const xs = Array.from({ length: LAYERS + 1 }, () => buf(HID, (i) => Math.sin(i)));
const qkvB = buf(NQKV);
const aB = buf(HID);

const bindings = (n: number, ro: number[]): ('read-only-storage' | 'storage')[] => Array.from({ length: n }, (_, i) => (ro.includes(i) ? 'read-only-storage' : 'storage'));
const proj = await compileKernel(gpu, { label: 'proj', code: projCode, bindings: bindings(3, [0, 1]) });
const oP = await compileKernel(gpu, { label: 'o', code: oCode, bindings: bindings(4, [0, 1, 2]) });
const group = (p: GPUComputePipeline, bs: GPUBuffer[]) => gpu.device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: bs.map((buffer, binding) => ({ binding, resource: { buffer } })) });
type D_ = { p: GPUComputePipeline; g: GPUBindGroup; n: number };

async function read(b: GPUBuffer, n: number): Promise<Float32Array> {
  const r = gpu.device.createBuffer({ size: n * 4, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const e = gpu.device.createCommandEncoder();
  e.copyBufferToBuffer(b, 0, r, 0, n * 4);
  gpu.device.queue.submit([e.finish()]);
  await r.mapAsync(MapMode.READ);
  const out = new Float32Array(r.getMappedRange().slice(0));
  r.unmap();
  return out;
}

const plans: { name: string; steps: D_[] }[] = [];
const unfused = async (VC: number) => {
  const rec = await compileKernel(gpu, { label: `rec${VC}`, code: recCode(VC), bindings: bindings(3, [0]) });
  const St = state(0);
  const steps: D_[] = [];
  for (let l = 0; l < LAYERS; l++) {
    steps.push({ p: proj, g: group(proj, [Wqkv[l], xs[l], qkvB]), n: NQKV / 8 });
    steps.push({ p: rec, g: group(rec, [qkvB, St[l], aB]), n: H * (64 / VC) });
    steps.push({ p: oP, g: group(oP, [Wo[l], aB, xs[l], xs[l + 1]]), n: HID / 4 });
  }
  return { name: `proj + step(${VC} cols)`, steps };
};
const fused = async (VC: number, T: number) => {
  const f = await compileKernel(gpu, { label: `fused${VC}x${T}`, code: fusedCode(VC, T), bindings: bindings(4, [0, 1]) });
  const St = state(0);
  const steps: D_[] = [];
  for (let l = 0; l < LAYERS; l++) {
    steps.push({ p: f, g: group(f, [Wqkv[l], xs[l], St[l], aB]), n: H * (64 / VC) });
    steps.push({ p: oP, g: group(oP, [Wo[l], aB, xs[l], xs[l + 1]]), n: HID / 4 });
  }
  return { name: `fused ${VC} cols × ${T} threads`, steps };
};
const projOnly = () => {
  const steps: D_[] = [];
  for (let l = 0; l < LAYERS; l++) {
    steps.push({ p: proj, g: group(proj, [Wqkv[l], xs[l], qkvB]), n: NQKV / 8 });
    steps.push({ p: oP, g: group(oP, [Wo[l], aB, xs[l], xs[l + 1]]), n: HID / 4 });
  }
  return { name: 'proj + o only', steps };
};
const oOnly = () => ({ name: 'o only', steps: Array.from({ length: LAYERS }, (_, l) => ({ p: oP, g: group(oP, [Wo[l], aB, xs[l], xs[l + 1]]), n: HID / 4 })) });

const encode = (steps: D_[]) => (pass: GPUComputePassEncoder) => {
  for (const d of steps) {
    pass.setPipeline(d.p);
    pass.setBindGroup(0, d.g);
    pass.dispatchWorkgroups(d.n);
  }
};

// correctness: one pass of the unfused and of each fused plan from the same states, outputs compared
const check = async (p: { name: string; steps: D_[] }) => {
  const e = gpu.device.createCommandEncoder();
  e.clearBuffer(aB);
  e.clearBuffer(qkvB);
  for (let l = 1; l <= LAYERS; l++) e.clearBuffer(xs[l]);
  const pass = e.beginComputePass();
  encode(p.steps)(pass);
  pass.end();
  gpu.device.queue.submit([e.finish()]);
  return read(xs[LAYERS], HID);
};
const configs: [number, number][] = soft ? [[16, 1024]] : [[16, 1024], [8, 512], [8, 1024], [16, 512], [32, 1024], [4, 256], [4, 512]];
const ref = await check(await unfused(16));
for (const [vc, t] of configs) {
  const f = await fused(vc, t);
  const got = await check(f);
  let err = 0, mag = 0;
  for (let i = 0; i < HID; i++) { err = Math.max(err, Math.abs(got[i] - ref[i])); mag = Math.max(mag, Math.abs(ref[i])); }
  console.log(`${f.name}: max |Δ| ${err.toExponential(2)} of ${mag.toExponential(2)}`);
  if (!(err <= 1e-4 * Math.max(1, mag))) throw new Error('mismatch');
  plans.push(f);
}
plans.unshift(await unfused(16), await unfused(8), projOnly(), oOnly());
const rows = plans.map((p) => ({ name: p.name, rounds: [] as number[] }));
for (let round = 0; round < 3; round++) {
  for (const [k, p] of plans.entries()) {
    const t = await timeDispatches(gpu, encode(p.steps), { iters, label: p.name });
    rows[k].rounds.push(t.medianMs * 1000);
  }
}
const med = (v: number[]) => [...v].sort((x, y) => x - y)[v.length >> 1];
for (const r of rows) console.log(`${r.name.padEnd(32)} ${med(r.rounds).toFixed(1)} µs a step (${(med(r.rounds) / LAYERS).toFixed(2)} a layer) rounds ${r.rounds.map((v) => v.toFixed(1)).join(' ')}`);
const outDir = (() => {
  const i = process.argv.indexOf('--out');
  return i >= 0 ? process.argv[i + 1] : process.env.OUT ?? 'out';
})();
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'fused-qkv-step.json'), JSON.stringify({ adapter: gpu.adapterName, layers: LAYERS, rows: rows.map((r) => ({ plan: r.name, usPerStep: med(r.rounds), usPerLayer: med(r.rounds) / LAYERS, rounds: r.rounds })) }, null, 1));
process.exit(0);
