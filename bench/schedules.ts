// The fused chunk kernel under given schedules, side by side (bench/kernels.ts --schedules): each checked against
// the float64 oracle on the first tokens, then timed in `rounds` rounds, the schedules alternating within a round
// so that a slow stretch of the GPU shows as a spread across rounds, not as one schedule's figure. Each row also
// prints the schedule model's estimate (schedule-model.ts), the figure a blocked schedule's model wants fitting to.
//
//   --schedules 16x64x512s16,16x64x512s16b4,8x64x512s16b4,default
// C x R x T, then sG for G chunks per segment (pP after it: the output launch over spans of P segments,
// ChunkSchedule.span) and bN for N columns per invocation (ChunkSchedule.block);
// `default` is the plan choice's own fused schedule. A schedule over the adapter's limits is reported, not run.
// A trailing `np` (16x64x512np, defaultnp) lowers that schedule without prefetched staging (LowerOptions.prefetch),
// so one run times the kernel with and without it side by side; --no-prefetch turns it off for every schedule.
// A trailing `v4` (32x32x512v4, defaultv4, 32x32x512v4np) lowers it with φ and z as vec4 in workgroup memory
// (LowerOptions.vec4: the feature loops four features a trip), so 32x32x512,32x32x512v4 times both in one run; a
// trailing `ht` computes the convolution's tap weights once before the chunk loop (LowerOptions.hoistTaps): 32x32x512v4ht.
// Both are on by default (chunked/analysis.ts CHUNK_DEFAULTS); a trailing `fx` turns both off, today's kernel before them.
// A trailing `so` runs the outputs and the state update one after the other on the whole workgroup (sequential), as
// before LowerOptions.overlap; `ov` forces the two halves on (the default where a kernel admits it): default,defaultso.
// A trailing `rs` keeps the prefix state in subgroup lanes' registers (LowerOptions.resident, chunked/resident.ts) for
// the adapter's subgroup size: 16x64x512rs at d 128 on a GPU of subgroups of 32 (threads / 32 subgroups, each of
// cols / (threads / 32) = 1, 2 or 4 columns); where it does not apply the row says why (`refused: …`).
// A leading `u:` times the unfused plan at that schedule instead (u:default: the unfused plan's own schedule), a
// leading `p:` the fused plan with the feature nodes the model puts in a prologue (fusion-model.ts decidePrologue;
// none where it puts none): u:32x32x512,p:32x32x512,p:16x64x512s16 sets the three plans side by side. p:default is
// the plan choice's own plan (choosePlan: fused, with its prologue, or unfused), what `linattn run` runs.
import { isSoftmaxProgram } from '../backends/wgsl/softmax-analysis.ts';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sharedFloats, type ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { decidePrologue, estimatePlan } from '../backends/wgsl/fusion-model.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { adapterModel } from '../src/runtime/adapter-model.ts';
import { compileFile, planFor, runCompiled, timePlan } from '../src/runtime/compiler.ts';
import { timePlanKernels } from '../src/runtime/time-plan.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { relativeError } from '../src/tensor.ts';
import { oracleHead } from './oracle-head.ts';

/** `CxRxT[sG[pP]][bN]` as a schedule, or 'default'. */
export function parseSchedule(text: string): ChunkSchedule | 'default' {
  if (text === 'default') return text;
  const m = /^(\d+)x(\d+)x(\d+)(?:s(\d+)(?:p(\d+))?)?(?:b(\d+))?$/.exec(text);
  if (!m) throw new Error(`--schedules: '${text}' is not CxRxT[sG[pP]][bN] (e.g. 16x64x512s16b4, 16x64x512s16p8) or default`);
  const [chunk, cols, threads, segment, span, block] = m.slice(1).map((x) => (x === undefined ? 0 : Number(x)));
  return { chunk, cols, threads, ...(segment ? { segment } : {}), ...(span ? { span } : {}), ...(block ? { block } : {}) };
}

