// The fused plan's default on an adapter with a fixed subgroup size: where the prefix terms hold four or more features
// a lane together (F / the subgroup size summed over the terms: d 128's elu family, F = 128 on NVIDIA's subgroups of
// 32; d 64's cosformer, two terms of 64), or two where a term keeps a group open across chunks and the workgroups fill
// half the units (OPEN_GROUP_LANES), the chunk kernel keeps the state in subgroup lanes' registers (the `rs` switch,
// resident.ts) at chunk 16 and 512 invocations, each subgroup owning 4 value columns with one prefix term, 2 with two
// (or an open group at 2 features a lane), 1 with more.
//
// Why (the H200, session 11's call 1, bench/results/h200-chunk-switches.json, B 4 H 16 T 4096, 3 rounds alternating):
// d 128 elu_dwconv 1.447 ms against the default 8×64×512's 2.113 (fla 2.04), retnet 1.244 / 1.907, gla 2.907 / 4.228;
// cosformer at d 64 (two prefix terms of 128 features) 1.473 / 1.742. 16×32×256 ran 1.709 at d 128 and without the
// prefetch 16×64×512 ran 1.524. Two features a lane (d 64's elu family) lose: elu_dwconv 0.841 against 0.755, retnet
// 0.758 / 0.756 — so a lone term of 2 × the subgroup size does not take it.
import type { Program, Term } from '../../../src/ir/types.ts';
import { sharedFloats, type ChunkKernelSpec, type ChunkSchedule } from '../chunked.ts';
import type { ScheduleLimits } from '../chunk-schedules.ts';
import type { Sizes } from '../common.ts';
import { analyseChunk, itemsOver, outputPart, valueGroups } from './analysis.ts';
import { segmentable } from './segments.ts';
import { spansOver } from './span-default.ts';

// (The schedule model prices the plain kernel only. plan-choice.ts once weighed the resident kernel at the plain
// estimate over its least measured gain, 1.18 — cosformer at d 64, 1.742 → 1.471 ms — where the model put the plain
// fused plan above the unfused one, for cosformer's and cosformer_aug's b 8 rows; since the unfused plan's elementwise
// kernels sped up their unfused plans run faster than the resident kernel there (call 127), and the rule is gone.)

/**
 * Features a lane from which a prefix term that keeps a group open across chunks takes the resident kernel, where its
 * workgroups fill at least half the units. Its state and open group in registers free S's 8 KB of workgroup memory at
 * d 64 (2 features a lane), where the plain fused kernel had lost to the unfused plan. Call 181 (H 16, T 4096, d 64,
 * bench/results/h200-open-group-resident.json, ms resident / plain fused / unfused): flash b 4 1.334 / 1.685 / 1.452,
 * b 8 2.654 / 3.355 / 2.662; llama_linearized with its norms in a prologue b 4 1.319 / 1.558 (prologue, 32×32) / 1.558,
 * b 8 2.609 / 3.043 / 3.044. At b 1–2 (32–64 workgroups) the plain fused plan over segments stays (flash 0.60 ms at b 1).
 */
const OPEN_GROUP_LANES = 2;

/** Chunk and invocations of the resident default. */
export const RESIDENT_CHUNK = 16;
const RESIDENT_THREADS = 512;
/**
 * Value columns a subgroup times prefix terms, at most: 4 columns with one term, 2 with two. cosformer's two terms
 * at d 64 ran 1.471 ms at 2 columns a subgroup (16×32×512) and 1.894 at 4 (16×64×512); elu_dwconv's one term at d 128
 * 1.447 at 4 (16×64×512).
 */
const COLUMN_TERMS = 4;

/** The chunk-kernel spec of `terms` of `p`'s causal part at `schedule`, for the analysis the defaults here consult. */
function termsSpec(p: Program, sizes: Sizes, terms: readonly Term[], partial: boolean, label: string, schedule: ChunkSchedule): ChunkKernelSpec {
  const part = outputPart(p, false);
  return { program: part, sizes, terms, items: itemsOver(part.output, terms), partial, materialised: new Set<number>(), label, schedule };
}

/**
 * The resident schedule for the fused plan of `p`, or undefined where it is not the default: no fixed subgroup
 * size, several value groups (kernels), fewer than 4 features a lane, a shape resident.ts refuses, or one
 * over the adapter's limits. With `at` (the batch and length it runs at, the adapter's units), over spans of
 * segments where its workgroups leave units idle and the plan can be segmented (spansOver).
 */
