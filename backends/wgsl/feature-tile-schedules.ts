// Schedules of the feature-tiled unfused plan (feature-tiled.ts): chunk, value columns, threads and features per
// tile such that every kernel of the plan fits the given limits — the tiled terms' kernels, and the other terms'
// ordinary unfused kernels. Plan choice asks for them only when neither the fused kernel nor the plain unfused
// plan fits (based's Taylor features at d 64), so the default is a fitting one, not a timed one.
import type { Program } from '../../src/ir/types.ts';
import { candidateSchedules, defaultSchedule, type ScheduleLimits } from './chunk-schedules.ts';
import type { ChunkSchedule } from './chunked.ts';
import { sharedFloats } from './chunked.ts';
import { itemsOver, outputPart } from './chunked/analysis.ts';
import { tileable, tiledTermFloats, type FeatureTiledSchedule } from './feature-tiled.ts';

const FEATURE_TILES = [256, 128, 96, 64, 32, 16, 8];

/**
 * The adapter's invocation limit with workgroup memory unbounded. Named, not spread: a device's limits
 * (GPUSupportedLimits) are getters on its prototype, which `{ ...limits }` drops, and the invocation limit with them.
 */
const unboundedMemory = (limits: ScheduleLimits): ScheduleLimits => ({ maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup, maxComputeWorkgroupStorageSize: Number.MAX_SAFE_INTEGER });

export function featureTiledSchedules(limits: ScheduleLimits, program: Program, sizes: Readonly<Record<string, number>>): FeatureTiledSchedule[] {
  const p = outputPart(program, false);
  const tiled = p.terms.filter(tileable);
  if (!tiled.length) return [];
  const rest = p.terms.filter((t) => !tileable(t));
  const floats = limits.maxComputeWorkgroupStorageSize / 4;
  // the chunk, column and thread combinations the chunk kernel admits (group sizes, invocations), whatever their memory
  const base = candidateSchedules(unboundedMemory(limits), program, sizes, true).filter((s) => !s.segment);
  const out: FeatureTiledSchedule[] = [];
  for (const s of base) {
    if (rest.some((t) => sharedFloats(p, sizes, [t], itemsOver(p.output, [t]), s, true) > floats)) continue;
    for (const featureTile of FEATURE_TILES) {
      const x = { chunk: s.chunk, cols: s.cols, threads: s.threads, featureTile };
      // either kernel (register-blocked or plain, lower.ts's tiledKernel) runs at a schedule listed here
      if (tiled.every((t) => Math.max(tiledTermFloats(p, sizes, t, x), tiledTermFloats(p, sizes, t, { ...x, blocked: true })) <= floats)) out.push(x);
    }
  }
  return out;
}

/**
 * On hardware, for the register-blocked kernel (feature-tiled-blocked.ts): every value column in one workgroup (the
 * partial scores and φ, ψ computed once, not once per column tile), chunk near 32 (a 2 × 4 micro-tile of the
 * numerators, 2 × 2 of the scores, half the barriers a token of chunk 16), then the widest feature tile that fits
 * (fewer tiles: less partial traffic and a shorter tile sum) and 256 threads: at 48 KB and d 64, chunk 32, 64
 * columns, 64 features a tile (66 tiles). Before the blocked kernel the pick was chunk near 16 and 32 columns (chunk
 * 16, 32 columns, 128 features: 130 ms for based at B 4, H 16, T 4096 on the H200). Not timed yet.
 * A software adapter: chunk near 16, all columns, 128 threads (its cores gain nothing from more invocations).
 */
export function defaultFeatureTiled(cands: readonly FeatureTiledSchedule[], software = false): FeatureTiledSchedule | undefined {
  const threads = software ? 128 : 256;
  const chunk = software ? 16 : 32;
  const cols = (s: FeatureTiledSchedule) => (software ? Math.log2(s.cols) : 4 * Math.log2(s.cols));
  const score = (s: FeatureTiledSchedule) => -Math.abs(Math.log2(s.chunk / chunk)) * 4 + 2 * Math.log2(s.featureTile) + cols(s) - Math.abs(Math.log2(s.threads / threads));
  return [...cands].sort((a, b) => score(b) - score(a))[0];
}

/**
 * The fused plan over feature tiles (feature-tiled-plan.ts): the tiled terms' schedule and the other terms' chosen
 * apart, each among those that fit on its own (based's window kernel does not fit chunk 32 × 64 columns, which the
 * blocked tiles want). The tiles by defaultFeatureTiled; the others as the fused plan's default schedule picks.
 */
export function fusedTiledSchedule(limits: ScheduleLimits, program: Program, sizes: Readonly<Record<string, number>>, software = false): { tile: FeatureTiledSchedule; rest: ChunkSchedule } | undefined {
  const p = outputPart(program, false);
  const tiled = p.terms.filter(tileable);
  const rest = p.terms.filter((t) => !tileable(t));
  if (!tiled.length || !rest.length) return undefined;
  const floats = limits.maxComputeWorkgroupStorageSize / 4;
  const base = candidateSchedules(unboundedMemory(limits), program, sizes, true).filter((s) => !s.segment);
  const tiles: FeatureTiledSchedule[] = [];
  for (const s of base) {
    for (const featureTile of FEATURE_TILES) {
      const x = { chunk: s.chunk, cols: s.cols, threads: s.threads, featureTile };
      if (tiled.every((t) => tiledTermFloats(p, sizes, t, { ...x, blocked: true }) <= floats)) tiles.push(x);
    }
  }
  const others = base.filter((s) => rest.every((t) => sharedFloats(p, sizes, [t], itemsOver(p.output, [t]), s, true, new Set()) <= floats));
  const tile = defaultFeatureTiled(tiles, software);
  const r = defaultSchedule(others, software);
  return tile && r ? { tile, rest: r } : undefined;
}
