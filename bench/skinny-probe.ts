// An experiment, bench only: the probe kernels of skinny-probe-kernels.ts (C[M,N] = A[M,K]·Wᵀ, W [N,K] fp32, a few
// rows: a draft tree being verified) beside the repo's current pick for the same plain problem {M, N, K, transposeB}
// (planMatmul: matmulPathFor and the chooser), on the projections of a 12-layer hidden-768 model's tree step.
//
// Per M and projection: every variant of the sweep (probeSweep, ≤ --max) is first run once and compared with a
// float64 C computed on the host (max |got − want| / max |want| < 1e-5; a wrong variant is reported and not timed;
// one over the device's limits is skipped with the reason). All are compiled and checked before any is timed (a
// compile between two timings idles the GPU, its clocks sag, and a 20 ms warm-up read 3–5× slow on the H200). Then
// they are timed as bench/small-m.ts does — timeDispatches over `reps` dispatches a pass, rotating over enough weight
// copies that no weight is in L2 — with a short warm-up, the pick first (long warm-up) and again every 10 variants.
// The best 3 and the pick are then re-timed with the full warm-up in alternating rounds (each keeps its faster
// round): the 'confirm' rows, with µs per dispatch, GB/s of weight and the pick's time over the variant's (> 1: the
// probe kernel is faster).
//
//   npx tsx bench/skinny-probe.ts [--small] [--M 5,17,65] [--max 40] [--proj 'q|k|v,o,…'] [--only SUBSTRING] [--explore] [--reps N]
//                                 [--knobs 'rowGroups=2;rowGroups=3,slices=4']
//
// --small (and any software adapter): tiny shapes (N 64–256, K 64–128) to prove every variant right on lavapipe.
// --explore: the wider sweep (probeSweep's explore; --max 100 or so). --only: variants whose label contains it.
// --knobs: the repo's lanes kernel (matmul-lanes.ts) at each ';'-separated set of knobs, the rest chosen, timed as a variant.
// Writes skinny-probe.json to $OUT if set, else out/.
import { bindMatmul, encodeMatmul, planMatmul, type MatmulPlan } from '../src/runtime/matmul.ts';
import { BufferUsage, type Gpu } from '../src/runtime/device.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { allocTensor, downloadTensor, releaseTensor, writeTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';
import { timeDispatches } from '../src/runtime/timing.ts';
import { measureCopyBandwidth } from './roofline.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import type { LanesKnobs } from '../backends/wgsl/matmul-lanes-choice.ts';
import { probeDesign, probeKernel, probeSweep, probeUnfit, type ProbeKernel, type ProbeVariant } from './skinny-probe-kernels.ts';

interface Projection {
  readonly name: string;
  readonly N: number;
  readonly K: number;
}

/** The tree step's projections (plain C = A·Wᵀ: the bench times no fused prologue or epilogue). */
const FULL: readonly Projection[] = [
  { name: 'q|k|v', N: 2304, K: 768 },
  { name: 'o', N: 768, K: 768 },
  { name: 'gate|up', N: 4096, K: 768 },
  { name: 'down', N: 768, K: 2048 },
  { name: 'lm head', N: 32000, K: 768 },
];
const SMALL: readonly Projection[] = [
  { name: 'q|k|v', N: 192, K: 64 },
  { name: 'o', N: 64, K: 64 },
  { name: 'gate|up', N: 256, K: 64 },
  { name: 'down', N: 64, K: 128 },
  { name: 'lm head', N: 256, K: 128 },
];

/** max |got − want| / max |want|: float32 sums of 768–2048 products sit near 1e-7. */
const TOLERANCE = 1e-5;
const SWEEP_WARMUP_MS = 20;
const SWEEP_ITERS = 10;
/** The pick's first timing in a shape: the GPU idled while the float64 C was computed. */
const PICK_WARMUP_MS = 400;
/** The pick is timed again after every PICK_EVERY variants of the sweep (drift shows as a spread of its times). */
const PICK_EVERY = 10;
const CONFIRM_BEST = 3;
const CONFIRM_ROUNDS = 2;

