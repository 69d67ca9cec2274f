// Kernel benchmark: fused chunked vs unfused vs naive quadratic for each variant, next to the adapter's
// roofline (copy bandwidth and fp32 matmul rate measured in the same run). Every fused and unfused result is
// first checked against the naive GPU form (itself checked against the float64 oracle in the tests) on the
// same inputs, and against the float64 oracle on the first tokens (outputs there depend only on earlier inputs).
//
//   npx tsx bench/kernels.ts [--small] [--variants a,b] [--t 1024,4096] [--d 64] [--b 4] [--h 16] [--iters 20] [--autotune]
// --autotune times every chunk schedule that fits (src/runtime/autotune.ts) and benches the fastest.
// --schedules 16x64x512s16,16x64x512s16b4,default times the fused kernel under each schedule side by side
// (bench/schedules.ts: CxRxT, sG segments, bN columns per invocation) instead, with --rounds rounds.
// Writes kernels.json and kernels.svg to $OUT or out/. With --backward: forward + backward instead (bench/backward.ts).
// --no-prefetch: the chunk kernels stage each chunk's loads as before, not a chunk ahead (LowerOptions.prefetch); with
// --schedules a schedule's trailing `np` (32x32x512np) does the same for that schedule alone, to time both in one run;
// a trailing `rs` (16x64x512rs) keeps the prefix state in subgroup lanes' registers (bench/schedules.ts). --per-kernel
// then times each launch of each schedule's plan on its own (which kernel of an unfused plan takes the time).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { count } from '../backends/wgsl/common.ts';
import { layoutOf } from '../backends/wgsl/chunked.ts';
import { compileFile, planFor, runCompiled, timePlan, type Compiled } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { autotune } from '../src/runtime/autotune.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { relativeError } from '../src/tensor.ts';
import { benchBackward } from './backward.ts';
import { benchSchedules } from './schedules.ts';
import { measureCopyBandwidth, measureMatmulRate } from './roofline.ts';
import { VARIANT_FILES_FOR_BENCH, svgPlot } from './report.ts';
import { oracleHead } from './oracle-head.ts';

const { values } = parseArgs({
  options: {
    small: { type: 'boolean', default: false },
    variants: { type: 'string' },
    t: { type: 'string' },
    d: { type: 'string' },
    b: { type: 'string' },
    h: { type: 'string' },
    iters: { type: 'string', default: '20' },
    'naive-max-t': { type: 'string' },
    autotune: { type: 'boolean', default: false },
    backward: { type: 'boolean', default: false },
    'grad-schedules': { type: 'string' },
    rounds: { type: 'string', default: '1' },
    schedules: { type: 'string' },
    'no-prefetch': { type: 'boolean', default: false },
    'per-kernel': { type: 'boolean', default: false },
  },
});
const gpu = await getDevice();
const small = values.small || gpu.isSoftware;
const B = Number(values.b ?? (small ? 1 : 4));
const H = Number(values.h ?? (small ? 2 : 16));
const Ts = (values.t ?? (small ? '64,256' : '1024,4096,16384')).split(',').map(Number);
const Ds = (values.d ?? (small ? '16' : '64,128')).split(',').map(Number);
const iters = Number(values.iters);
const naiveMaxT = Number(values['naive-max-t'] ?? (small ? 256 : 4096));
const files = values.variants ? values.variants.split(',').map((v) => VARIANT_FILES_FOR_BENCH.find((f) => f.includes(`/${v}.la`)) ?? v) : VARIANT_FILES_FOR_BENCH;
const outDir = process.env.OUT ?? 'out';
mkdirSync(outDir, { recursive: true });
if (values.backward) {
  console.log(`adapter: ${gpu.adapterName}`);
  // chunk x cols x threads, and sG for G chunks per segment (the backward's term kernels segmented)
  const gradSchedules = (values['grad-schedules'] ?? '').split(',').filter(Boolean).map((s) => {
    const [chunk, cols, threads, segment] = s.split(/[xs]/).map(Number);
    return { chunk, cols, threads, ...(segment ? { segment } : {}) };
  });
  await benchBackward(gpu, { files, b: B, h: H, ts: Ts, ds: Ds, iters, outDir, gradSchedules, rounds: Number(values.rounds) });
  process.exit(0);
}

