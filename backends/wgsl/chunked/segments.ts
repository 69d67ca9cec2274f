// Segmented chunk plans (ChunkSchedule.segment): each segment of chunks folds its own state in parallel, a scan
// over segments (segment-scan.ts) gives each its incoming state, then every segment's outputs run in parallel.
// Only plain causal prefix terms allow it: their state simply adds up.
import type { Program } from '../../../src/ir/types.ts';
import { count, type Sizes } from '../common.ts';
import { featureCount, layoutOf } from '../layout.ts';

/** WGSL: the number of segments of `segment` chunks of C rows over dims.t rows. */
export const segmentCount = (C: number, segment: number) => `(((dims.t + ${C - 1}u) / ${C}u) + ${segment - 1}u) / ${segment}u`;

/** Segment states in global memory: [b, NS, nseg, F, NR] for S_k and [b, NS, nseg, F] for z_k. */
export const segBuffer = (what: 'S' | 'z', k: number) => `seg:${what}${k}`;

/** Whether a program's chunk plan may be segmented: every prefix term plainly causal, without decay or groups. */
export function segmentable(p: Program, sizes: Sizes): { S: { k: number; F: number }[]; NS: number; NR: number } | undefined {
  const prefix = p.terms.flatMap((t) => (t.form.kind === 'prefix' ? [{ t, f: t.form }] : []));
  if (!prefix.length) return undefined;
  if (prefix.some(({ t, f }) => f.decay || t.mask.length !== 1 || t.mask[0].kind !== 'causal')) return undefined;
  const L = layoutOf(p, p.terms);
  return { S: prefix.map(({ f }, k) => ({ k, F: featureCount(f, sizes) })), NS: count(L.head, sizes), NR: count(L.rest, sizes) };
}
