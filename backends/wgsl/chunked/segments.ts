// Segmented chunk plans (ChunkSchedule.segment): each segment of chunks folds its own state in parallel, a scan
// over segments (segment-scan.ts) gives each its incoming state, then every segment's outputs run in parallel.
// The prefix terms' states must combine segment by segment: plain causal terms add up; past_groups(G) terms add up
// where every segment starts at a group's start (its rows a multiple of G: `align`), so that a segment's own state — its
// closed groups and the one its last chunk closes — is exactly what the positions after it read of its rows; decayed
// causal terms (retnet's, mamba2's scalar gate, gla's per feature) combine as S_in(g + 1) = exp(L_g) ⊙ S_in(g) + S_own(g),
// L_g the segment's Σ log decay (per gate value: `gate`), which its state launch writes beside its state.
import type { Program } from '../../../src/ir/types.ts';
import { count, type Sizes } from '../common.ts';
import { featureCount, layoutOf, prefixGate } from '../layout.ts';

/** WGSL: the number of segments of `segment` chunks of C rows over dims.t rows. */
export const segmentCount = (C: number, segment: number) => `(((dims.t + ${C - 1}u) / ${C}u) + ${segment - 1}u) / ${segment}u`;

/** Segment states in global memory: [b, NS, nseg, F, NR] for S_k, [b, NS, nseg, F] for z_k, [b, NS, nseg, gate] for L_k. */
export const segBuffer = (what: 'S' | 'z' | 'g', k: number) => `seg:${what}${k}`;

export interface Segmentable {
  /** Each prefix term's features and gate width (0 undecayed, 1 a scalar decay, F one a feature). */
  readonly S: { k: number; F: number; gate: number }[];
  readonly NS: number;
  readonly NR: number;
  /** Rows a segment must be a multiple of: the least common multiple of the past_groups sizes (1 without any). */
  readonly align: number;
}

const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);

/**
 * Whether a program's chunk plan may be segmented: every prefix term plainly causal (decayed or not) or past_groups
 * (undecayed). With `schedule`, also whether its segments (segment × chunk rows) start at every past_groups term's
 * group starts.
 */
export function segmentable(p: Program, sizes: Sizes, schedule?: { chunk: number; segment?: number }): Segmentable | undefined {
  const prefix = p.terms.flatMap((t) => (t.form.kind === 'prefix' ? [{ t, f: t.form }] : []));
  if (!prefix.length) return undefined;
  if (prefix.some(({ t, f }) => t.mask.length !== 1 || !(t.mask[0].kind === 'causal' || (t.mask[0].kind === 'past_groups' && !f.decay)))) return undefined;
  const align = prefix.reduce((m, { t }) => (t.mask[0].kind === 'past_groups' ? (m / gcd(m, t.mask[0].size)) * t.mask[0].size : m), 1);
  if (schedule?.segment && (schedule.segment * schedule.chunk) % align !== 0) return undefined;
  const L = layoutOf(p, p.terms);
  const S = prefix.map(({ f }, k) => {
    const F = featureCount(f, sizes);
    const gate = prefixGate(p, f);
    return { k, F, gate: gate ? (gate.perFeature ? F : 1) : 0 };
  });
  return { S, NS: count(L.head, sizes), NR: count(L.rest, sizes), align };
}


/**
 * Whether a segmented output launch sums its span's incoming state itself from the segments' own states, with no scan
 * launch (lower.ts leaves it out): over spans (ChunkSchedule.span > 1), state in workgroup memory (chunked/state.ts).
 * Its workgroups then read sg · P segment states each, the last span's the most: at two spans of 8, eight reads an
 * element, where the scan launch cost a launch and a dependent walk over all segments.
 */
export function sumsOwnSpans(a: { readonly segmented?: 'state' | 'output'; readonly resident?: unknown; readonly spec: { readonly schedule: { readonly span?: number } } }): boolean {
  return a.segmented === 'output' && !a.resident && (a.spec.schedule.span ?? 1) > 1;
}
