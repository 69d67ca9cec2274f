// The chunked kernel's schedules as data: chunk size C, value columns per workgroup R and threads per
// workgroup that fit given limits (workgroup memory, invocations), the order an autotuner should try them,
// and the heuristic default. Nothing here needs a device: src/runtime/schedule.ts adds the adapter's limits
// and the autotune cache, backends/ts/compile.ts WebGPU's default limits.
import type { Program } from '../../src/ir/types.ts';
import { layoutOf, segmentable, sharedFloats, type ChunkSchedule } from './chunked.ts';
import { itemsOver, outputPart } from './chunked/analysis.ts';
import { count } from './common.ts';
import { analyseSoftmax, isSoftmaxProgram, softmaxSharedFloats } from './softmax-analysis.ts';
import { tiledLogit, tiledShapes } from './softmax-tiled.ts';

export interface ScheduleLimits {
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
}

const CHUNKS = [64, 32, 16, 8, 4];
const THREADS = [1024, 512, 256, 128, 64];
/** Chunks per segment of the segmented (three-launch) plans, for variants whose prefix terms allow it. */
const SEGMENTS = [4, 16];
/** Value columns per invocation of a blocked schedule (chunked/tiles.ts blockTile). */
const BLOCK = 4;
/**
 * Whether the plan choice (the schedule model's pick, the heuristic default) sees the register-blocked schedules.
 * Off: the model's estimate of a blocked product (schedule-model.ts blockedShares) is its workgroup loads alone,
 * and the H200 (call 18, bench/results/h200-chunk-blocked.json, elu_dwconv B4 H16 T4096) did not follow it — at
 * D 64 the best blocked schedule, 8×64×512 segments of 16, ran 1.71 ms against the default's 1.96 (estimated 1.38),
 * but at D 128 every blocked schedule lost to the unblocked default (5.85–11.4 ms against 5.47), the estimates
 * off by 0.6–2.0×. The autotuner (which searches the blocked forms) and an explicit schedule reach them.
 */
export const BLOCKED_BY_DEFAULT = false;

/** Group sizes that a chunk must be a multiple of (past_groups prefix terms). */
function chunkMultiple(p: Program): number {
  let m = 1;
  for (const t of p.terms) for (const a of t.mask) if (a.kind === 'past_groups' || (a.kind === 'group' && t.form.kind === 'prefix')) m = lcm(m, a.size);
  return m;
}

const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
const lcm = (a: number, b: number) => (a / gcd(a, b)) * b;

/**
 * The schedules that fit: the fused plan's one kernel (and segmented forms), or with `unfused` every term's own
 * kernel of the unfused plan (lower.ts), which may fit where the fused one does not; with `blocked` also their
 * register-blocked forms (ChunkSchedule.block: BLOCK columns an invocation).
 */
export function candidateSchedules(limits: ScheduleLimits, program: Program, sizes: Readonly<Record<string, number>>, unfused = false, blocked = BLOCKED_BY_DEFAULT): ChunkSchedule[] {
  if (isSoftmaxProgram(program)) return softmaxSchedules(limits, program, sizes);
  // the chunk kernel runs the causal items (noncausal ones run in the parallel form, lower.ts)
  const p = outputPart(program, false);
  const out = scheduleGrid(p, sizes, limits).filter((s) => fits(p, sizes, s, limits, unfused));
  // Segmented plans trade one launch for b·heads·tiles·segments workgroups: worth timing on long sequences.
  // Their launches keep the phases in turn (no overlap: chunked/analysis.ts), so each is checked against the limit again.
  // A past_groups term's segments start at its groups' starts (segments.ts), so some chunks take only longer segments.
  if (!unfused && segmentable(p, sizes)) out.push(...out.flatMap((s) => SEGMENTS.map((segment) => ({ ...s, segment }))).filter((s) => segmentable(p, sizes, s) && fits(p, sizes, s, limits, false)));
  // Register-blocked forms (ChunkSchedule.block) of every schedule with columns to block, after the unblocked ones,
  // which the heuristic default (defaultSchedule) keeps.
  if (blocked) out.push(...out.filter((s) => s.cols >= BLOCK).map((s) => ({ ...s, block: BLOCK })));
  return out;
}

/**
 * What defaultSchedule(candidateSchedules(limits, program, sizes).filter(accept), software) gives, without
 * sizing every candidate's workgroup memory: the grid in the heuristic's order, sized until one fits. An editor
 * that recompiles on each keystroke (the playground) wants this; sizing all 70–140 candidates took 6 ms of an
 * edit's 11 in Node.
 */
export function defaultFitting(limits: ScheduleLimits, program: Program, sizes: Readonly<Record<string, number>>, software = false, accept: (s: ChunkSchedule) => boolean = () => true): ChunkSchedule | undefined {
  if (isSoftmaxProgram(program)) return defaultSchedule(softmaxSchedules(limits, program, sizes).filter(accept), software);
  const p = outputPart(program, false);
  return byDefaultPreference(scheduleGrid(p, sizes, limits), software).find((s) => accept(s) && fits(p, sizes, s, limits, false));
}

