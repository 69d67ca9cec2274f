// The fused plan's default on an adapter with a fixed subgroup size: where the prefix terms hold four or more features
// a lane together (F / the subgroup size summed over the terms: d 128's elu family, F = 128 on NVIDIA's subgroups of
// 32; d 64's cosformer, two terms of 64), the chunk kernel keeps the state in subgroup lanes' registers (the `rs`
// switch, resident.ts) at chunk 16 and 512 invocations, each subgroup owning 4 value columns with one prefix term,
// 2 with two, 1 with more.
//
// Why (the H200, session 11's call 1, bench/results/h200-chunk-switches.json, B 4 H 16 T 4096, 3 rounds alternating):
// d 128 elu_dwconv 1.447 ms against the default 8×64×512's 2.113 (fla 2.04), retnet 1.244 / 1.907, gla 2.907 / 4.228;
// cosformer at d 64 (two prefix terms of 128 features) 1.473 / 1.742. 16×32×256 ran 1.709 at d 128 and without the
// prefetch 16×64×512 ran 1.524. Two features a lane (d 64's elu family) lose: elu_dwconv 0.841 against 0.755, retnet
// 0.758 / 0.756 — so a lone term of 2 × the subgroup size does not take it.
import type { Program } from '../../../src/ir/types.ts';
import { sharedFloats, type ChunkSchedule } from '../chunked.ts';
import type { ScheduleLimits } from '../chunk-schedules.ts';
import type { Sizes } from '../common.ts';
import { analyseChunk, itemsOver, outputPart, valueGroups } from './analysis.ts';

// (The schedule model prices the plain kernel only. plan-choice.ts once weighed the resident kernel at the plain
// estimate over its least measured gain, 1.18 — cosformer at d 64, 1.742 → 1.471 ms — where the model put the plain
// fused plan above the unfused one, for cosformer's and cosformer_aug's b 8 rows; since the unfused plan's elementwise
// kernels sped up their unfused plans run faster than the resident kernel there (call 127), and the rule is gone.)

/** Chunk and invocations of the resident default. */
const RESIDENT_CHUNK = 16;
const RESIDENT_THREADS = 512;
/**
 * Value columns a subgroup times prefix terms, at most: 4 columns with one term, 2 with two. cosformer's two terms
 * at d 64 ran 1.471 ms at 2 columns a subgroup (16×32×512) and 1.894 at 4 (16×64×512); elu_dwconv's one term at d 128
 * 1.447 at 4 (16×64×512).
 */
const COLUMN_TERMS = 4;

/**
 * The resident schedule for the fused plan of `p`, or undefined where it is not the default: no fixed subgroup
 * size, several value groups (kernels), fewer than 4 features a lane, a shape resident.ts refuses, or one
 * over the adapter's limits.
 */
export function residentDefault(p: Program, sizes: Sizes, subgroupSize: number | undefined, limits: ScheduleLimits): ChunkSchedule | undefined {
  if (!subgroupSize || RESIDENT_THREADS > limits.maxComputeInvocationsPerWorkgroup || RESIDENT_THREADS % subgroupSize) return undefined;
  const part = outputPart(p, false);
  const groups = valueGroups(part);
  if (groups.length !== 1 || p.terms.some((t) => t.noncausal)) return undefined;
  const W = RESIDENT_THREADS / subgroupSize;
  const spec = (cols: number, resident: boolean) => ({
    program: part, sizes, terms: groups[0], items: itemsOver(part.output, groups[0]), partial: false, materialised: new Set<number>(), label: 'resident-default',
    schedule: { chunk: RESIDENT_CHUNK, cols, threads: RESIDENT_THREADS }, ...(resident && { resident: true, subgroupSize }),
  });
  try {
    // the plain analysis first: its prefix plans say each term's features and the tile's value columns
    const a = analyseChunk(spec(W, false));
    // features a lane over the prefix terms: each term 1, 2 or 4 (resident.ts), and at least 4 in all
    const lane = a.prefix.reduce((n, q) => n + q.F / subgroupSize, 0);
    if (!a.prefix.length || lane < 4) return undefined;
    for (const Cw of [4, 2, 1].filter((c) => c * a.prefix.length <= COLUMN_TERMS)) {
      const cols = Cw * W;
      if (a.NR % cols) continue;
      analyseChunk(spec(cols, true)); // throws where resident.ts does not apply
      const schedule = { chunk: RESIDENT_CHUNK, cols, threads: RESIDENT_THREADS };
      if (sharedFloats(p, sizes, p.terms, p.output, schedule, undefined, undefined, { resident: true, subgroupSize }) * 4 > limits.maxComputeWorkgroupStorageSize) return undefined;
      return schedule;
    }
  } catch {
    return undefined;
  }
  return undefined;
}
