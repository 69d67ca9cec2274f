// The results file of issue 15: every shipped variant's fused and unfused chunked plan at its default schedule
// (the schedule model's pick for that plan at the bench's shape; no autotune cache is read), next to the PyTorch
// hand-chunked layer where bench/torch_baseline.py has the variant. Each plan's output is first checked against
// the float64 oracle on the first tokens of sequence 0 (causality makes them independent of the rest).
//
//   npx tsx bench/h200-kernels.ts [--variants a,b] [--b 4 --h 16 --t 4096 --d 64] [--extra elu_dwconv:16384:64,elu_dwconv:4096:128]
//                                 [--iters 5] [--rounds 3] [--torch torch_baseline.json] [--out FILE]
// Writes FILE (default $OUT/h200-kernels.json): {"device", "rows": [{variant, b, h, t, d, fused_ms, unfused_ms, torch_ms}]}
// Each plan is timed in --rounds rounds, fused and unfused alternating, and *_ms is the median of the rounds
// (every round is kept in fused_rounds_ms / unfused_rounds_ms, with the row's start time): elu fused once timed
// 8.5 ms beside elu_aug's 1.9 although its kernels are a strict subset of elu_aug's (same φ/ψ staging, no
// convolution) and its unfused plan was slow in the same window — a slow stretch of the GPU, not of a kernel,
// which one round per plan cannot tell apart.
// (unfused_ms null for softmax attention, which has one plan; torch_ms null where PyTorch has no baseline) and
// prints the model's decision and estimates beside each measurement, so that its constants can be refitted.
// A third plan, the fused kernel with the feature nodes the model puts in a prologue (prologue_ms, prologue_nodes,
// prologue_schedule; null where the model puts none there) at the schedule the model's choice runs it at when it
// picks that plan, else at the fused schedule, is timed in the same rounds.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import type { Plan } from '../backends/wgsl/plan.ts';
import { decidePrologue, estimatePlan } from '../backends/wgsl/fusion-model.ts';
import { isSoftmaxProgram } from '../backends/wgsl/softmax-analysis.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { adapterModel } from '../src/runtime/adapter-model.ts';
import { compileFile, planFor, runCompiled, timePlan, type Compiled } from '../src/runtime/compiler.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import { modelDefault } from '../src/runtime/schedule.ts';
import { median } from '../src/runtime/timing.ts';
import { relativeError, type Tensor } from '../src/tensor.ts';
import { VARIANT_FILES_FOR_BENCH } from './report.ts';
import { oracleHead } from './oracle-head.ts';