/**
 * A schedule's switches, trailing suffixes in any order: `np` (prefetch off), `v4` (LowerOptions.vec4), `ht` (hoistTaps),
 * `fx` (both off: the f32 kernel with its taps inline), `ov` / `so` (LowerOptions.overlap on / off), `rq` / `sq`
 * (LowerOptions.rowQuads on / off: the score matrices as row quads or scalars), `od` / `pd` (LowerOptions.outputDen on /
 * off: the row denominators summed by the output team or in a phase of their own), `es` / `le` (LowerOptions.earlyState on /
 * off: φ·S_prev by the fold team in the score phase or by the outputs), `rs` (LowerOptions.resident: the
 * state in lanes' registers), `kv` / `sk` (LowerOptions.shareKV on / off: softmax's tiled kernel with keys and values
 * in one workgroup array or two).
 */
export function scheduleSwitches(text: string): { schedule: string; np: boolean; v4: boolean; ht: boolean; fx: boolean; ov: boolean; so: boolean; rq: boolean; sq: boolean; od: boolean; pd: boolean; es: boolean; le: boolean; rs: boolean; kv: boolean; sk: boolean } {
  const on = { np: false, v4: false, ht: false, fx: false, ov: false, so: false, rq: false, sq: false, od: false, pd: false, es: false, le: false, rs: false, kv: false, sk: false };
  let schedule = text;
  for (let more = true; more; ) {
    more = false;
    for (const k of ['np', 'v4', 'ht', 'fx', 'ov', 'so', 'rq', 'sq', 'od', 'pd', 'es', 'le', 'rs', 'kv', 'sk'] as const) if (schedule.endsWith(k)) [schedule, on[k], more] = [schedule.slice(0, -2), true, true];
  }
  return { schedule, ...on };
}

/** The LowerOptions a schedule's switches ask for (vec4, hoistTaps, overlap; prefetch is the caller's: --no-prefetch too). */
export function switchOptions(s: ReturnType<typeof scheduleSwitches>): { vec4?: boolean; hoistTaps?: boolean; overlap?: boolean; rowQuads?: boolean; outputDen?: boolean; earlyState?: boolean; shareKV?: boolean } {
  return {
    ...(s.fx ? { vec4: false, hoistTaps: false } : { ...(s.v4 && { vec4: true }), ...(s.ht && { hoistTaps: true }) }),
    ...(s.ov && { overlap: true }),
    ...(s.so && { overlap: false }),
    ...(s.rq && { rowQuads: true }),
    ...(s.sq && { rowQuads: false }),
    ...(s.od && { outputDen: true }),
    ...(s.pd && { outputDen: false }),
    ...(s.es && { earlyState: true }),
    ...(s.le && { earlyState: false }),
    ...(s.kv && { shareKV: true }),
    ...(s.sk && { shareKV: false }),
  };
}

export const scheduleTag = (s: ChunkSchedule) => `${s.chunk}x${s.cols}x${s.threads}${s.segment ? `s${s.segment}` : ''}${s.span ? `p${s.span}` : ''}${s.block ? `b${s.block}` : ''}`;

interface Row {
  variant: string;
  b: number; h: number; t: number; d: number;
  schedule: ChunkSchedule;
  asked: string;
  /** 'fused' (no prologue), 'unfused', or 'prologue' (fused, the model's prologue nodes). */
  plan: 'fused' | 'unfused' | 'prologue';
  prologueNodes?: number[];
  /** The fused kernel keeps its state in subgroup lanes' registers (the rs switch, or the default that chose it). */
  resident?: boolean;
  ms: number[];
  medianMs: number;
  estMs: number | null;
  /** --per-kernel: each launch on its own. */
  kernels?: { kernel: string; workgroups: readonly number[]; ms: number }[];
  errVsOracle: number;
}

