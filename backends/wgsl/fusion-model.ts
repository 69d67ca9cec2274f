// Fused or unfused, by the schedule model (schedule-model.ts). The fused plan (lower.ts) computes every feature
// map inside the chunk kernel, once per chunk and column tile, on the kernel's sequential path; the unfused plan
// computes each once in a parallel elementwise kernel, runs one chunk kernel per term reading them, and adds the
// parts in a combine kernel. Which is cheaper depends on how costly the features are inline (hedgehog's softmax
// over a projection re-runs its reductions per element: element-ops.ts) against the unfused plan's extra launches
// and traffic. The estimate of each plan mirrors lowerChunked's kernels one for one.
import { decayNode } from '../../src/ir/terms.ts';
import type { Id, Program } from '../../src/ir/types.ts';
import { itemsOver, outputPart, valueGroups } from './chunked/analysis.ts';
import type { ChunkSchedule } from './chunked.ts';
import { count, type Sizes } from './common.ts';
import { elementOps } from './element-ops.ts';
import { frontier } from './layout.ts';
import { chunkKernelCost, elementwiseCost, type AdapterModel } from './schedule-model.ts';

export interface PlanEstimate {
  readonly us: number;
  readonly launches: number;
}

/** The nodes the unfused plan materialises in feature kernels (lower.ts's rule): features, frontiers, computed values. */
export function materialisedNodes(p: Program): Id[] {
  const out = new Set<Id>();
  for (const t of p.terms) {
    const ids: Id[] = [];
    if (t.form.kind === 'prefix') ids.push(t.form.phi, t.form.psi, ...(t.form.decay ? [decayNode(t.form.decay)] : []));
    else if (t.form.kind !== 'softmax' && t.form.kind !== 'general') ids.push(...Object.values(frontier(p, t.score)).flat());
    if (p.nodes[t.value].op !== 'input') ids.push(t.value);
    for (const id of ids) {
      const n = p.nodes[id];
      if (n.op !== 'input' && n.type.side !== 'param' && n.type.side !== 'const') out.add(id);
    }
  }
  return [...out];
}

/** The chunked plan's estimated time at (b, t) under `s`; undefined when a kernel's workgroup memory does not fit. */
export function estimatePlan(m: AdapterModel, program: Program, sizes: Sizes, s: ChunkSchedule, fuse: boolean, b: number, t: number): PlanEstimate | undefined {
  const p = outputPart(program, false);
  const groups = fuse ? valueGroups(p) : p.terms.map((term) => [term]);
  const single = fuse && groups.length === 1;
  if (s.segment && !single) return undefined;
  const per = count(p.outAxes, sizes);
  let us = 0;
  let launches = 0;
  const materialised = new Set<Id>(fuse ? [] : materialisedNodes(p));
  for (const id of materialised) {
    const n = p.nodes[id];
    const elements = b * t * count(n.type.axes, sizes);
    us += elementwiseCost(m, elements, elementOps(p, sizes, id), 8 * elements);
    launches++;
  }
  for (const terms of groups) {
    const k = chunkKernelCost(m, { program: p, sizes, terms, items: itemsOver(p.output, terms), schedule: s, materialised, partial: !single }, b, t);
    if (!k) return undefined;
    us += k.us;
    launches += s.segment ? 3 : 1;
  }
  if (!single) {
    // combine: every part's numerator and denominator read, o written
    us += elementwiseCost(m, b * t * per, 2 * groups.length, 4 * b * t * per * (1 + 2 * groups.length));
    launches++;
  }
  return { us, launches };
}

export interface FusionChoice {
  readonly fuse: boolean;
  readonly schedule: ChunkSchedule;
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
 * Fused or unfused at (b, t), each with its own schedule (the given one, or the model's best among the candidates
 * that fit that plan): the cheaper estimate wins, fused on a tie. Undefined when neither plan fits.
 */
export function chooseFusion(
  m: AdapterModel,
  p: Program,
  sizes: Sizes,
  cands: { fused: readonly ChunkSchedule[]; unfused: readonly ChunkSchedule[] },
  b: number,
  t: number,
): FusionChoice | undefined {
  const fused = bestByModel(m, p, sizes, cands.fused, true, b, t);
  const unfused = bestByModel(m, p, sizes, cands.unfused, false, b, t);
  const ms = (x: { us: number }) => `${(x.us / 1e3).toFixed(3)} ms`;
  if (!fused && !unfused) return undefined;
  if (!fused) return { fuse: false, schedule: unfused!.schedule, unfused, reason: `the fused kernel does not fit the adapter's workgroup memory; unfused est. ${ms(unfused!)}` };
  if (!unfused || fused.us <= unfused.us) return { fuse: true, schedule: fused.schedule, fused, ...(unfused && { unfused }), reason: `fused est. ${ms(fused)} ≤ unfused ${unfused ? ms(unfused) : '(does not fit)'}` };
  return { fuse: false, schedule: unfused.schedule, fused, unfused, reason: `unfused est. ${ms(unfused)} < fused ${ms(fused)}` };
}
