// Segmented chunk plans (ChunkSchedule.segment): each segment of chunks folds its own state in parallel, a scan
// over segments (segment-scan.ts) gives each its incoming state, then every segment's outputs run in parallel.
// The prefix terms' state must simply add up: plain causal terms, and past_groups(G) terms where every segment
// starts at a group's start (its rows a multiple of G: `align`), so that a segment's own state — its closed groups and
// the one its last chunk closes — is exactly what the positions after it read of its rows.
import type { Program } from '../../../src/ir/types.ts';
import { count, type Sizes } from '../common.ts';
import { featureCount, layoutOf } from '../layout.ts';

/** WGSL: the number of segments of `segment` chunks of C rows over dims.t rows. */
export const segmentCount = (C: number, segment: number) => `(((dims.t + ${C - 1}u) / ${C}u) + ${segment - 1}u) / ${segment}u`;

/** Segment states in global memory: [b, NS, nseg, F, NR] for S_k and [b, NS, nseg, F] for z_k. */
export const segBuffer = (what: 'S' | 'z', k: number) => `seg:${what}${k}`;

export interface Segmentable {
  readonly S: { k: number; F: number }[];
  readonly NS: number;
  readonly NR: number;
  /** Rows a segment must be a multiple of: the least common multiple of the past_groups sizes (1 without any). */
  readonly align: number;
}

const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);

/**
 * Whether a program's chunk plan may be segmented: every prefix term without decay, plainly causal or past_groups.
 * With `schedule`, also whether its segments (segment × chunk rows) start at every past_groups term's group starts.
 */
export function segmentable(p: Program, sizes: Sizes, schedule?: { chunk: number; segment?: number }): Segmentable | undefined {
  const prefix = p.terms.flatMap((t) => (t.form.kind === 'prefix' ? [{ t, f: t.form }] : []));
  if (!prefix.length) return undefined;
  if (prefix.some(({ t, f }) => f.decay || t.mask.length !== 1 || (t.mask[0].kind !== 'causal' && t.mask[0].kind !== 'past_groups'))) return undefined;
  const align = prefix.reduce((m, { t }) => (t.mask[0].kind === 'past_groups' ? (m / gcd(m, t.mask[0].size)) * t.mask[0].size : m), 1);
  if (schedule?.segment && (schedule.segment * schedule.chunk) % align !== 0) return undefined;
  const L = layoutOf(p, p.terms);
  return { S: prefix.map(({ f }, k) => ({ k, F: featureCount(f, sizes) })), NS: count(L.head, sizes), NR: count(L.rest, sizes), align };
}

