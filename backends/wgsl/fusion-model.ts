// Fused or unfused, by the schedule model (schedule-model.ts). The fused plan (lower.ts) computes every feature
// map inside the chunk kernel, once per chunk and column tile, on the kernel's sequential path; the unfused plan
// computes each once in a parallel elementwise kernel, runs one chunk kernel per term reading them, and adds the
// parts in a combine kernel. Which is cheaper depends on how costly the features are inline (hedgehog's softmax
// over a projection stages its q @ W and its max and Σ exp once per row: row-quantity-ops.ts) against the unfused
// plan's extra launches and traffic. The estimate of each plan mirrors lowerChunked's kernels one for one.
import type { Id, Program, Term } from '../../src/ir/types.ts';
import { itemsOver, outputPart, partDen, valueGroups } from './chunked/analysis.ts';
import type { ChunkSchedule } from './chunked.ts';
import { count, type Sizes } from './common.ts';
import { elementOps } from './element-ops.ts';
import { computesNothing, featureNodes, unfusedFeatures } from './feature-nodes.ts';
import { featureRowQuantities } from './feature-rows.ts';
import { stagedElementOps, stagedRowOps } from './row-quantity-ops.ts';
import { chunkKernelCost, columnTiles, elementwiseCost, MANY_READS_OPS, type AdapterModel } from './schedule-model.ts';

export interface PlanEstimate {
  readonly us: number;
  readonly launches: number;
}

/** The nodes the unfused plan materialises in feature kernels (lower.ts's rule): every one that computes something. */
export const materialisedNodes = (p: Program, sizes: Sizes): Id[] => unfusedFeatures(p, sizes);

/**
 * One feature kernel (lower.ts's featureKernel): the node's elements computed once from the inputs, written, and
 * read back by `reads` chunk kernel tiles (every column tile of every kernel that stages it).
 */
export function featureKernelCost(m: AdapterModel, p: Program, sizes: Sizes, id: Id, reads: number, b: number, t: number): number {
  const elements = b * t * count(p.nodes[id].type.axes, sizes);
  // a feature that reads many inputs per element runs at its own rate in a feature kernel (schedule-model.ts)
  const rate = elementOps(p, sizes, id) >= MANY_READS_OPS ? { ...m, unitElementOpsPerUs: m.manyReadsKernelOpsPerUs } : m;
  return elementwiseCost(rate, elements, featureKernelOps(p, sizes, id), 4 * elements * (1 + reads));
}

/**
 * Operations per element of node `id`'s feature kernel. A node with row quantities (feature-rows.ts's decision: a
 * workgroup per token stages them) pays for them once per token, spread over its elements; any other computes
 * each element on its own (element-ops.ts).
 */
export function featureKernelOps(p: Program, sizes: Sizes, id: Id): number {
  const quantities = featureRowQuantities(p, sizes, id);
  if (!quantities.length) return elementOps(p, sizes, id);
  const per = count(p.nodes[id].type.axes, sizes);
  const rows = stagedRowOps(p, sizes, quantities, new Set());
  return rows.quantities.reduce((n, x) => n + x.ops, 0) / per + stagedElementOps(p, sizes, id, rows);
}

/** How many times the chunk kernels of `groups` read a materialised node: once per column tile of each that stages it. */
function featureReads(p: Program, sizes: Sizes, groups: readonly (readonly Term[])[], s: ChunkSchedule, id: Id): number {
  return groups.reduce((n, terms) => n + (featureNodes(p, terms).includes(id) ? columnTiles(p, sizes, terms, s) : 0), 0);
}

/**
 * The chunked plan's estimated time at (b, t) under `s`; undefined when a kernel's workgroup memory does not fit.
 * A fused plan's `prologue` (lower.ts) are the feature nodes it materialises before its chunk kernel. `prefetch`
 * false: its chunk kernels lowered without prefetched staging (LowerOptions.prefetch; timings from before call 60).
 */
