// Backward benchmark (`npm run bench -- --backward`, bench/kernels.ts hands over to here): per variant, the fused
// chunked forward alone, and forward + backward in one compute pass three ways — fused with the normalisers
// kept by the forward (store), fused recomputing them (recompute, fla's choice), and unfused (one launch per
// stage of the gradient program behind the unfused forward) — with their launches, and the memory the store
// keeps. Before timing, the fused GPU gradient is checked against the float64 gradient oracle at a short
// sequence of the same axes, and fused and unfused agree at the timed shape.
//
//   npx tsx bench/kernels.ts --backward [--variants elu_dwconv,gla] [--t 4096] [--d 64] [--b 4] [--h 16] [--iters 20]
//                                       [--grad-schedules 32x32x256,32x16x256,16x32x512s4] [--rounds 5]
// --grad-schedules also times forward+backward under each backward schedule (chunk × value columns × threads, and
// sG: G chunks per segment, the term kernels whose states add up run segmented: more launches, more workgroups).
// Writes backward.json to $OUT or out/. PyTorch autograd of the hand-chunked layer (and fla, when importable):
// python3 bench/torch_baseline.py --backward.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import type { GradPlan } from '../backends/wgsl/grad-lower.ts';
import { lowerChunked, normalisedItems } from '../backends/wgsl/lower.ts';
import type { Plan } from '../backends/wgsl/plan.ts';
import { differentiate } from '../passes/autodiff.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { GradRunner } from '../src/runtime/grad-runner.ts';
import { gradPlanFor, trainForwardSchedule } from '../src/runtime/gradient.ts';
import { downloadTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { chooseSchedule } from '../src/runtime/schedule.ts';
import { timeDispatches } from '../src/runtime/timing.ts';
import { randn, toFloat64, type Tensor } from '../src/tensor.ts';

export interface BackwardBenchOptions {
  readonly files: readonly string[];
  readonly b: number;
  readonly h: number;
  readonly ts: readonly number[];
  readonly ds: readonly number[];
  readonly iters: number;
  readonly outDir: string;
  /** Also time forward+backward (fused) with each of these backward schedules (chunk × cols × threads). */
  readonly gradSchedules?: readonly ChunkSchedule[];
  /**
   * Time the three backwards alone in this many rounds, in turn, keeping each one's fastest median: on a machine
   * shared with other work (lavapipe on a busy CPU) a single median drifts with the load. Default 1.
   */
  readonly rounds?: number;
}

interface Pair {
  readonly forward: PlanRunner;
  readonly backward: GradRunner | null;
}

interface Row {
  variant: string;
  b: number; h: number; t: number; d: number;
  forwardMs: number;
  /** The forward that keeps n and z for the stored backward, and the unfused forward, alone. */
  forwardStoreMs: number | null; forwardUnfusedMs: number;
  storeMs: number | null; recomputeMs: number; unfusedMs: number;
  backwardStoreMs: number | null; backwardRecomputeMs: number; backwardUnfusedMs: number;
  launches: { forward: number; store: number | null; recompute: number; unfused: number; backwardStore: number | null; backwardRecompute: number; backwardUnfused: number };
  storeBytes: number; scratchBytes: number;
  errVsOracle: number; fusedVsUnfused: number;
  schedule: Record<string, number>;
  gradSchedule: Record<string, number>;
  /** Each launch of the fused backward (kept normalisers where the variant has them) timed alone. */
  perLaunch: { label: string; workgroups: number; ms: number }[];
  /** Forward+backward (fused) under other backward schedules. */
  sweep: { chunk: number; cols: number; threads: number; segment?: number; launches: number; ms: number }[];
}

const maxRel = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let e = 0;
  let s = 1e-30;
  for (let i = 0; i < b.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return e / s;
};

/** Buffers of both plans (the backward reads the forward's inputs and, stored, its kept normalisers). */
function allocate(p: Pair, x: Readonly<Record<string, Tensor>>, dout: Tensor, b: number, t: number): { all: Record<string, GpuTensor>; free: () => void } {
  const f = p.forward.allocate(x, b, t);
  const g = p.backward ? p.backward.allocate({ ...x, do: dout }, b, t, f) : {};
  return { all: { ...f, ...g }, free: () => (p.forward.release(f), p.backward?.free(g)) };
}

/** `which`: forward and backward, the backward alone, or the backward's launch of that index alone. */
async function timePair(gpu: Gpu, p: Pair, x: Readonly<Record<string, Tensor>>, dout: Tensor, b: number, t: number, iters: number, which: 'both' | 'backward' | number = 'both'): Promise<number> {
  const { all, free } = allocate(p, x, dout, b, t);
  try {
    const bufs = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.buffer]));
    const fb = p.forward.bind(bufs, b, t);
    const gb = p.backward?.bind(bufs, b, t);
    const r = await timeDispatches(gpu, (pass) => {
      if (which === 'both') p.forward.encode(pass, fb);
      if (p.backward && gb) p.backward.encode(pass, gb, typeof which === 'number' ? which : undefined);
    }, { warmup: 3, iters, label: `${p.forward.plan.variant} forward+backward` });
    fb.dims.destroy();
    if (gb) p.backward!.release(gb);
    return r.medianMs;
  } finally {
    free();
  }
}