const { values } = parseArgs({
  options: {
    variants: { type: 'string' },
    b: { type: 'string', default: '4' },
    h: { type: 'string', default: '16' },
    t: { type: 'string', default: '4096' },
    d: { type: 'string', default: '64' },
    extra: { type: 'string', default: 'elu_dwconv:16384:64,elu_dwconv:4096:128' },
    iters: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    torch: { type: 'string' },
    out: { type: 'string' },
  },
});
const B = Number(values.b);
const H = Number(values.h);
const iters = Number(values.iters);
const rounds = Number(values.rounds);
const fileOf = (v: string) => VARIANT_FILES_FOR_BENCH.find((f) => f.endsWith(`/${v}.la`)) ?? v;
const names = values.variants ? values.variants.split(',') : VARIANT_FILES_FOR_BENCH.map((f) => f.replace(/^.*\//, '').replace(/\.la$/, ''));
// The --extra shapes (the issue's headline figures) first: a run cut off by its time limit keeps them.
const cases = [
  ...values.extra.split(',').filter(Boolean).map((s) => {
    const [v, t, d] = s.split(':');
    return { v, t: Number(t), d: Number(d) };
  }),
  ...names.map((v) => ({ v, t: Number(values.t), d: Number(values.d) })),
];
const outFile = values.out ?? join(process.env.OUT ?? 'out', 'h200-kernels.json');

interface TorchRow { variant: string; b: number; h: number; t: number; d: number; ms: number }
const torchRows: TorchRow[] = values.torch && existsSync(values.torch) ? JSON.parse(readFileSync(values.torch, 'utf8')).rows : [];
if (values.torch && !torchRows.length) console.log(`no PyTorch rows in ${values.torch}: torch_ms stays null`);
const torchMs = (v: string, t: number, d: number) => torchRows.find((r) => r.variant === v && r.b === B && r.h === H && r.t === t && r.d === d)?.ms ?? null;

const gpu = await getDevice();
const model = adapterModel(gpu);
console.log(`adapter: ${gpu.adapterName} (${model.computeUnits} compute units assumed by the schedule model)`);

interface Row {
  variant: string; b: number; h: number; t: number; d: number; fused_ms: number | null; unfused_ms: number | null; torch_ms: number | null;
  started?: string; fused_rounds_ms?: number[]; unfused_rounds_ms?: number[];
  prologue_ms?: number | null; prologue_rounds_ms?: number[]; prologue_nodes?: number[];
  // the schedule each plan ran at (the prologue plan at the one the model picks it at, else the fused one):
  // bench/model-fit.ts refits the model at them
  fused_schedule?: ChunkSchedule; unfused_schedule?: ChunkSchedule; prologue_schedule?: ChunkSchedule;
}
const rows: Row[] = [];
const write = () => {
  mkdirSync(dirname(outFile), { recursive: true });
  writeFileSync(outFile, `${JSON.stringify({ device: gpu.adapterName, rows }, null, 1)}\n`);
};

/** Relative error of the plan's output on the first tokens of sequence 0 against the float64 oracle. */
async function checked(c: Compiled, x: Record<string, Tensor>, sizes: Record<string, number>, fuse: boolean, schedule: ChunkSchedule, featureTile?: number, prologue?: 'model', resident?: boolean, residentSchedule?: ChunkSchedule): Promise<number> {
  const o = (await runCompiled(c, x, { device: 'gpu', gpu, form: 'chunked', fuse, schedule, ...(featureTile ? { featureTile } : {}), ...(prologue && { prologue }), ...(resident && { resident }), ...(residentSchedule && { residentSchedule }) })).o;
  const tc = Math.min(x[c.source.inputs[0].name].shape[1], 32);
  const oracle = oracleHead(c, x, sizes, tc);
  return relativeError(o.data.subarray(0, oracle.data.length), oracle.data);
}

for (const { v, t, d } of cases) {
  const label = `${v} b${B} h${H} t${t} d${d}`;
  const row: Row = { variant: v, b: B, h: H, t, d, fused_ms: null, unfused_ms: null, torch_ms: torchMs(v, t, d) };
  try {
    const c = compileFile(fileOf(v));
    const axes: Record<string, number> = {};
    for (const [a, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[a] = a === 'h' ? H : d;
    const sizes = axisSizes(c.source, axes);
    const x = makeInputs(c.source, { b: B, t, axes, seed: 1 });
    const p = c.program;
    const softmax = isSoftmaxProgram(p);
    const decision = choosePlan(gpu, p, sizes, {}, { b: B, t });
    console.log(`${label}: model: ${decision.reason}`);
    row.started = new Date().toISOString();
    const timed: { fuse: boolean; prologue?: ReadonlySet<number>; featureTile?: number; plan: Plan; s: ChunkSchedule; err: number; ms: number[] }[] = [];
    // a variant whose feature axis fits no term kernel (based at d 64): the fused row is the plan choice's fused plan
    // over feature tiles (backends/wgsl/feature-tiled-plan.ts), the unfused row the unfused plan over feature tiles
    const tiledUnfused = decision.featureTile ? choosePlan(gpu, p, sizes, { fuse: false }, { b: B, t }) : undefined;
    for (const fuse of softmax ? [true] : [true, false]) {
      if (fuse && decision.fuse && decision.tileSchedule) {
        const plan = planFor(gpu, c, sizes, { form: 'chunked' }, { b: B, t });
        const o = (await runCompiled(c, x, { device: 'gpu', gpu, form: 'chunked' })).o;
        const oracle = oracleHead(c, x, sizes, Math.min(t, 32));
        const err = relativeError(o.data.subarray(0, oracle.data.length), oracle.data);
        if (!(err < 1e-3)) throw new Error(`fused over feature tiles: output wrong (relative error ${err} vs the float64 oracle); not timing it`);
        timed.push({ fuse, featureTile: decision.featureTile, plan, s: { ...decision.tileSchedule }, err, ms: [] });
        continue;
      }
      const featureTile = !fuse && tiledUnfused?.featureTile ? tiledUnfused.featureTile : undefined;
      // the fused plan's default may keep its state in subgroup lanes' registers (plan-choice.ts residentChoice) or run
      // over spans of segments (spanChoice); the unfused plan is the plan choice's, which may run its stateless kernels
      // over segments and its prefix kernels with the state in lanes' registers (withStatelessSegments, withResidentPrefix)
      const lanes = !softmax && !featureTile ? choosePlan(gpu, p, sizes, { fuse, prologue: 'none' }, { b: B, t }) : undefined;
      const resident: { resident?: true; residentSchedule?: ChunkSchedule } = lanes?.resident ? { resident: true, ...(lanes.residentSchedule && { residentSchedule: lanes.residentSchedule }) } : {};
      const s = featureTile ? tiledUnfused!.schedule : resident.resident || lanes?.schedule.span || (!fuse && lanes) ? lanes!.schedule : modelDefault(gpu, p, sizes, candidateSchedules(gpu.limits, p, sizes, !fuse), fuse, { b: B, t }, fuse);
      if (!s) {
        console.log(`${label}: ${fuse ? 'fused' : 'unfused'}: no schedule fits ${gpu.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory`);
        continue;
      }
      const err = await checked(c, x, sizes, fuse, s, featureTile, undefined, resident.resident, resident.residentSchedule);
      if (!(err < 1e-3)) throw new Error(`${fuse ? 'fused' : 'unfused'} output wrong (relative error ${err} vs the float64 oracle); not timing it`);
      timed.push({ fuse, featureTile, plan: planFor(gpu, c, sizes, { form: 'chunked', fuse, schedule: s, ...(featureTile ? { featureTile } : {}), ...resident }), s: { ...s, ...resident }, err, ms: [] });
      // the prologue plan at the schedule the model picks it at, where it picks it (hedgehog's may be the unfused
      // plan's), else at the fused default; in lanes' registers where the pick keeps it there (a group open across
      // chunks: plan-choice.ts residentChoice)
      const ps = decision.fuse && decision.prologue?.size ? decision.schedule : s;
      const pres = decision.fuse && decision.prologue?.size && decision.resident ? { resident: true } : {};
      const prologue = fuse && !softmax ? decidePrologue(model, p, sizes, ps, B, t)?.prologue : undefined;
      if (prologue?.size) {
        const perr = await checked(c, x, sizes, true, ps, undefined, 'model', pres.resident);
        if (!(perr < 1e-3)) throw new Error(`fused with a prologue: output wrong (relative error ${perr} vs the float64 oracle); not timing it`);
        timed.push({ fuse, prologue, plan: planFor(gpu, c, sizes, { form: 'chunked', fuse, schedule: ps, prologue: 'model', ...pres }), s: { ...ps, ...pres }, err: perr, ms: [] });
      }
    }
    // Rounds, the plans alternating: a slow stretch of the GPU shows as a spread across rounds, a slow plan as a consistent figure.
    // One untimed round first: a variant's first round ran on clocks still rising (calls 100 and 107: elu 2.346, 0.834,
    // 0.534 ms, its median the middle one), so the medians of three rounds were not steady.
    for (const m of timed) await timePlan(gpu, m.plan, x, B, t, iters);
    for (let r = 0; r < rounds; r++) for (const m of timed) m.ms.push((await timePlan(gpu, m.plan, x, B, t, iters)).ms);
    for (const { fuse, prologue, featureTile, s, err, ms: all } of timed) {
      const ms = median(all);
      const est = softmax || featureTile ? undefined : estimatePlan(model, p, sizes, s, fuse, B, t, prologue);
      if (prologue) {
        (row.prologue_ms = ms), (row.prologue_rounds_ms = all), (row.prologue_nodes = [...prologue]), (row.prologue_schedule = s);
        console.log(`${label}: prologue ${ms.toFixed(3).padStart(8)} ms (rounds ${all.map((v) => v.toFixed(3)).join(' ')}; model ${est ? (est.us / 1e3).toFixed(3) : '—'} ms) nodes ${[...prologue].map((id) => `%${id}`).join(' ')} schedule ${JSON.stringify(s)} err ${err.toExponential(1)}`);
        continue;
      }
      console.log(`${label}: ${fuse ? 'fused  ' : 'unfused'} ${ms.toFixed(3).padStart(9)} ms (rounds ${all.map((v) => v.toFixed(3)).join(' ')}; model ${est ? (est.us / 1e3).toFixed(3) : '—'} ms) schedule ${JSON.stringify(featureTile ? { ...s, featureTile } : s)} err ${err.toExponential(1)}`);
      // a feature-tiled plan's schedule keeps its tile (model-fit.ts featureTiledRow leaves such rows out of the fit)
      const ran = featureTile ? { ...s, featureTile } : s;
      if (fuse) (row.fused_ms = ms), (row.fused_rounds_ms = all), (row.fused_schedule = ran);
      else (row.unfused_ms = ms), (row.unfused_rounds_ms = all), (row.unfused_schedule = ran);
    }
  } catch (e) {
    console.log(`${label}: ${(e as Error).message.split('\n')[0]}`);
  }
  rows.push(row);
  write(); // after every row: a run cut off by its time limit still leaves its figures
}
write();
console.log(`wrote ${outFile}`);
process.exit(0);
