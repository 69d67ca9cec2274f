// A candidate for the fused plan where whole heads' columns in one workgroup leave compute units idle: the segmented
// plan over spans (ChunkSchedule.span) at chunk 16, a head's 64 value columns a workgroup, 512 invocations, blocked by
// 2, with as many spans a head as one wave of such workgroups holds. A workgroup that owns all of a head's columns
// computes each chunk's scores once where two column tiles compute them twice, but b·heads of them may not fill the
// units; spans of the sequence fill them, the state launch folding short segments over every unit first.
//
// Why (the H200, B 4 H 16 T 4096 D 64, bench/kernels.ts side by side, 3 rounds; calls 101, 103–108): elu_dwconv's
// default 32×32×512 (128 workgroups) ran 0.678 ms; 16×64×512 alone (64 workgroups) 0.992; in two segments (state,
// scan, outputs) 0.733; in segments of 16 chunks walked by two spans of 8 (16x64x512s16p8) 0.631, and blocked by 2
// 0.600; with the output launch summing its span's incoming state (no scan launch) 0.589. At T 16384 (s64p8b2) 2.403
// against 2.672. elu 0.534 against 0.611, relu 0.538 against 0.608, elu_aug 0.595 against 0.666, relu_aug 0.593 against
// 0.659 (bench/results/h200-spans.json). At B 8 a head a workgroup already fills the units (16×64×512: elu_dwconv
// 0.993 ms), and this candidate is not made.
//
// The schedule model ranks it (fusion-model.ts estimatePlan: elu_dwconv 0.975 ms est. against the default's 1.219);
// the plan choice takes it where it is estimated under the model's own pick (plan-choice.ts spanChoice).
import type { Program } from '../../../src/ir/types.ts';
import { sharedFloats, type ChunkSchedule } from '../chunked.ts';
import { estimatePlan } from '../fusion-model.ts';
import type { AdapterModel } from '../schedule-model.ts';
import type { ScheduleLimits } from '../chunk-schedules.ts';
import { count, type Sizes } from '../common.ts';
import { layoutOf } from '../layout.ts';
import { analyseChunk, itemsOver, outputPart, valueGroups } from './analysis.ts';
import { segmentable } from './segments.ts';

const SPAN_CHUNK = 16;
const SPAN_COLS = 64;
const SPAN_THREADS = 512;
const SPAN_BLOCK = 2;
/**
 * State segments a head, whatever the spans: at b 4 two spans of 8 (elu_dwconv 0.589 ms; spans of 4 and 16 segments
 * 0.627 and 0.644), at b 2 four of 4 (0.330 ms against four of 8's 0.361), at b 1 eight of 2 (0.188 against eight of
 * 8's 0.217 and the plain segmented 16×64×512s16's 0.208; H200 calls 106–108). The output launch sums the segments
 * before its span itself (chunked/segments.ts sumsOwnSpans), so more segments cost the last span more loads.
 */
const SEGMENTS = 16;
/** Chunks a segment at least: t ≥ 2048 at chunk 16 (measured at t 4096 and 16384). */
const MIN_SEGMENT = 8;

/**
 * Segments (SEGMENTS a head) and spans of them for `grid` workgroups of whole heads walking `chunks` chunks on `units`
 * units: as many spans as one wave holds; undefined where the grid fills the units already (fewer than two spans) or
 * segments would be shorter than MIN_SEGMENT chunks (shorter sequences were not measured). The plain kernel's spans
 * candidate here and the lanes-resident kernel's (resident-default.ts) take their shape from it.
 */
export function spansOver(units: number, grid: number, chunks: number): { segment: number; span: number; spans: number } | undefined {
  const spans = Math.floor(units / grid);
  if (spans < 2 || chunks < SEGMENTS * MIN_SEGMENT) return undefined;
  const segment = Math.ceil(chunks / SEGMENTS);
  return { segment, span: Math.ceil(Math.ceil(chunks / segment) / spans), spans };
}

/**
 * The spans candidate for the fused plan of `p` at (b, t) on `units` compute units, or undefined where it is not one:
 * a plan that cannot be segmented (decays, groups, several kernels), a workgroup grid of whole heads that fills the
 * units already (fewer than two spans), a sequence of fewer chunks than segments, or a schedule over the limits.
 */
export function spanCandidate(p: Program, sizes: Sizes, limits: ScheduleLimits, units: number, b: number, t: number): ChunkSchedule | undefined {
  if (SPAN_THREADS > limits.maxComputeInvocationsPerWorkgroup || !segmentable(p, sizes)) return undefined;
  const part = outputPart(p, false);
  const groups = valueGroups(part);
  if (groups.length !== 1 || p.terms.some((x) => x.noncausal)) return undefined;
  const L = layoutOf(part, groups[0]);
  const NR = count(L.rest, sizes);
  const cols = Math.min(NR, SPAN_COLS);
  const shape = spansOver(units, b * count(L.head, sizes) * Math.ceil(NR / cols), Math.ceil(t / SPAN_CHUNK));
  // at least two segments a span (more spans than SEGMENTS / 2 is the plain segmented plan, a candidate of the model's own)
  if (!shape || shape.spans > SEGMENTS / 2) return undefined;
  const schedule: ChunkSchedule = { chunk: SPAN_CHUNK, cols, threads: SPAN_THREADS, segment: shape.segment, span: shape.span, block: SPAN_BLOCK };
  if (!segmentable(p, sizes, schedule)) return undefined; // segments not at a past_groups term's group starts
  try {
    // throws where the blocked tile or the segmented plan does not apply
    analyseChunk({ program: part, sizes, terms: groups[0], items: itemsOver(part.output, groups[0]), partial: false, materialised: new Set(), label: 'span-default', schedule, segmented: 'output' });
  } catch {
    return undefined;
  }
  if (sharedFloats(p, sizes, p.terms, p.output, schedule) * 4 > limits.maxComputeWorkgroupStorageSize) return undefined;
  return schedule;
}

/**
 * The spans candidate beside the fused schedule the model picked (`plain`, every feature inline), both estimated at
 * (b, t): what the plan choice (plan-choice.ts spanChoice) and the plan report weigh. Undefined where there is no
 * candidate or either does not fit; the candidate runs where `us` < `plainUs`.
 */
export function weighSpans(m: AdapterModel, p: Program, sizes: Sizes, limits: ScheduleLimits, b: number, t: number, plain: ChunkSchedule): { schedule: ChunkSchedule; us: number; plainUs: number } | undefined {
  const schedule = spanCandidate(p, sizes, limits, m.computeUnits, b, t);
  const us = schedule && estimatePlan(m, p, sizes, schedule, true, b, t)?.us;
  const plainUs = estimatePlan(m, p, sizes, plain, true, b, t)?.us;
  return schedule && us !== undefined && plainUs !== undefined ? { schedule, us, plainUs } : undefined;
}