/** The gradients of one run of forward + backward. */
async function gradients(gpu: Gpu, p: Pair, x: Readonly<Record<string, Tensor>>, dout: Tensor, b: number, t: number): Promise<Record<string, Float32Array>> {
  const { all, free } = allocate(p, x, dout, b, t);
  try {
    const bufs = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.buffer]));
    const fb = p.forward.bind(bufs, b, t);
    const gb = p.backward!.bind(bufs, b, t);
    const enc = gpu.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    p.forward.encode(pass, fb);
    p.backward!.encode(pass, gb);
    pass.end();
    gpu.device.queue.submit([enc.finish()]);
    const out: Record<string, Float32Array> = {};
    for (const g of p.backward!.plan.gradients) out[g.name] = await downloadTensor(gpu, all[g.buffer]);
    fb.dims.destroy();
    p.backward!.release(gb);
    return out;
  } finally {
    free();
  }
}

const bytesOf = (plan: Plan | GradPlan, pick: (name: string, role: string) => boolean, b: number, t: number) =>
  plan.buffers.filter((x) => pick(x.name, x.role)).reduce((n, x) => n + 4 * x.floats(b, t), 0);

export async function benchBackward(gpu: Gpu, o: BackwardBenchOptions): Promise<void> {
  const rows: Row[] = [];
  const write = () => writeFileSync(join(o.outDir, 'backward.json'), JSON.stringify({ adapter: gpu.adapterName, timing: gpu.hasTimestamps ? 'timestamp-query, median' : 'wall-clock, median', iters: o.iters, rows }, null, 1));
  // the limits that decide which stages merge, which schedules fit and whether a segmented kernel stays whole
  const lim = gpu.limits;
  console.log(`limits: ${lim.maxStorageBuffersPerShaderStage} storage buffers per kernel, ${lim.maxComputeWorkgroupStorageSize} B workgroup memory, ${lim.maxComputeInvocationsPerWorkgroup} threads`);
  for (const file of o.files) {
    const c = compileFile(file);
    if (c.program.terms.some((t) => t.noncausal)) {
      console.log(`${file}: noncausal (its forward runs only in the parallel form); not timed`);
      continue;
    }
    const gp = differentiate(c.source);
    for (const d of o.ds) {
      const axes: Record<string, number> = {};
      for (const [a, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[a] = a === 'h' ? o.h : d;
      const sizes = axisSizes(c.source, axes);
      const normalised = normalisedItems(c.program).length > 0;
      for (const t of o.ts) {
        const label = `${c.source.name} b${o.b} h${o.h} t${t} d${d}`;
        try {
          // on a software adapter the forward takes the gradient's small chunk, as the training seam does there
          const schedule = gpu.isSoftware ? trainForwardSchedule(gpu, c.program, sizes) : chooseSchedule(gpu, c.program, sizes, { b: o.b, t });
          const make = async (forward: Plan, backward: GradPlan | null): Promise<Pair> => ({ forward: await PlanRunner.create(gpu, forward), backward: backward && (await GradRunner.create(gpu, backward)) });
          const fused = await make(lowerChunked(c.program, sizes, { fuse: true, schedule }), gradPlanFor(gpu, gp, sizes, { fuse: true, batch: o.b }));
          const store = normalised ? await make(lowerChunked(c.program, sizes, { fuse: true, schedule, keepNormalisers: true }), gradPlanFor(gpu, gp, sizes, { fuse: true, stored: true, batch: o.b })) : null;
          const unfused = await make(lowerChunked(c.program, sizes, { fuse: false, schedule }), gradPlanFor(gpu, gp, sizes, { fuse: false, batch: o.b }));
          // the fused gradient against the float64 oracle on a short sequence, then fused against unfused here
          const tc = Math.min(t, 48);
          const xc = makeInputs(c.source, { b: 1, t: tc, axes, seed: 2 });
          const dc = randn([1, tc, ...c.source.outAxes.map((a) => sizes[a])], 3);
          const want = gradientParallel(c.source, Object.fromEntries(Object.entries(xc).map(([k, v]) => [k, toFloat64(v)])), dc);
          const got = await gradients(gpu, store ?? fused, xc, dc, 1, tc);
          const errVsOracle = Math.max(...Object.keys(want).map((n) => maxRel(got[n], want[n].data)));
          const x = makeInputs(c.source, { b: o.b, t, axes, seed: 1 });
          const dout = randn([o.b, t, ...c.source.outAxes.map((a) => sizes[a])], 4);
          const gf = await gradients(gpu, store ?? fused, x, dout, o.b, t);
          const gu = await gradients(gpu, unfused, x, dout, o.b, t);
          const fusedVsUnfused = Math.max(...Object.keys(gf).map((n) => maxRel(gf[n], gu[n])));
          if (!(errVsOracle <= 1e-3 && fusedVsUnfused <= 1e-3)) throw new Error(`wrong gradient (vs the oracle at t ${tc}: ${errVsOracle}; fused vs unfused: ${fusedVsUnfused}); not timing it`);
          const forwardMs = await timePair(gpu, { forward: fused.forward, backward: null }, x, dout, o.b, t, o.iters);
          // each forward+backward runs its own forward (keeping n and z, or unfused): time those alone too, so that a
          // difference in forward+backward is not read as the backward's
          const forwardStoreMs = store ? await timePair(gpu, { forward: store.forward, backward: null }, x, dout, o.b, t, o.iters) : null;
          const forwardUnfusedMs = await timePair(gpu, { forward: unfused.forward, backward: null }, x, dout, o.b, t, o.iters);
          const recomputeMs = await timePair(gpu, fused, x, dout, o.b, t, o.iters);
          const storeMs = store ? await timePair(gpu, store, x, dout, o.b, t, o.iters) : null;
          const unfusedMs = await timePair(gpu, unfused, x, dout, o.b, t, o.iters);
          let [backwardStoreMs, backwardRecomputeMs, backwardUnfusedMs] = [store ? Infinity : null, Infinity, Infinity];
          for (let r = 0; r < (o.rounds ?? 1); r++) {
            if (store) backwardStoreMs = Math.min(backwardStoreMs!, await timePair(gpu, store, x, dout, o.b, t, o.iters, 'backward'));
            backwardRecomputeMs = Math.min(backwardRecomputeMs, await timePair(gpu, fused, x, dout, o.b, t, o.iters, 'backward'));
            backwardUnfusedMs = Math.min(backwardUnfusedMs, await timePair(gpu, unfused, x, dout, o.b, t, o.iters, 'backward'));
          }
          // each launch of the fused backward alone (inputs as the full run leaves them): which one to work on
          const fusedBackward = (store ?? fused).backward!;
          const perLaunch: Row['perLaunch'] = [];
          for (const [k, kernel] of fusedBackward.plan.kernels.entries()) perLaunch.push({ label: kernel.label, workgroups: kernel.workgroups(o.b, t).reduce((a, n) => a * n, 1), ms: await timePair(gpu, store ?? fused, x, dout, o.b, t, o.iters, k) });
          const sweep: Row['sweep'] = [];
          const n = (p: Pair) => p.forward.plan.kernels.length + p.backward!.plan.kernels.length;
          const row: Row = {
            variant: c.source.name, b: o.b, h: o.h, t, d,
            forwardMs, forwardStoreMs, forwardUnfusedMs, storeMs, recomputeMs, unfusedMs, backwardStoreMs, backwardRecomputeMs, backwardUnfusedMs,
            launches: {
              forward: fused.forward.plan.kernels.length, store: store && n(store), recompute: n(fused), unfused: n(unfused),
              backwardStore: store && store.backward!.plan.kernels.length, backwardRecompute: fused.backward!.plan.kernels.length, backwardUnfused: unfused.backward!.plan.kernels.length,
            },
            storeBytes: store ? bytesOf(store.forward.plan, (name) => name.startsWith('keep:'), o.b, t) : 0,
            scratchBytes: bytesOf((store ?? fused).backward!.plan, (_, role) => role === 'scratch', o.b, t),
            errVsOracle, fusedVsUnfused, schedule: { ...schedule }, gradSchedule: { ...(store ?? fused).backward!.plan.schedule }, perLaunch, sweep,
          };
          rows.push(row);
          write();
          const ms = (v: number | null) => (v === null ? '      —' : v.toFixed(3).padStart(7));
          console.log(
            `${label.padEnd(30)} forward ${ms(forwardMs)} ms (keeping n z ${ms(forwardStoreMs)}, unfused ${ms(forwardUnfusedMs)}) | forward+backward: store ${ms(storeMs)} (${row.launches.store ?? '—'} launches)` +
              ` recompute ${ms(recomputeMs)} (${row.launches.recompute}) unfused ${ms(unfusedMs)} (${row.launches.unfused})` +
              ` | backward alone: store ${ms(backwardStoreMs)} recompute ${ms(backwardRecomputeMs)} unfused ${ms(backwardUnfusedMs)} | kept ${(row.storeBytes / 2 ** 10).toFixed(0)} KiB | err ${errVsOracle.toExponential(1)}` +
              ` | backward schedule ${row.gradSchedule.chunk}x${row.gradSchedule.cols}x${row.gradSchedule.threads}`,
          );
          console.log(`${''.padEnd(30)} fused backward per launch: ${perLaunch.map((l) => `${l.label.replace(/^[^.]*\.grad\d+\./, '')} ${l.ms.toFixed(3)} ms (${l.workgroups} wg)`).join(', ')}`);
          // the sweep last, its rows written as they come: a time limit that cuts it keeps the figures above
          for (const gs of o.gradSchedules ?? []) {
            // one schedule that does not compile or fit (say, threads past the adapter's limit) costs only its own figure
            try {
              const p = await make((store ?? fused).forward.plan, gradPlanFor(gpu, gp, sizes, { fuse: true, stored: !!store, schedule: gs }));
              // a schedule's figure counts only if its gradients are the default plan's
              const gs2 = await gradients(gpu, p, x, dout, o.b, t);
              const err = Math.max(...Object.keys(gf).map((nm) => maxRel(gs2[nm], gf[nm])));
              if (!(err <= 1e-3)) throw new Error(`wrong gradient (vs the default schedule's: ${err}); not timing it`);
              sweep.push({ ...gs, launches: p.backward!.plan.kernels.length, ms: await timePair(gpu, p, x, dout, o.b, t, o.iters) });
              write();
              const seg = gs.segment ? ` segment ${gs.segment}` : '';
              console.log(`${label}: backward schedule chunk ${gs.chunk} cols ${gs.cols} threads ${gs.threads}${seg}: forward+backward ${sweep[sweep.length - 1].ms.toFixed(3)} ms (backward ${sweep[sweep.length - 1].launches} launches)`);
            } catch (e) {
              console.log(`${label}: backward schedule chunk ${gs.chunk} cols ${gs.cols} threads ${gs.threads}: ${(e as Error).message.split('\n')[0]}`);
            }
          }
        } catch (e) {
          console.log(`${label}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
  }
  write();
  console.log(`wrote ${join(o.outDir, 'backward.json')}`);
}