export function estimatePlan(m: AdapterModel, program: Program, sizes: Sizes, s: ChunkSchedule, fuse: boolean, b: number, t: number, prologue: ReadonlySet<Id> = new Set(), prefetch = true): PlanEstimate | undefined {
  const p = outputPart(program, false);
  const groups = fuse ? valueGroups(p) : p.terms.map((term) => [term]);
  const single = fuse && groups.length === 1;
  if (s.segment && !single) return undefined;
  const per = count(p.outAxes, sizes);
  let us = 0;
  let launches = 0;
  const materialised = new Set<Id>(fuse ? prologue : materialisedNodes(p, sizes));
  for (const id of materialised) {
    us += featureKernelCost(m, p, sizes, id, featureReads(p, sizes, groups, s, id), b, t);
    launches++;
  }
  for (const terms of groups) {
    const k = chunkKernelCost(m, { program: p, sizes, terms, items: itemsOver(p.output, terms), schedule: s, materialised, partial: !single, prefetch }, b, t);
    if (!k) return undefined;
    us += k.us;
    launches += s.segment ? 3 : 1;
  }
  if (!single) {
    // combine: every part's numerator read, and its denominator where its item is normalised (analysis.ts partDen); o written
    const parts = groups.reduce((n, terms) => n + itemsOver(p.output, terms).reduce((x, it) => x + (partDen(it) ? 2 : 1), 0), 0);
    us += elementwiseCost(m, b * t * per, parts, 4 * b * t * per * (1 + parts));
    launches++;
  }
  return { us, launches };
}

/** One feature node's decision: its estimated share of the chunk kernels' time inline against its prologue kernel. */
export interface PrologueDecision {
  readonly id: Id;
  /** What computing it inline adds to the chunk kernels (µs): every chunk, column tile and segmented pass. */
  readonly inlineUs: number;
  /** Its feature kernel (µs): one launch, its elements computed once, written and read back per column tile. */
  readonly prologueUs: number;
  readonly prologue: boolean;
}

/**
 * Which feature nodes a fused plan under `s` computes in a prologue: per node that computes something, the
 * costlier of inline and prologue loses. Greedy, the costliest per element first (element-ops.ts), each node's inline figure the chunk kernels'
 * time with the nodes chosen so far minus their time with it materialised too (a kernel bound by its traffic gains
 * nothing). Undefined when the fused plan does not fit.
 */
export function decidePrologue(m: AdapterModel, program: Program, sizes: Sizes, s: ChunkSchedule, b: number, t: number): { prologue: Set<Id>; decisions: PrologueDecision[] } | undefined {
  const p = outputPart(program, false);
  const groups = valueGroups(p);
  const chunkUs = (materialised: ReadonlySet<Id>) => {
    let us = 0;
    for (const terms of groups) {
      const k = chunkKernelCost(m, { program: p, sizes, terms, items: itemsOver(p.output, terms), schedule: s, materialised, partial: groups.length > 1 }, b, t);
      if (!k) return undefined;
      us += k.us;
    }
    return us;
  };
  let current = chunkUs(new Set());
  if (current === undefined) return undefined;
  const prologue = new Set<Id>();
  const decisions: PrologueDecision[] = [];
  // A node that computes nothing (an input read at a position, a position) is read the same way from its buffer
  // as from the input: a prologue would only copy it. It stays inline, undecided (computesNothing).
  const ops = new Map(featureNodes(p).filter((id) => !computesNothing(p, sizes, id)).map((id) => [id, elementOps(p, sizes, id)]));
  for (const id of [...ops.keys()].sort((x, y) => ops.get(y)! - ops.get(x)! || x - y)) {
    const next = chunkUs(new Set([...prologue, id]))!;
    const inlineUs = current - next;
    const prologueUs = featureKernelCost(m, p, sizes, id, featureReads(p, sizes, groups, s, id), b, t);
    const chosen = prologueUs < inlineUs && ops.get(id)! >= PROLOGUE_MIN_OPS;
    if (chosen) {
      prologue.add(id);
      current = next;
    }
    decisions.push({ id, inlineUs, prologueUs, prologue: chosen });
  }
  return { prologue, decisions };
}

/**
 * The operations per element (elementOps) below which a feature map stays in the chunk kernel whatever the model
 * says. The shipped maps fall in two clear groups at d 64: elementwise ones (elu + 1: 4, relu: 2, cosformer's
 * re-weighting: 9–10, decays and gates: 1–4) and ones that read many inputs per element (llama's L2 norm: 130,
 * performer's projection: 327, hedgehog's softmax over a projection: 25027). The H200 measured the second group's
 * prologues (performer 3.30 → 2.74 ms, llama 15.4 → 12.2, hedgehog 318 → 180) and none of the first's, whose
 * all-inline fused kernel is what measured best (elu 1.73 ms, elu_dwconv, elu_aug, relu_aug 1.88; unfused 2.50,
 * 2026-11-29). The model itself keeps the first group inline at the shapes measured; this keeps it so at any
 * other until an H200 run of `bench/h200-kernels.ts` (its prologue_ms column) says more.
 */