export function residentDefault(p: Program, sizes: Sizes, subgroupSize: number | undefined, limits: ScheduleLimits, at?: { b: number; t: number; units: number }): ChunkSchedule | undefined {
  if (!subgroupSize || RESIDENT_THREADS > limits.maxComputeInvocationsPerWorkgroup || RESIDENT_THREADS % subgroupSize) return undefined;
  const part = outputPart(p, false);
  const groups = valueGroups(part);
  if (groups.length !== 1 || p.terms.some((t) => t.noncausal)) return undefined;
  const W = RESIDENT_THREADS / subgroupSize;
  const spec = (cols: number, resident: boolean): ChunkKernelSpec => ({
    ...termsSpec(p, sizes, groups[0], false, 'resident-default', { chunk: RESIDENT_CHUNK, cols, threads: RESIDENT_THREADS }),
    ...(resident && { resident: true, subgroupSize }),
  });
  try {
    // the plain analysis first: its prefix plans say each term's features and the tile's value columns
    const a = analyseChunk(spec(W, false));
    // features a lane over the prefix terms: each term 1, 2 or 4 (resident.ts), and at least 4 in all
    const lane = a.prefix.reduce((n, q) => n + q.F / subgroupSize, 0);
    // a group open across chunks (flash's, llama_linearized's past_groups term) takes it at 2 features a lane too, where
    // the workgroups fill half the units (OPEN_GROUP_LANES)
    const open = lane >= OPEN_GROUP_LANES && a.prefix.some((q) => q.openGroup);
    if (!a.prefix.length || (lane < 4 && !open)) return undefined;
    // (two columns a subgroup for an open group at 2 features a lane, as timed: llama_linearized's 16×64 ran 2.807 ms at
    // b 4 against 16×32's 1.319)
    for (const Cw of (lane < 4 ? [2] : [4, 2, 1]).filter((c) => c * a.prefix.length <= COLUMN_TERMS)) {
      const cols = Cw * W;
      if (a.NR % cols) continue;
      analyseChunk(spec(cols, true)); // throws where resident.ts does not apply
      const schedule = { chunk: RESIDENT_CHUNK, cols, threads: RESIDENT_THREADS };
      const grid = a.NS * Math.ceil(a.NR / cols);
      if (sharedFloats(p, sizes, p.terms, p.output, schedule, undefined, undefined, { resident: true, subgroupSize }) * 4 > limits.maxComputeWorkgroupStorageSize) return undefined;
      if (lane < 4 && !(at && 2 * at.b * grid >= at.units)) return undefined;
      return (at && overSpans(p, sizes, limits, subgroupSize, schedule, grid, at)) ?? schedule;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/**
 * Features a subgroup lane holds over the fused kernel's prefix terms (each term's F / the subgroup size), undefined
 * without a fixed subgroup size, with several kernels or no prefix term: d 128's elu family 4, cosformer's two terms at
 * d 128 8.
 */
export function residentLanes(p: Program, sizes: Sizes, subgroupSize: number | undefined): number | undefined {
  if (!subgroupSize) return undefined;
  const part = outputPart(p, false);
  const groups = valueGroups(part);
  if (groups.length !== 1 || p.terms.some((t) => t.noncausal)) return undefined;
  try {
    const a = analyseChunk(termsSpec(p, sizes, groups[0], false, 'resident-lanes', { chunk: RESIDENT_CHUNK, cols: RESIDENT_THREADS / subgroupSize, threads: RESIDENT_THREADS }));
    return a.prefix.length ? a.prefix.reduce((n, q) => n + q.F / subgroupSize, 0) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The schedule of the unfused plan's prefix term kernels with their state in lanes' registers (lower.ts
 * residentSchedule): the resident default's chunk and invocations, 4 columns a subgroup (2, 1 where the columns do not
 * divide), where every such kernel holds 4 or more features a lane and fits; else undefined. With `plain` (the unfused
 * plan's own schedule), also undefined where that walks chunks of RESIDENT_CHUNK or more: the plain prefix kernels
 * there, with more workgroups, ran faster than the resident ones in one walk (call 180, d 128, b 1: cosformer at 32×16
 * 1.750 ms against 2.509, retnet 0.933 against 1.234; b 2 cosformer at 16×32 2.465 against 2.647), while beside
 * stateless kernels that hold the plan to chunks of 8 they won at every batch measured (flash b 1 2.530 → 2.042 ms,
 * b 4 7.697 → 5.694, b 8 15.381 → 11.339; llama_linearized likewise; cosformer at 8×64, b 4 4.226 → 2.923, b 8 8.412
 * → 5.813; bench/results/h200-resident-prefix.json).
 */
export function residentPrefixSchedule(p: Program, sizes: Sizes, subgroupSize: number | undefined, limits: ScheduleLimits, plain?: ChunkSchedule, at?: { b: number; t: number; units: number }): ChunkSchedule | undefined {
  if (plain && plain.chunk >= RESIDENT_CHUNK) return undefined;
  if (!subgroupSize || RESIDENT_THREADS > limits.maxComputeInvocationsPerWorkgroup || RESIDENT_THREADS % subgroupSize) return undefined;
  const part = outputPart(p, false);
  const kernels = part.terms.filter((t) => t.form.kind === 'prefix');
  if (!kernels.length || p.terms.some((t) => t.noncausal)) return undefined;
  const W = RESIDENT_THREADS / subgroupSize;
  const spec = (t: Term, cols: number, resident: boolean): ChunkKernelSpec => ({
    ...termsSpec(p, sizes, [t], true, 'resident-prefix', { chunk: RESIDENT_CHUNK, cols, threads: RESIDENT_THREADS }),
    ...(resident && { resident: true, subgroupSize }),
  });
  try {
    for (const Cw of [4, 2, 1]) {
      const cols = Cw * W;
      const fits = kernels.every((t) => {
        const a = analyseChunk(spec(t, cols, false));
        if (a.prefix.reduce((n, q) => n + q.F / subgroupSize, 0) < 4 || a.NR % cols) return false;
        analyseChunk(spec(t, cols, true)); // throws where resident.ts does not apply
        return sharedFloats(part, sizes, [t], itemsOver(part.output, [t]), spec(t, cols, false).schedule, true, undefined, { resident: true, subgroupSize }) * 4 <= limits.maxComputeWorkgroupStorageSize;
      });
      if (!fits) continue;
      const schedule = { chunk: RESIDENT_CHUNK, cols, threads: RESIDENT_THREADS };
      // one prefix kernel whose workgroups leave units idle (b 1, 2) runs over spans of segments, as the fused resident
      // kernel does (overSpans); its state launch, the scan and its output launch (lower.ts segmentedTermKernels)
      if (!at || kernels.length !== 1) return schedule;
      const a = analyseChunk(spec(kernels[0], cols, false));
      const shape = spansOver(at.units, at.b * a.NS * Math.ceil(a.NR / cols), Math.ceil(at.t / RESIDENT_CHUNK));
      const spanned = shape && { ...schedule, segment: shape.segment, span: shape.span };
      if (!spanned || !segmentable(p, sizes, spanned)) return schedule;
      analyseChunk({ ...spec(kernels[0], cols, true), schedule: spanned, segmented: 'output' });
      return spanned;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

/**
 * Over spans of segments where whole heads leave units idle (call 172, B 1 and 2, H 16, T 4096, D 128, 3 rounds side
 * by side; bench/results/h200-resident-spans.json): the resident kernel walks 256 chunks in 1.30 ms whatever b is, so
 * at b 1 (32 workgroups on 132 units) elu_dwconv's ran 1.296 ms against its unfused plan's 0.996; in segments of 16
 * chunks (16 a head) walked by spans of 4 segments, 0.460 (spans of 2, 8: 0.490, 0.746; segments of 4, 8 chunks unspanned:
 * 0.739, 0.577), elu 0.424 against 1.206; at b 2 spans of 8, 0.820 against 1.296 (unfused 1.450). At b 4 (128
 * workgroups) the one kernel stays (1.298 against 1.810 over spans of 2). Spans a head: as many as one wave of the
 * workgroups holds, 16 segments a head, at least 8 chunks each (span-default.ts spansOver, shared with the plain kernel).
 *
 * `s` over spans of segments where `heads` workgroups a batch row leave units idle at `at` (spansOver), else undefined.
 */
function overSpans(p: Program, sizes: Sizes, limits: ScheduleLimits, subgroupSize: number, s: ChunkSchedule, heads: number, at: { b: number; t: number; units: number }): ChunkSchedule | undefined {
  const shape = spansOver(at.units, at.b * heads, Math.ceil(at.t / s.chunk));
  if (!shape) return undefined;
  const spanned: ChunkSchedule = { ...s, segment: shape.segment, span: shape.span };
  // A decayed state segments in lanes' registers too (checked against float64: test/gpu-chunk-spans.test.ts). Call 176
  // (B 1, D 128, bench/results/h200-resident-decayed-spans.json): retnet 0.471 ms over spans of 4 against 1.220 in one
  // walk and 0.933 unfused, mamba2 0.473 / 1.228 / 0.935, gla 0.932 / 2.879 / 3.160 (spans of 2, 8: 0.505, 0.733 for
  // retnet, still below its one walk).
  if (!segmentable(p, sizes, spanned)) return undefined;
  const part = outputPart(p, false);
  const terms = valueGroups(part)[0];
  try {
    analyseChunk({ ...termsSpec(p, sizes, terms, false, 'resident-spans', spanned), segmented: 'output', resident: true, subgroupSize });
  } catch {
    return undefined;
  }
  if (sharedFloats(p, sizes, p.terms, p.output, spanned, undefined, undefined, { resident: true, subgroupSize }) * 4 > limits.maxComputeWorkgroupStorageSize) return undefined;
  return spanned;
}