if (values.schedules) {
  await benchSchedules(gpu, { files, b: B, h: H, ts: Ts, ds: Ds, iters, rounds: Number(values.rounds), outDir, schedules: values.schedules.split(',').filter(Boolean), prefetch: !values['no-prefetch'], perKernel: values['per-kernel'] });
  process.exit(0);
}

const copy = await measureCopyBandwidth(gpu, { bytes: small ? 16 << 20 : 256 << 20 });
const mm = await measureMatmulRate(gpu, { size: small ? 256 : 4096 });
const bw = copy.gbPerS * 1e9;
const rate = mm.gflopPerS * 1e9;
console.log(`adapter: ${gpu.adapterName}`);
console.log(`roofline: copy ${copy.gbPerS.toFixed(0)} GB/s, fp32 matmul ${(mm.gflopPerS / 1000).toFixed(2)} TFLOP/s (${mm.problem.M}³)`);

/** FLOPs of the chunked algorithm and bytes it must move (inputs read once, output written once). */
function cost(c: Compiled, sizes: Record<string, number>, b: number, t: number, chunk: number) {
  const p = c.program;
  const L = layoutOf(p, p.terms, chunk);
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  let perToken = 0;
  for (const term of p.terms) {
    if (term.form.kind === 'prefix') {
      const F = term.form.feature ? sizes[term.form.feature] : 1;
      perToken += NS * 2 * (chunk * F + chunk * NR + 2 * F * NR); // A, A·V, φ·S, state update
    } else {
      const r = term.mask.find((m) => m.kind === 'window' || m.kind === 'group');
      perToken += count(p.outAxes, sizes) * 2 * (r ? Math.min(r.size, chunk) : chunk);
    }
  }
  let bytes = 0;
  for (const d of p.inputs) bytes += b * t * count(d.axes, sizes) * 4;
  for (const d of p.params) bytes += count(d.axes, sizes) * 4;
  bytes += b * t * count(p.outAxes, sizes) * 4;
  return { flops: perToken * b * t, bytes };
}

interface Row {
  variant: string;
  b: number; h: number; t: number; d: number;
  fusedMs: number; unfusedMs: number; naiveMs: number | null;
  kernelsFused: number; kernelsUnfused: number;
  gbPerS: number; gflopPerS: number; rooflineMs: number; rooflineFraction: number;
  speedupVsUnfused: number; speedupVsNaive: number | null;
  errVsNaive: number | null; errVsOracle: number;
  schedule: Record<string, number>;
}
const rows: Row[] = [];
function writeReport(): void {
  const report = { adapter: gpu.adapterName, toggles: gpu.toggles, timing: gpu.hasTimestamps ? 'timestamp-query, median' : 'wall-clock, median', iters, copy, matmul: mm, rows };
  writeFileSync(join(outDir, 'kernels.json'), JSON.stringify(report, null, 1));
  writeFileSync(join(outDir, 'kernels.svg'), svgPlot(rows, gpu.adapterName));
}

