// A gradient term kernel with its chunk walk split into segments of `schedule.segment` chunks, as the forward's
// segmented plans (chunked/segments.ts) do, because one workgroup per (batch, head, column tile) walking a whole
// sequence leaves a GPU's grid nearly empty (b·h·tiles workgroups, whatever t). Three kinds of launch:
//   state   each segment of each section with prefix terms folds its own S_k, z_k (no outputs)   b·h·tiles·segments
//   scan    per such section, S_in(g) = Σ_{g' < g} S_own(g') over the segments (segment-scan.ts)
//   output  every section of every segment from its incoming state, as the unsegmented kernel     b·h·tiles·segments
// Reverse-time sections segment their own (reversed) frame. Only plain causal prefix terms qualify: their states
// just add up (a decayed one would need the segment's decay product carried through the scan).
import { analyseChunk } from '../chunked/analysis.ts';
import { chunkSectionsKernel } from '../chunked/sections.ts';
import type { PlanBuffer } from '../plan.ts';
import { segmentScanKernel } from '../segment-scan.ts';
import type { GradKernel } from './plan.ts';
import { padOf, sections, segmentBuffer, type TermGroup, type TermKernelRequest } from './term-kernels.ts';

/** Does the group's chunk state simply add up over segments (every prefix term plainly causal, undecayed)? */
function segmentable(g: TermGroup): boolean {
  return g.terms.every((t) => t.form.kind !== 'prefix' || (!t.form.decay && t.mask.length === 1 && t.mask[0].kind === 'causal'));
}

const hasState = (g: TermGroup) => g.terms.some((t) => t.form.kind === 'prefix');

/**
 * The segmented launches of a term kernel and the segment-state buffers they share, or null when some group's
 * state does not simply add up, or no group has a state (nothing to segment: a convolution runs rows in parallel
 * only through its chunks).
 */
export function segmentedTermKernels(r: TermKernelRequest): { kernels: GradKernel[]; buffers: PlanBuffer[] } | null {
  const segment = r.schedule.segment;
  if (!segment || !r.groups.every(segmentable) || !r.groups.some(hasState)) return null;
  const pad = padOf(r.groups);
  const C = r.schedule.chunk;
  const stages = (gs: readonly TermGroup[]) => [...new Set(gs.flatMap((g) => [...g.stages, ...(g.epilogue ?? []).map((e) => e.stage.name)]))];
  const stateful = r.groups.filter(hasState);
  const stateReq: TermKernelRequest = { ...r, groups: stateful, label: `${r.label}.segment-state`, segmented: 'state' };
  const outputReq: TermKernelRequest = { ...r, segmented: 'output' };
  // every segment's states are written before the scan reads them, and scanned before the outputs start from them
  const kernels: GradKernel[] = [{ ...chunkSectionsKernel(sections(stateReq), stateReq.label), pad, stages: [] }];
  const buffers: PlanBuffer[] = [];
  const tp = (t: number) => Math.ceil(t / pad) * pad;
  const nseg = (t: number) => Math.ceil(Math.ceil(tp(t) / C) / segment);
  sections(stateReq).forEach((sec, n) => {
    const g = stateful[n];
    const a = analyseChunk(sec.spec);
    const states = a.prefix.map((q) => ({ k: q.k, F: q.F }));
    for (const q of states) {
      buffers.push({ name: segmentBuffer(g, 'S', q.k), role: 'scratch', floats: (b, t) => b * a.NS * nseg(t) * q.F * a.NR, shape: (b, t) => [b, a.NS, nseg(t), q.F, a.NR] });
      buffers.push({ name: segmentBuffer(g, 'z', q.k), role: 'scratch', floats: (b, t) => b * a.NS * nseg(t) * q.F, shape: (b, t) => [b, a.NS, nseg(t), q.F] });
    }
    const scan = segmentScanKernel(`${r.label}.${n}`, states, a.NS, a.NR, C, segment, (what, k) => segmentBuffer(g, what, k));
    kernels.push({ ...scan, pad, stages: [] });
  });
  kernels.push({ ...chunkSectionsKernel(sections(outputReq), r.label), pad, stages: stages(r.groups) });
  return { kernels, buffers };
}