/** One timing in skinny-probe.json (test/matmul-picks-lanes-h200.test.ts reads call 150's). */
export interface Figure {
  readonly projection: string;
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** 'pick': the repo's current kernel (its label); else the probe's. */
  readonly kernel: string;
  readonly design: string;
  readonly variant?: ProbeVariant;
  readonly stage: 'sweep' | 'confirm';
  readonly rank?: 'pick' | 1 | 2 | 3;
  readonly usPerDispatch: number;
  readonly gbPerS: number;
  /** The pick's µs over this one's, the pick timed in the same stage (> 1: faster than the pick). */
  readonly vsPick?: number;
  readonly sweepUs?: number;
}

/** A dispatchable kernel with a bind group per weight copy. */
interface Candidate {
  readonly kernel: string;
  readonly design: string;
  readonly variant?: ProbeVariant;
  encode(pass: GPUComputePassEncoder, copy: number): void;
  destroy(): void;
}

/** xorshift32 in [−scale/2, scale/2), as bench/roofline.ts's fillRandom. */
function randomData(n: number, seed: number, scale = 0.1): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 4294967296 - 0.5) * scale;
  }
  return out;
}

/** C[m,n] = Σ_k a[m,k]·w[n,k] in float64. */
function reference(a: Float32Array, w: Float32Array, M: number, N: number, K: number): Float64Array {
  const c = new Float64Array(M * N);
  for (let n = 0; n < N; n++) {
    const wn = n * K;
    for (let m = 0; m < M; m++) {
      const am = m * K;
      let s = 0;
      for (let k = 0; k < K; k++) s += a[am + k] * w[wn + k];
      c[m * N + n] = s;
    }
  }
  return c;
}

/** The operands of one (projection, M): x, the output, weight copies enough to miss L2, the float64 C. */
interface Operands {
  readonly a: GpuTensor;
  /** x again as a uniform buffer (the probe's x 'uniform'), where it fits one binding. */
  readonly aUniform?: GPUBuffer;
  readonly c: GpuTensor;
  readonly weights: readonly GpuTensor[];
  readonly want: Float64Array;
  readonly wantMax: number;
}

function operands(gpu: Gpu, p: Projection, M: number, reps: number, cacheBytes: number): Operands {
  const aHost = randomData(M * p.K, 1 + M);
  const wHost = randomData(p.N * p.K, 7 + p.N);
  const copies = Math.max(1, Math.min(reps, Math.ceil(cacheBytes / (p.N * p.K * 4))));
  const a = allocTensor(gpu, 'x', [M, p.K]);
  writeTensor(gpu, a, aHost);
  // Every copy holds the same values (the cache does not care); copy 0 is the one checked.
  const weights = Array.from({ length: copies }, (_, i) => {
    const w = allocTensor(gpu, `w${i}`, [p.N, p.K]);
    writeTensor(gpu, w, wHost);
    return w;
  });
  let aUniform: GPUBuffer | undefined;
  if (aHost.byteLength <= gpu.limits.maxUniformBufferBindingSize) {
    aUniform = gpu.device.createBuffer({ label: 'x (uniform)', size: aHost.byteLength, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    gpu.device.queue.writeBuffer(aUniform, 0, aHost.buffer, aHost.byteOffset, aHost.byteLength);
  }
  const want = reference(aHost, wHost, M, p.N, p.K);
  let wantMax = 0;
  for (const v of want) wantMax = Math.max(wantMax, Math.abs(v));
  return { a, ...(aUniform && { aUniform }), c: allocTensor(gpu, 'c', [M, p.N]), weights, want, wantMax };
}

function release(gpu: Gpu, o: Operands): void {
  for (const t of [o.a, o.c, ...o.weights]) releaseTensor(gpu, t);
  o.aUniform?.destroy();
}

async function probeCandidate(gpu: Gpu, k: ProbeKernel, v: ProbeVariant, o: Operands): Promise<Candidate> {
  const pipeline = await compileKernel(gpu, { label: `probe ${k.label}`, code: k.wgsl, bindings: [...k.bindings] });
  if (v.x === 'uniform' && !o.aUniform) throw new Error(`${k.label}: x does not fit a uniform binding`);
  const a = v.x === 'uniform' ? { buffer: o.aUniform!, bytes: o.aUniform!.size } : o.a;
  const layout = pipeline.getBindGroupLayout(0);
  const groups = o.weights.map((w) =>
    gpu.device.createBindGroup({
      label: `probe ${k.label} (${w.name})`,
      layout,
      entries: [a, w, o.c].map((t, binding) => ({ binding, resource: { buffer: t.buffer, size: t.bytes } })),
    }),
  );
  const grid = k.grid(v.M, v.N, v.K);
  return {
    kernel: k.label,
    design: probeDesign(v),
    variant: v,
    encode(pass, copy) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, groups[copy % groups.length]);
      pass.dispatchWorkgroups(...grid);
    },
    destroy() {},
  };
}