for (const file of files) {
  for (const d of Ds) {
    let c: Compiled;
    try {
      c = compileFile(file);
    } catch (e) {
      console.log(`${file}: ${(e as Error).message}`);
      continue;
    }
    if (c.program.terms.some((t) => t.noncausal)) continue;
    for (const t of Ts) {
      const axes: Record<string, number> = {};
      for (const [a, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[a] = a === 'h' ? H : d;
      const sizes = axisSizes(c.source, axes);
      const x = makeInputs(c.source, { b: B, t, axes, seed: 1 });
      const label = `${c.source.name} b${B} h${H} t${t} d${d}`;
      try {
        const schedule = values.autotune
          ? (await autotune(gpu, c.program, sizes, x, { b: B, t }, { log: (l) => console.log(`${label}:${l}`) })).best
          : undefined;
        const prefetch = !values['no-prefetch'];
        const fused = planFor(gpu, c, sizes, { form: 'chunked', fuse: true, schedule, prefetch }, { b: B, t });
        const unfused = planFor(gpu, c, sizes, { form: 'chunked', fuse: false, schedule: undefined, prefetch }, { b: B, t });
        const fo = (await runCompiled(c, x, { device: 'gpu', gpu, form: 'chunked', fuse: true, schedule, prefetch })).o;
        // Oracle on the first tokens of sequence 0 (causality makes them independent of the rest).
        const tc = Math.min(t, small ? 64 : 32);
        const oracle = oracleHead(c, x, sizes, tc);
        const errVsOracle = relativeError(fo.data.subarray(0, oracle.data.length), oracle.data);
        let naiveMs: number | null = null;
        let errVsNaive: number | null = null;
        if (t <= naiveMaxT) {
          const no = (await runCompiled(c, x, { device: 'gpu', gpu, form: 'parallel' })).o;
          errVsNaive = relativeError(fo.data, no.data);
          naiveMs = (await timePlan(gpu, planFor(gpu, c, sizes, { form: 'parallel' }), x, B, t, Math.max(3, Math.floor(iters / 4)))).ms;
        }
        if (errVsOracle > 1e-3 || (errVsNaive !== null && errVsNaive > 1e-3)) throw new Error(`${label}: wrong result (vs oracle ${errVsOracle}, vs naive ${errVsNaive}); not timing it`);
        const fusedMs = (await timePlan(gpu, fused, x, B, t, iters)).ms;
        const unfusedMs = (await timePlan(gpu, unfused, x, B, t, iters)).ms;
        const k = cost(c, sizes, B, t, fused.schedule.chunk);
        const rooflineMs = Math.max(k.bytes / bw, k.flops / rate) * 1e3;
        const row: Row = {
          variant: c.source.name, b: B, h: H, t, d,
          fusedMs, unfusedMs, naiveMs,
          kernelsFused: fused.kernels.length, kernelsUnfused: unfused.kernels.length,
          gbPerS: k.bytes / (fusedMs * 1e-3) / 1e9, gflopPerS: k.flops / (fusedMs * 1e-3) / 1e9,
          rooflineMs, rooflineFraction: rooflineMs / fusedMs,
          speedupVsUnfused: unfusedMs / fusedMs, speedupVsNaive: naiveMs === null ? null : naiveMs / fusedMs,
          errVsNaive, errVsOracle, schedule: { ...fused.schedule },
        };
        rows.push(row);
        writeReport(); // after every row: a run cut off by a time limit still leaves its figures
        console.log(
          `${label.padEnd(34)} fused ${fusedMs.toFixed(3).padStart(8)} ms (${row.kernelsFused} kernel) | unfused ${unfusedMs.toFixed(3).padStart(8)} ms (${row.kernelsUnfused}) ×${row.speedupVsUnfused.toFixed(2)}` +
            ` | naive ${naiveMs === null ? '   (skipped: O(t²))' : `${naiveMs.toFixed(3).padStart(8)} ms ×${row.speedupVsNaive!.toFixed(1)}`}` +
            ` | ${row.gbPerS.toFixed(0)} GB/s ${(row.gflopPerS / 1000).toFixed(2)} TFLOP/s = ${(100 * row.rooflineFraction).toFixed(0)}% of roofline | err ${errVsOracle.toExponential(1)}`,
        );
      } catch (e) {
        console.log(`${label}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
}

writeReport();
console.log(`wrote ${join(outDir, 'kernels.json')} and kernels.svg`);
process.exit(0);
