// The unfused plan's kernels without state over segments (lower.ts): a quadratic term within groups or a window reads
// only rows near its own, so its chunks are independent, and where b·heads·tiles workgroups leave compute units idle a
// schedule's `segment` splits each walk over more workgroups (no scan, no state; its prefix term kernels keep their walk).
//
// Why (the H200, H 16, T 4096, bench/kernels.ts --per-kernel side by side, 2 rounds; call 178,
// bench/results/h200-unfused-segments.json): at b 1, d 128 (64 workgroups on 132 units) llama_linearized's local term
// kernel ran 1.889 ms in one walk and 0.951–0.961 over segments of 8–32 chunks (its conv 0.308 → 0.123), the plan
// 3.770 → 2.644 ms; flash's 3.521 → 2.531. Where the grid fills the units the segments gain nothing: at b 4, d 128
// (256 workgroups) 7.612 → 7.523–7.570 ms, at b 4, d 64 1.454 → 1.448–1.453 (flash), at b 8, d 64 2.663 → 2.635.
import type { Program } from '../../../src/ir/types.ts';
import type { ChunkSchedule } from '../chunked.ts';
import { count, type Sizes } from '../common.ts';
import { layoutOf } from '../layout.ts';
import { outputPart } from './analysis.ts';

/** Workgroups a unit the segments aim for (the gain was flat from 2 to 8 segments a head at b 1). */
const WAVES = 4;
/** Chunks a segment at least (measured down to 8). */
const MIN_SEGMENT = 8;

/**
 * `s` with its stateless kernels over segments where the unfused plan of `p` has such a kernel and its b·heads·tiles
 * workgroups fill at most half the `units` (64 on 132 gained, 128 did not): segments of a power of two chunks, at least MIN_SEGMENT, that put about WAVES
 * workgroups on each unit; else `s` unchanged.
 */
export function statelessSegments(p: Program, sizes: Sizes, s: ChunkSchedule, at: { b: number; t: number; units: number }): ChunkSchedule {
  const part = outputPart(p, false);
  if (s.segment || !part.terms.some((t) => t.form.kind !== 'prefix')) return s;
  const L = layoutOf(part, part.terms);
  const grid = at.b * count(L.head, sizes) * Math.ceil(count(L.rest, sizes) / s.cols);
  if (2 * grid > at.units) return s;
  const chunks = Math.ceil(at.t / s.chunk);
  let segment = MIN_SEGMENT;
  while (segment * 2 <= chunks && grid * Math.ceil(chunks / (segment * 2)) >= WAVES * at.units) segment *= 2;
  return Math.ceil(chunks / segment) < 2 ? s : { ...s, segment };
}