export const PROLOGUE_MIN_OPS = MANY_READS_OPS;


/**
 * The cheapest fused plan with its prologue among candidate schedules, each schedule's prologue decided for it
 * (or `fixed`, then with no decisions).
 */
export function bestHybrid(m: AdapterModel, p: Program, sizes: Sizes, cands: readonly ChunkSchedule[], b: number, t: number, fixed?: ReadonlySet<Id>): Hybrid | undefined {
  let best: Hybrid | undefined;
  for (const s of cands) {
    const d = fixed ? { prologue: fixed, decisions: [] } : decidePrologue(m, p, sizes, s, b, t);
    const e = d && estimatePlan(m, p, sizes, s, true, b, t, d.prologue);
    if (d && e && (!best || e.us < best.us)) best = { schedule: s, us: e.us, ...d };
  }
  return best;
}

export interface Hybrid {
  readonly schedule: ChunkSchedule;
  readonly us: number;
  readonly prologue: ReadonlySet<Id>;
  readonly decisions: readonly PrologueDecision[];
}

export interface FusionChoice {
  readonly fuse: boolean;
  readonly schedule: ChunkSchedule;
  /** The fused plan's prologue (empty: every feature inline; absent for the unfused plan). */
  readonly prologue?: ReadonlySet<Id>;
  /** The fused plan with its prologue, at its best schedule, with the decision per feature node. */
  readonly hybrid?: Hybrid;
  readonly fused?: { schedule: ChunkSchedule; us: number };
  readonly unfused?: { schedule: ChunkSchedule; us: number };
  /** Why the plan is unfused, or why the choice was made, in words. */
  readonly reason: string;
}

/** The cheapest schedule of a plan among candidates, by the model. */
export function bestByModel(m: AdapterModel, p: Program, sizes: Sizes, cands: readonly ChunkSchedule[], fuse: boolean, b: number, t: number): { schedule: ChunkSchedule; us: number } | undefined {
  let best: { schedule: ChunkSchedule; us: number } | undefined;
  for (const s of cands) {
    const e = estimatePlan(m, p, sizes, s, fuse, b, t);
    if (e && (!best || e.us < best.us)) best = { schedule: s, us: e.us };
  }
  return best;
}

/**
 * Fused (every feature inline), fused with a prologue of feature kernels (decidePrologue, or `prologue` when
 * given; an empty one leaves that plan out), or unfused at (b, t), each with its own schedule (the given one, or
 * the model's best among the candidates that fit that plan): the cheapest estimate wins, fused before fused with
 * a prologue before unfused on a tie. Undefined when none fits.
 */
export function chooseFusion(
  m: AdapterModel,
  p: Program,
  sizes: Sizes,
  cands: { fused: readonly ChunkSchedule[]; unfused: readonly ChunkSchedule[] },
  b: number,
  t: number,
  prologue?: ReadonlySet<Id>,
): FusionChoice | undefined {
  const fused = bestByModel(m, p, sizes, cands.fused, true, b, t);
  const hybrid = prologue?.size === 0 ? undefined : bestHybrid(m, p, sizes, cands.fused, b, t, prologue);
  const unfused = bestByModel(m, p, sizes, cands.unfused, false, b, t);
  const ms = (x: { us: number } | undefined) => (x ? `${(x.us / 1e3).toFixed(3)} ms` : '(does not fit)');
  if (!fused && !unfused) return undefined;
  const figures = `fused ${ms(fused)}, fused with a prologue of ${hybrid?.prologue.size ?? 0} feature kernel(s) ${ms(hybrid)}, unfused ${ms(unfused)}`;
  const common = { ...(fused && { fused }), ...(unfused && { unfused }), ...(hybrid && { hybrid }) };
  if (!fused) return { fuse: false, schedule: unfused!.schedule, ...common, reason: `the fused kernel does not fit the adapter's workgroup memory; unfused est. ${ms(unfused)}` };
  const least = Math.min(fused.us, hybrid?.us ?? Infinity, unfused?.us ?? Infinity);
  if (fused.us === least) return { fuse: true, schedule: fused.schedule, prologue: new Set(), ...common, reason: `every feature inline: est. ${figures}` };
  if (hybrid && hybrid.us === least) return { fuse: true, schedule: hybrid.schedule, prologue: hybrid.prologue, ...common, reason: `fused with a prologue: est. ${figures}` };
  return { fuse: false, schedule: unfused!.schedule, ...common, reason: `unfused: est. ${figures}` };
}
