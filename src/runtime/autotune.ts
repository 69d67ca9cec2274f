// The autotuner: times every chunk schedule that fits the adapter (timestamp queries, median of a few runs)
// for one (variant, shapes), keeps the fastest in the on-disk cache, and reports the search with --verbose. On a
// hardware GPU the trials go in the schedule model's order (schedule.ts tuningCandidates), its default first.
import { lowerChunked } from '../../backends/wgsl/lower.ts';
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import type { Program } from '../ir/types.ts';
import type { Tensor } from '../tensor.ts';
import type { Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';
import { storeSchedule } from './autotune-cache.ts';
import { candidateSchedules } from '../../backends/wgsl/chunk-schedules.ts';
import { tuningCandidates } from './schedule.ts';
import { timeDispatches } from './timing.ts';

export interface TuneResult {
  readonly best: ChunkSchedule;
  readonly trials: readonly { schedule: ChunkSchedule; ms: number }[];
}

export async function autotune(
  gpu: Gpu,
  p: Program,
  sizes: Readonly<Record<string, number>>,
  tensors: Readonly<Record<string, Tensor>>,
  shape: { b: number; t: number },
  opts: { iters?: number; maxTrials?: number; log?: (line: string) => void } = {},
): Promise<TuneResult> {
  // the register-blocked schedules too, whether or not the plan choice sees them yet (chunk-schedules.ts)
  let cands = candidateSchedules(gpu.limits, p, sizes, false, true);
  if (!cands.length) throw new Error(`${p.name}: no chunk schedule fits this adapter's workgroup memory`);
  cands = tuningCandidates(gpu, p, sizes, cands, shape).slice(0, opts.maxTrials ?? 32);
  const trials: { schedule: ChunkSchedule; ms: number }[] = [];
  for (const s of cands) {
    const runner = await PlanRunner.create(gpu, lowerChunked(p, sizes, { fuse: true, schedule: s }));
    let bufs: ReturnType<PlanRunner['allocate']>;
    try {
      bufs = runner.allocate(tensors, shape.b, shape.t);
    } catch (e) {
      // A schedule whose own buffers (a segmented plan's segment states) exceed a binding is not a candidate here.
      opts.log?.(`  chunk ${s.chunk}, cols ${s.cols}, threads ${s.threads}${s.segment ? `, ${s.segment} chunks per segment` : ''}${s.span ? ` in spans of ${s.span}` : ''}${s.block ? `, blocks of ${s.block}` : ''}: skipped (${(e as Error).message.split('\n')[0]})`);
      continue;
    }
    try {
      const bound = runner.bind(Object.fromEntries(Object.entries(bufs).map(([k, v]) => [k, v.buffer])), shape.b, shape.t);
      const r = await timeDispatches(gpu, (pass) => runner.encode(pass, bound), { warmup: 1, iters: opts.iters ?? 5, label: `${p.name} C${s.chunk} R${s.cols} T${s.threads}${s.segment ? ` G${s.segment}` : ''}${s.span ? ` P${s.span}` : ''}${s.block ? ` B${s.block}` : ''}` });
      trials.push({ schedule: s, ms: r.medianMs });
      opts.log?.(`  chunk ${s.chunk}, cols ${s.cols}, threads ${s.threads}${s.segment ? `, ${s.segment} chunks per segment` : ''}${s.span ? ` in spans of ${s.span}` : ''}${s.block ? `, blocks of ${s.block}` : ''}: ${r.medianMs.toFixed(3)} ms (${r.method})`);
      bound.dims.destroy();
    } finally {
      runner.release(bufs);
    }
  }
  if (!trials.length) throw new Error(`${p.name}: no chunk schedule fits this adapter's limits at b=${shape.b}, t=${shape.t}`);
  const best = trials.reduce((a, b) => (b.ms < a.ms ? b : a)).schedule;
  storeSchedule(gpu, p, sizes, shape, best);
  return { best, trials };
}