/** The one-kernel schedules (no segments, no blocking) an adapter's invocation limit allows, before the memory check. */
function scheduleGrid(p: Program, sizes: Readonly<Record<string, number>>, limits: ScheduleLimits): ChunkSchedule[] {
  const NR = count(layoutOf(p, p.terms).rest, sizes);
  // A chunk must divide every past_groups size or be a multiple of it.
  const groups = p.terms.flatMap((t) => t.mask.flatMap((a) => (a.kind === 'past_groups' ? [a.size] : [])));
  const mult = chunkMultiple(p);
  const chunks = [...new Set([...CHUNKS, ...CHUNKS.map((c) => Math.ceil(c / mult) * mult)])].filter((c) => groups.every((g) => c % g === 0 || g % c === 0));
  const cols = [...new Set([NR, 64, 32, 16, 8, 4].filter((r) => r <= NR))];
  const threads = THREADS.filter((t) => t <= limits.maxComputeInvocationsPerWorkgroup);
  return chunks.flatMap((chunk) => cols.flatMap((c) => threads.map((t) => ({ chunk, cols: c, threads: t }))));
}

/** Whether a schedule's workgroup memory fits: the fused kernel's, or with `unfused` the largest of its terms' own kernels. */
function fits(p: Program, sizes: Readonly<Record<string, number>>, s: ChunkSchedule, limits: ScheduleLimits, unfused: boolean): boolean {
  const floats = unfused ? Math.max(...p.terms.map((t) => sharedFloats(p, sizes, [t], itemsOver(p.output, [t]), s, true))) : sharedFloats(p, sizes, p.terms, p.output, s);
  return floats * 4 <= limits.maxComputeWorkgroupStorageSize;
}

/** Workgroup memory (bytes) of the smallest schedule: what an adapter with no candidate lacks. */
export function smallestScheduleBytes(program: Program, sizes: Readonly<Record<string, number>>): number {
  if (isSoftmaxProgram(program)) return softmaxSharedFloats(analyseSoftmax(program, sizes), CHUNKS[CHUNKS.length - 1]) * 4;
  const p = outputPart(program, false);
  return sharedFloats(p, sizes, p.terms, p.output, { chunk: CHUNKS[CHUNKS.length - 1], cols: 1, threads: 64 }) * 4;
}

/**
 * The candidates in the order the autotuner tries them: the default, its segmented forms, then the rest from
 * the most promising (on a hardware GPU: many threads, chunks near 32, wide column tiles), alternating
 * one-kernel and segmented schedules so that a bounded search sees both.
 */
export function tuningOrder(cands: readonly ChunkSchedule[], software = false): ChunkSchedule[] {
  const first = defaultSchedule(cands, software);
  if (!first) return [];
  const same = (s: ChunkSchedule) => s.chunk === first.chunk && s.cols === first.cols && s.threads === first.threads;
  const promise = (s: ChunkSchedule) => Math.log2(s.threads) - Math.abs(Math.log2(s.chunk / 24)) + 0.5 * Math.log2(s.cols);
  const rest = cands.filter((s) => s !== first).sort((a, b) => promise(b) - promise(a));
  const plain = rest.filter((s) => !s.segment && !same(s));
  const seg = rest.filter((s) => s.segment && !same(s));
  const mixed: ChunkSchedule[] = [];
  for (let k = 0; k < Math.max(plain.length, seg.length); k++) mixed.push(...(plain[k] ? [plain[k]] : []), ...(seg[k] ? [seg[k]] : []));
  return [first, ...rest.filter(same), ...mixed];
}

/**
 * The heuristic: one kernel (no segments), chunk near 32. On a hardware GPU 32 columns and 512 threads: among
 * the H100's warmed-up trials at b 4, h 16, t 4096, d 64 that schedule ran 1.67 ms, within 3 % of the fastest,
 * where 64 columns and 256 threads ran 5.98 ms. On a CPU's software Vulkan as many columns as fit and 128
 * threads (its cores gain nothing from more invocations).
 */
export function defaultSchedule(cands: readonly ChunkSchedule[], software = false): ChunkSchedule | undefined {
  return byDefaultPreference(cands.filter((s) => !s.segment), software)[0];
}

/** Schedules from the heuristic's favourite down (a stable sort: ties keep their order). */
function byDefaultPreference(cands: readonly ChunkSchedule[], software: boolean): ChunkSchedule[] {
  const threads = software ? 128 : 512;
  const cols = (s: ChunkSchedule) => (software ? Math.log2(s.cols) : -Math.abs(Math.log2(s.cols / 32)));
  const score = (s: ChunkSchedule) => -Math.abs(Math.log2(s.chunk / 32)) * 4 + cols(s) - Math.abs(Math.log2(s.threads / threads));
  return [...cands].sort((a, b) => score(b) - score(a));
}

/** The flash kernel's schedules (softmax-chunked.ts): C query and key rows per block, all value columns, threads. */
function softmaxSchedules(limits: ScheduleLimits, p: Program, sizes: Readonly<Record<string, number>>): ChunkSchedule[] {
  const a = analyseSoftmax(p, sizes);
  // The register-tiled kernel first (softmax-tiled.ts: a scaled q·k logit), largest shape first: `block` is its
  // logit columns a thread.
  const tiled = tiledLogit(a)
    ? tiledShapes(a, { maxWorkgroupFloats: limits.maxComputeWorkgroupStorageSize / 4, maxThreads: limits.maxComputeInvocationsPerWorkgroup }).map((t) => ({ chunk: t.BQ, cols: a.NR, threads: t.threads, block: t.CPT }))
    : [];
  const out: ChunkSchedule[] = [...tiled];
  for (const chunk of CHUNKS) {
    if (softmaxSharedFloats(a, chunk) * 4 > limits.maxComputeWorkgroupStorageSize) continue;
    for (const threads of THREADS) if (threads <= limits.maxComputeInvocationsPerWorkgroup) out.push({ chunk, cols: a.NR, threads });
  }
  return out;
}
