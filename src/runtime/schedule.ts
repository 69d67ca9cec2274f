// Choosing the chunked kernel's schedule on an adapter: the autotuner's cached winner for this variant, shape
// and adapter (autotune-cache.ts) when it still fits, else the heuristic default among the schedules that fit
// the adapter's limits (backends/wgsl/chunk-schedules.ts lists them; autotune.ts times them).
import { candidateSchedules, defaultSchedule, smallestScheduleBytes } from '../../backends/wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import type { Program } from '../ir/types.ts';
import type { Gpu } from './device.ts';
import { cachedSchedule } from './autotune-cache.ts';

export function chooseSchedule(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, shape?: { b: number; t: number }): ChunkSchedule {
  const cands = candidateSchedules(gpu.limits, p, sizes);
  const cached = shape ? cachedSchedule(gpu, p, sizes, shape) : undefined;
  if (cached && cands.some((c) => c.chunk === cached.chunk && c.cols === cached.cols && c.threads === cached.threads && (c.segment ?? 0) === (cached.segment ?? 0))) return cached;
  const s = defaultSchedule(cands, gpu.isSoftware);
  if (!s) {
    const need = smallestScheduleBytes(p, sizes);
    throw new Error(
      `${p.name}: even the smallest chunk needs ${need} bytes of workgroup memory, over this adapter's ${gpu.limits.maxComputeWorkgroupStorageSize} ` +
        `(${gpu.adapterName}); use the unfused form (--no-fuse), or smaller feature axes`,
    );
  }
  return s;
}
