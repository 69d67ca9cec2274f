// Choosing the chunked kernel's schedule on an adapter: the autotuner's cached winner for this variant, shape
// and adapter (autotune-cache.ts) when it still fits, else the default among the schedules that fit the
// adapter's limits (backends/wgsl/chunk-schedules.ts lists them; autotune.ts times them): on a hardware GPU the
// cheapest by the schedule model (backends/wgsl/schedule-model.ts) at the call's shape, on a software adapter
// the heuristic (its test timings were tuned to it).
import { candidateSchedules, defaultSchedule, smallestScheduleBytes, tuningOrder } from '../../backends/wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import type { Program } from '../ir/types.ts';
import type { Gpu } from './device.ts';
import { bestByModel, estimatePlan } from '../../backends/wgsl/fusion-model.ts';
import { isSoftmaxProgram } from '../../backends/wgsl/softmax-analysis.ts';
import { adapterModel } from './adapter-model.ts';
import { cachedSchedule } from './autotune-cache.ts';
import { spanCandidate } from '../../backends/wgsl/chunked/span-default.ts';

/** The shape the model assumes when a caller has none (a model's prefill: one prompt of 2048 tokens). */
export const MODEL_SHAPE = { b: 1, t: 2048 } as const;

/** The autotuner's cached winner for this shape when it is still among the candidates. */
export function cachedCandidate(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, cands: readonly ChunkSchedule[], shape?: { b: number; t: number }): ChunkSchedule | undefined {
  const cached = shape ? cachedSchedule(gpu, p, sizes, shape) : undefined;
  if (!cached) return undefined;
  // the candidate over spans the autotuner also times (tuningCandidates)
  const span = !gpu.isSoftware && shape ? spanCandidate(p, sizes, gpu.limits, adapterModel(gpu).computeUnits, shape.b, shape.t) : undefined;
  const same = (c: ChunkSchedule) => c.chunk === cached.chunk && c.cols === cached.cols && c.threads === cached.threads && (c.segment ?? 0) === (cached.segment ?? 0) && (c.span ?? 1) === (cached.span ?? 1);
  return [...cands, ...(span ? [span] : [])].some(same) ? cached : undefined;
}

/**
 * The default among `cands` for the fused (or unfused) plan: the model's cheapest at `shape` on hardware, the
 * heuristic on a software adapter. Segmented schedules only where `segments` allows them (a plan that exports
 * the decoding state cannot be segmented).
 */
export function modelDefault(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, cands: readonly ChunkSchedule[], fuse: boolean, shape: { b: number; t: number } = MODEL_SHAPE, segments = false): ChunkSchedule | undefined {
  // softmax attention: the register-tiled flash kernel where its logit admits it (its largest shape), else the heuristic
  if (isSoftmaxProgram(p)) return cands.find((s) => s.block) ?? defaultSchedule(cands, gpu.isSoftware);
  if (gpu.isSoftware) return defaultSchedule(cands, gpu.isSoftware);
  const allowed = segments ? cands : cands.filter((s) => !s.segment);
  return bestByModel(adapterModel(gpu), p, sizes, allowed, fuse, shape.b, shape.t)?.schedule ?? defaultSchedule(cands, false);
}

/**
 * The order the autotuner times the fused candidates in: on hardware the model's estimate at `shape`, cheapest
 * first (so a bounded search starts from the model's default and its neighbours), else tuningOrder's.
 */
export function tuningCandidates(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, cands: readonly ChunkSchedule[], shape: { b: number; t: number }): ChunkSchedule[] {
  if (gpu.isSoftware || isSoftmaxProgram(p)) return tuningOrder(cands, gpu.isSoftware);
  const m = adapterModel(gpu);
  // with the plan choice's candidate over spans at this shape (chunked/span-default.ts), which the list lacks
  const span = spanCandidate(p, sizes, gpu.limits, m.computeUnits, shape.b, shape.t);
  const all = span ? [...cands, span] : [...cands];
  const us = new Map(all.map((s) => [s, estimatePlan(m, p, sizes, s, true, shape.b, shape.t)?.us ?? Infinity]));
  return all.sort((a, b) => us.get(a)! - us.get(b)!);
}

export function chooseSchedule(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, shape?: { b: number; t: number }): ChunkSchedule {
  const cands = candidateSchedules(gpu.limits, p, sizes);
  const cached = cachedCandidate(gpu, p, sizes, cands, shape);
  if (cached) return cached;
  const s = modelDefault(gpu, p, sizes, cands, true, shape);
  if (!s) {
    const need = smallestScheduleBytes(p, sizes);
    throw new Error(
      `${p.name}: even the smallest chunk needs ${need} bytes of workgroup memory, over this adapter's ${gpu.limits.maxComputeWorkgroupStorageSize} ` +
        `(${gpu.adapterName}); use the unfused form (--no-fuse), or smaller feature axes`,
    );
  }
  return s;
}