export async function benchSchedules(
  gpu: Gpu,
  o: { files: readonly string[]; b: number; h: number; ts: readonly number[]; ds: readonly number[]; iters: number; rounds: number; outDir: string; schedules: readonly string[]; prefetch?: boolean; perKernel?: boolean },
): Promise<void> {
  const rows: Row[] = [];
  const model = adapterModel(gpu);
  console.log(`adapter: ${gpu.adapterName} (Dawn toggles: ${gpu.toggles.join(', ') || 'none'}); fused chunk kernel per schedule, median of ${o.iters} in each of ${o.rounds} round(s)`);
  for (const file of o.files) {
    const c = compileFile(file);
    for (const d of o.ds) {
      for (const t of o.ts) {
        const axes: Record<string, number> = {};
        for (const [a, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[a] = a === 'h' ? o.h : d;
        const sizes = axisSizes(c.source, axes);
        const x = makeInputs(c.source, { b: o.b, t, axes, seed: 1 });
        const label = `${c.source.name} b${o.b} h${o.h} t${t} d${d}`;
        // the oracle on the first tokens of sequence 0 (causality makes them independent of the rest)
        const tc = Math.min(t, 32);
        const oracle = oracleHead(c, x, sizes, tc);
        const runs: { row: Row; plan: ReturnType<typeof lowerChunked> }[] = [];
        for (const asked of o.schedules) {
          const kind = asked.startsWith('u:') ? 'unfused' : asked.startsWith('p:') ? 'prologue' : 'fused';
          const bare = kind === 'fused' ? asked : asked.slice(2);
          const switches = scheduleSwitches(bare);
          const { schedule: plain, np } = switches;
          const want = parseSchedule(plain);
          const prefetch = !np && o.prefetch !== false;
          // p:default is the plan choice's own plan (plan-choice.ts choosePlan: fused with its prologue, or unfused).
          const chosen = kind === 'prologue' && want === 'default' ? choosePlan(gpu, c.program, sizes, { prologue: 'model' }, { b: o.b, t }) : undefined;
          // the defaults may themselves keep the state in lanes' registers (plan-choice.ts residentChoice)
          const rs = switches.rs || !!chosen?.resident || (kind === 'fused' && want === 'default' && !!choosePlan(gpu, c.program, sizes, { fuse: true, prologue: 'none' }, { b: o.b, t }).resident);
          const fuse = chosen ? chosen.fuse : kind !== 'unfused';
          // rs: planFor and runCompiled pass the device's subgroup size along; lowerChunked is given it here
          const vec4 = { ...switchOptions(switches), ...(rs && { resident: true }) };
          const lanes = rs ? { resident: true, subgroupSize: gpu.subgroupSize } : undefined;
          let plan: ReturnType<typeof lowerChunked>;
          let prologue: ReadonlySet<number> | undefined;
          try {
            if (kind === 'fused') plan = want === 'default' ? planFor(gpu, c, sizes, { form: 'chunked', fuse: true, prologue: 'none', prefetch, ...vec4 }, { b: o.b, t }) : lowerChunked(c.program, sizes, { fuse: true, schedule: want, prefetch, ...vec4, ...lanes });
            else {
              const schedule = chosen ? chosen.schedule : want === 'default' ? undefined : want;
              plan = planFor(gpu, c, sizes, { form: 'chunked', fuse, ...(schedule && { schedule }), prologue: kind === 'prologue' ? 'model' : 'none', prefetch, ...vec4 }, { b: o.b, t });
              if (kind === 'prologue' && fuse) prologue = decidePrologue(model, c.program, sizes, plan.schedule as unknown as ChunkSchedule, o.b, t)?.prologue;
            }
          } catch (e) {
            // e.g. a segmented schedule for a decayed variant
            console.log(`${label.padEnd(30)} ${asked.padEnd(16)} refused: ${(e as Error).message.split('\n')[0]}`);
            continue;
          }
          const s: ChunkSchedule = want === 'default' ? (plan.schedule as unknown as ChunkSchedule) : want;
          // The whole fused kernel's memory; a prologue plan stages less (its features come from buffers), and its
          // kernels, like the unfused plan's, are checked by running them below.
          const bytes = kind === 'fused' ? sharedFloats(c.program, sizes, c.program.terms, c.program.output, s, undefined, undefined, lanes) * 4 : 0;
          if (bytes > gpu.limits.maxComputeWorkgroupStorageSize || s.threads > gpu.limits.maxComputeInvocationsPerWorkgroup) {
            console.log(`${label.padEnd(30)} ${asked.padEnd(16)} does not fit (${bytes} bytes of workgroup memory, ${s.threads} threads)`);
            continue;
          }
          let fo: Awaited<ReturnType<typeof runCompiled>>['o'];
          try {
            fo = (await runCompiled(c, x, { device: 'gpu', gpu, form: 'chunked', fuse, schedule: s, prologue: kind === 'prologue' && fuse ? 'model' : 'none', prefetch, ...vec4 })).o;
          } catch (e) {
            console.log(`${label.padEnd(30)} ${asked.padEnd(16)} does not run: ${(e as Error).message.split('\n')[0]}`);
            continue;
          }
          const errVsOracle = relativeError(fo.data.subarray(0, oracle.data.length), oracle.data);
          if (errVsOracle > 1e-3) {
            console.log(`${label.padEnd(30)} ${asked.padEnd(16)} wrong result (vs oracle ${errVsOracle}); not timing it`);
            continue;
          }
          // softmax attention's flash kernels have no cost model (estimatePlan prices the chunk kernels of linear terms)
          const est = isSoftmaxProgram(c.program) ? undefined : estimatePlan(model, c.program, sizes, s, fuse, o.b, t, prologue, prefetch);
          runs.push({ plan, row: { variant: c.source.name, b: o.b, h: o.h, t, d, schedule: { ...s }, asked, plan: fuse ? kind : 'unfused', ...(rs && { resident: true }), ...(prologue?.size && { prologueNodes: [...prologue] }), ms: [], medianMs: 0, estMs: est ? est.us / 1e3 : null, errVsOracle } });
        }
        for (let r = 0; r < o.rounds; r++) for (const run of runs) run.row.ms.push((await timePlan(gpu, run.plan, x, o.b, t, o.iters)).ms);
        for (const { row } of runs) {
          const sorted = [...row.ms].sort((a, b) => a - b);
          row.medianMs = sorted[Math.floor(sorted.length / 2)];
          rows.push(row);
          const tag = `${row.asked}${/default/.test(row.asked) ? ` ${scheduleTag(row.schedule)}${row.resident && !/rs/.test(row.asked) ? 'rs' : ''}` : ''}${row.prologueNodes ? ` (prologue ${row.prologueNodes.map((n) => `%${n}`).join(' ')})` : ''}`;
          console.log(`${label.padEnd(30)} ${tag.padEnd(24)} ${row.medianMs.toFixed(3).padStart(8)} ms (rounds ${row.ms.map((m) => m.toFixed(3)).join(' ')}) | est. ${row.estMs?.toFixed(3) ?? '—'} ms | err ${row.errVsOracle.toExponential(1)}`);
        }
        // --per-kernel: each launch of each plan on its own (its own timestamped pass: the sum exceeds the plan's time a little)
        if (o.perKernel) {
          for (const { plan, row } of runs) {
            row.kernels = (await timePlanKernels(gpu, plan, x, o.b, t)).map((k) => ({ kernel: k.label, workgroups: k.workgroups, ms: k.ms }));
            for (const k of row.kernels) console.log(`${''.padEnd(30)}   ${k.kernel.padEnd(40)} ${k.ms.toFixed(3).padStart(8)} ms  [${k.workgroups.join(', ')}]`);
          }
        }
        writeFileSync(join(o.outDir, 'schedules.json'), JSON.stringify({ adapter: gpu.adapterName, toggles: gpu.toggles, iters: o.iters, rounds: o.rounds, rows }, null, 1));
      }
    }
  }
  console.log(`wrote ${join(o.outDir, 'schedules.json')}`);
}
