// Based's feature-tiled plans side by side (the Taylor term's 4161 features at d 64 fit no workgroup's memory):
//   old        the unfused plan with the plain tile kernel at its schedule (chunk 16, 32 columns, 256 threads, 128
//              features a tile: 130 ms on the H200 at B 4, H 16, T 4096) — tiles, tile sum, window, combine
//   unfused    the same plan and schedule with the register-blocked tile kernel (feature-tiled-blocked.ts)
//   fused      the plan choice's default: the fused plan over feature tiles (feature-tiled-plan.ts), blocked tiles at
//              their own schedule, the window at its own, one kernel summing tiles and combining
//   fused, plain tiles   the same with the plain tile kernel (the blocking's gain alone)
//   fused C×R×TH×FT   the fused plan at the tile schedules --tiles lists (chunk × columns × threads × features)
// Each plan is first run at b 1, t --check-t (several chunks, so the carried state is exercised) and compared with
// the float64 oracle there (the oracle at the full shape would take hours), then timed at the full shape in
// --rounds rounds, the plans alternating; the median of the rounds is printed.
//
//   npx tsx bench/based-tiled.ts [--b 4 --h 16 --t 4096 --d 64] [--iters 5] [--rounds 3] [--check-t 72]
//                                [--tiles 32x64x256x64,32x64x128x64,16x64x256x96,16x64x128x96] [--out FILE]
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { blockedSharedFloats } from '../backends/wgsl/feature-tiled-blocked.ts';
import { lowerChunked, type LowerOptions } from '../backends/wgsl/lower.ts';
import type { Plan } from '../backends/wgsl/plan.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import { timePlan } from '../src/runtime/time-plan.ts';
import { median } from '../src/runtime/timing.ts';
import { relativeError } from '../src/tensor.ts';

const { values } = parseArgs({
  options: {
    b: { type: 'string', default: '4' },
    h: { type: 'string', default: '16' },
    t: { type: 'string', default: '4096' },
    d: { type: 'string', default: '64' },
    iters: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    'check-t': { type: 'string', default: '72' },
    tiles: { type: 'string', default: '32x64x256x64,32x64x128x64,16x64x256x96,16x64x128x96' },
    out: { type: 'string' },
  },
});
const [B, H, T, D, iters, rounds, TC] = [values.b, values.h, values.t, values.d, values.iters, values.rounds, values['check-t']].map(Number);
const gpu = await getDevice();
console.log(`adapter: ${gpu.adapterName}, ${gpu.limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory`);
const c = compileFile('examples/variants/based.la');
const axes: Record<string, number> = {};
for (const [a, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[a] = a === 'h' ? H : D;
const sizes = axisSizes(c.source, axes);
const p = c.program;

const unfused = choosePlan(gpu, p, sizes, { fuse: false }, { b: B, t: T });
const fused = choosePlan(gpu, p, sizes, {}, { b: B, t: T });
console.log(`unfused: ${unfused.reason}\nfused: ${fused.reason}`);
const plans: { name: string; opts: LowerOptions }[] = [
  { name: 'old (unfused, plain tiles)', opts: { fuse: false, schedule: unfused.schedule, featureTile: unfused.featureTile, tiledKernel: 'plain' } },
  { name: 'unfused, blocked tiles', opts: { fuse: false, schedule: unfused.schedule, featureTile: unfused.featureTile } },
];
if (fused.fuse && fused.tileSchedule) {
  const opts = { fuse: true, schedule: fused.schedule, featureTile: fused.featureTile, tileSchedule: fused.tileSchedule };
  plans.push({ name: 'fused (default)', opts }, { name: 'fused, plain tiles', opts: { ...opts, tiledKernel: 'plain' } });
}
for (const spec of values.tiles.split(',').filter(Boolean)) {
  const [chunk, cols, threads, featureTile] = spec.split('x').map(Number);
  const bytes = 4 * blockedSharedFloats({ chunk, cols, threads, featureTile }, sizes.f ?? 4161, sizes.e ?? D);
  if (bytes > gpu.limits.maxComputeWorkgroupStorageSize) {
    console.log(`fused ${spec}: ${bytes} bytes of workgroup memory, over the limit; skipped`);
    continue;
  }
  plans.push({ name: `fused ${spec}`, opts: { fuse: true, schedule: fused.schedule, featureTile, tileSchedule: { chunk, cols, threads } } });
}

const small = makeInputs(c.source, { b: 1, t: TC, axes, seed: 2 });
const t0 = Date.now();
const ref = evaluateParallel(c.source, small).data;
console.log(`float64 oracle at b 1, t ${TC}: ${((Date.now() - t0) / 1e3).toFixed(1)} s`);
const x = makeInputs(c.source, { b: B, t: T, axes, seed: 1 });
const timed: { name: string; plan: Plan; err: number; ms: number[] }[] = [];
for (const { name, opts } of plans) {
  try {
    const plan = lowerChunked(p, sizes, opts);
    const err = relativeError((await (await PlanRunner.create(gpu, plan)).run(small, 1, TC)).data, ref);
    if (!(err < 1e-3)) {
      console.log(`${name}: relative error ${err} against the float64 oracle; not timing it`);
      continue;
    }
    timed.push({ name, plan, err, ms: [] });
  } catch (e) {
    console.log(`${name}: ${(e as Error).message.split('\n')[0]}`);
  }
}
// a plan that fails at the full shape (a partial buffer over one storage binding, say) is reported and dropped
const failed = new Set<string>();
for (let r = 0; r < rounds; r++) {
  for (const m of timed.filter((m) => !failed.has(m.name))) {
    try {
      m.ms.push((await timePlan(gpu, m.plan, x, B, T, iters)).ms);
    } catch (e) {
      failed.add(m.name);
      console.log(`${m.name}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
}
const rows = timed.filter((m) => !failed.has(m.name)).map(({ name, plan, err, ms }) => {
  const row = { name, ms: median(ms), rounds_ms: ms, err, kernels: plan.kernels.map((k) => k.label), schedule: plan.schedule };
  console.log(`based b${B} h${H} t${T} d${D} ${name.padEnd(28)} ${row.ms.toFixed(3).padStart(9)} ms (rounds ${ms.map((v) => v.toFixed(3)).join(' ')}) err ${err.toExponential(1)} launches ${plan.kernels.length}`);
  return row;
});
const outFile = values.out ?? join(process.env.OUT ?? 'out', 'based-tiled.json');
mkdirSync(dirname(outFile), { recursive: true });
writeFileSync(outFile, `${JSON.stringify({ device: gpu.adapterName, b: B, h: H, t: T, d: D, rows }, null, 1)}\n`);