/** The repo's pick for the plain problem, or (`knobs`) the lanes kernel with those knobs, the rest chosen. */
async function pickCandidate(gpu: Gpu, p: Projection, M: number, o: Operands, knobs?: LanesKnobs): Promise<Candidate> {
  const plan: MatmulPlan = await planMatmul(gpu, { M, N: p.N, K: p.K, transposeB: true }, { label: `pick ${p.name}`, ...(knobs && { path: 'lanes', lanes: knobs }) });
  const groups = o.weights.map((w) => bindMatmul(gpu, plan, o.a, w, o.c));
  return {
    kernel: `${knobs ? `lanes ${JSON.stringify(knobs)}` : 'pick'}: ${plan.path} ${plan.kernel}`,
    design: knobs ? 'lanes knobs' : 'pick',
    encode(pass, copy) {
      encodeMatmul(pass, plan, groups[copy % groups.length]);
    },
    destroy() {
      plan.params.destroy();
    },
  };
}

/** Runs `cand` once on weight copy 0 over a NaN-filled C; returns why it is wrong, or undefined. */
async function wrong(gpu: Gpu, cand: Candidate, o: Operands, M: number, N: number): Promise<string | undefined> {
  writeTensor(gpu, o.c, new Float32Array(M * N).fill(Number.NaN));
  const encoder = gpu.device.createCommandEncoder({ label: `check ${cand.kernel}` });
  const pass = encoder.beginComputePass();
  cand.encode(pass, 0);
  pass.end();
  gpu.device.queue.submit([encoder.finish()]);
  const got = await downloadTensor(gpu, o.c);
  let err = 0;
  let at = 0;
  for (let i = 0; i < got.length; i++) {
    const e = Math.abs(got[i] - o.want[i]);
    if (!(e <= err)) {
      err = Number.isNaN(e) ? Infinity : e;
      at = i;
      if (err === Infinity) break;
    }
  }
  const rel = err / o.wantMax;
  return rel < TOLERANCE ? undefined : `relative error ${rel.toExponential(2)} (C[${Math.floor(at / N)}, ${at % N}] = ${got[at]}, want ${o.want[at].toPrecision(7)})`;
}

async function time(gpu: Gpu, cand: Candidate, reps: number, warmupMs?: number, iters?: number): Promise<number> {
  const t = await timeDispatches(
    gpu,
    (pass) => {
      for (let r = 0; r < reps; r++) cand.encode(pass, r);
    },
    { warmup: 2, iters: gpu.isSoftware ? 3 : iters ?? 20, label: cand.kernel, ...(warmupMs !== undefined && { warmupMs }) },
  );
  return (t.medianMs * 1000) / reps;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const small = args.includes('--small') || gpu.isSoftware;
  const Ms = (flagValue(args, '--M') ?? '5,17').split(',').map(Number);
  const reps = Number(flagValue(args, '--reps') ?? (small ? 4 : 40));
  const max = Number(flagValue(args, '--max') ?? 40);
  const only = flagValue(args, '--only');
  const explore = args.includes('--explore');
  const names = flagValue(args, '--proj')?.split(',');
  // --knobs 'rowGroups=2;rowGroups=3,slices=4': the lanes kernel at these knobs (the rest chosen) joins the sweep.
  const knobSets: LanesKnobs[] = (flagValue(args, '--knobs') ?? '').split(';').filter(Boolean).map((set) => {
    const k: Record<string, number | string> = {};
    for (const kv of set.split(',')) {
      const [key, val] = kv.split('=');
      k[key] = Number.isNaN(Number(val)) ? val : Number(val);
    }
    return k as LanesKnobs;
  });
  const projections = (small ? SMALL : FULL).filter((p) => !names || names.includes(p.name));
  // More than the H200's L2 per pass, so every rep reads its weight from memory.
  const cacheBytes = small ? 1 << 20 : 192 << 20;
  const info = gpu.adapter.info as { subgroupMinSize?: number };
  const subgroupSize = gpu.subgroupSize ?? (gpu.features.has('subgroups') ? info.subgroupMinSize : undefined);

  const copy = await measureCopyBandwidth(gpu, { bytes: small ? 16 << 20 : 256 << 20, iters: 20 });
  console.log(`skinny probe on ${gpu.adapterName}; copy ${copy.gbPerS.toFixed(0)} GB/s (read+write); subgroups ${subgroupSize ?? 'none'}; workgroup memory ${gpu.limits.maxComputeWorkgroupStorageSize} B; ${reps} dispatches a timed pass`);
  const figures: Figure[] = [];
  const skipped: { projection: string; M: number; kernel: string; why: string }[] = [];
  const failed: { projection: string; M: number; kernel: string; why: string }[] = [];
  let checked = 0;
  const outDir = process.env.OUT ?? 'out';
  const save = () => writeReport(outDir, 'skinny-probe.json', { ...adapterHeader(gpu), copy, reps, tolerance: TOLERANCE, figures, skipped, failed });
  const table: string[][] = [['projection', 'M', 'N×K', 'µs', 'GB/s', 'pick/this', 'kernel']];
  const figure = (p: Projection, M: number, c: Candidate, us: number, stage: Figure['stage'], pickUs?: number, extra: Partial<Figure> = {}): Figure => {
    const f: Figure = {
      projection: p.name, M, N: p.N, K: p.K, kernel: c.kernel, design: c.design, ...(c.variant && { variant: c.variant }), stage,
      usPerDispatch: us, gbPerS: (p.N * p.K * 4) / (us * 1e3), ...(pickUs !== undefined && { vsPick: pickUs / us }), ...extra,
    };
    figures.push(f);
    return f;
  };
  const line = (f: Figure) => [f.projection, String(f.M), `${f.N}×${f.K}`, f.usPerDispatch.toFixed(2), f.gbPerS.toFixed(0), f.vsPick === undefined ? '' : `${f.vsPick.toFixed(2)}×`, f.kernel];

  for (const M of Ms) {
    for (const p of projections) {
      const o = operands(gpu, p, M, reps, cacheBytes);
      const pick = await pickCandidate(gpu, p, M, o);
      const pickWrong = await wrong(gpu, pick, o, M, p.N);
      checked++;
      if (pickWrong) failed.push({ projection: p.name, M, kernel: pick.kernel, why: pickWrong });
      console.log(`${p.name} M=${M} (${p.N}×${p.K}): ${pickWrong ? `!! pick wrong: ${pickWrong}` : 'pick ok'} — ${pick.kernel}`);
      // Every variant compiled and checked first, so that no compile leaves the GPU idle (and its clocks sagging)
      // between the sweep's timings; then the pick with a long warm-up, the variants with short ones, the pick again
      // every PICK_EVERY variants (the sweep's ratios are to the pick's fastest sweep time).
      const ready: Candidate[] = [];
      /** Checked against the float64 C first: timed only if right. */
      const admit = async (cand: Candidate, label: string) => {
        const bad = await wrong(gpu, cand, o, M, p.N);
        checked++;
        if (bad) {
          failed.push({ projection: p.name, M, kernel: label, why: bad });
          console.log(`  !! wrong, not timed: ${label}: ${bad}`);
        } else ready.push(cand);
      };
      for (const v of probeSweep({ M, N: p.N, K: p.K }, { max, small, explore, workgroupBytes: gpu.limits.maxComputeWorkgroupStorageSize })) {
        const unfit = probeUnfit(v, gpu.limits, subgroupSize);
        const k = unfit ? undefined : probeKernel(v, gpu.limits);
        const label = k?.label ?? `${probeDesign(v)} L${v.lanes} S${v.slices} CG${v.colGroups} TN${v.colsPerThread} RB${v.rowBlocks}`;
        if (only && !label.includes(only)) continue;
        if (!k) {
          skipped.push({ projection: p.name, M, kernel: label, why: unfit! });
          console.log(`  -- skipped ${label}: ${unfit}`);
          continue;
        }
        await admit(await probeCandidate(gpu, k, v, o), k.label);
      }
      for (const knobs of knobSets) {
        let cand: Candidate;
        try {
          cand = await pickCandidate(gpu, p, M, o, knobs);
        } catch (e) {
          skipped.push({ projection: p.name, M, kernel: `lanes ${JSON.stringify(knobs)}`, why: (e as Error).message });
          console.log(`  -- skipped lanes ${JSON.stringify(knobs)}: ${(e as Error).message}`);
          continue;
        }
        await admit(cand, cand.kernel);
      }
      console.log(`  ${ready.length} variant(s) matched the float64 C (relative error < ${TOLERANCE})`);
      const pickTimes = [await time(gpu, pick, reps, PICK_WARMUP_MS)];
      const swept: { cand: Candidate; us: number }[] = [];
      for (const [i, cand] of ready.entries()) {
        if (i > 0 && i % PICK_EVERY === 0) pickTimes.push(await time(gpu, pick, reps, SWEEP_WARMUP_MS, SWEEP_ITERS));
        swept.push({ cand, us: await time(gpu, cand, reps, SWEEP_WARMUP_MS, SWEEP_ITERS) });
      }
      const pickSweepUs = Math.min(...pickTimes);
      console.log(`  … ${line(figure(p, M, pick, pickSweepUs, 'sweep', pickSweepUs)).join('  ')}  (pick timed ${pickTimes.length}×: ${pickTimes.map((t) => t.toFixed(2)).join(', ')})`);
      for (const { cand, us } of swept) console.log(`  … ${line(figure(p, M, cand, us, 'sweep', pickSweepUs)).join('  ')}`);
      // Confirm: the best CONFIRM_BEST and the pick, full warm-up, alternating rounds, the faster round of each.
      const best = [...swept].sort((x, y) => x.us - y.us).slice(0, CONFIRM_BEST);
      const cands = [{ cand: pick, us: pickSweepUs }, ...best];
      const fastest = cands.map(() => Infinity);
      for (let round = 0; round < CONFIRM_ROUNDS; round++) {
        for (const [i, c] of cands.entries()) fastest[i] = Math.min(fastest[i], await time(gpu, c.cand, reps));
      }
      for (const [i, c] of cands.entries()) {
        const rank = i === 0 ? ('pick' as const) : (i as 1 | 2 | 3);
        const f = figure(p, M, c.cand, fastest[i], 'confirm', fastest[0], { rank, sweepUs: c.us });
        table.push(line(f));
      }
      release(gpu, o);
      pick.destroy();
      save();
    }
  }
  const widths = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  console.log('\nconfirmed (full warm-up, faster of 2 alternating rounds); pick/this > 1: the probe kernel is faster');
  for (const r of table) console.log('  ' + r.map((c, i) => (i >= 1 && i <= 5 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  '));
  console.log(`${checked} kernels checked against the float64 C: ${failed.length} wrong${failed.length ? ' (marked !!)' : ''}; ${skipped.length} skipped over the device's limits`);
  save();
}

runIfMain(import.meta.url, main);
