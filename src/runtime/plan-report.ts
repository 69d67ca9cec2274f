// The chunked plan's decision in text, for `linattn ir FILE.la --print-after=plan`: not a pass (the IR is not
// changed) but the stage after the last one, what lowering would do with the program on a given adapter. The
// adapter is a model (adapter-model.ts's compute units by name, its workgroup memory), so it needs no device:
// fused, fused with a prologue, or unfused, with the estimates fusion-model.ts ranks them by, and per feature node
// where it is computed (inline in the chunk kernel or once in a prologue kernel) with its two estimates; then the
// decode step's grid on a hardware adapter (recurrent-split.ts).
import { flashKernel } from '../../backends/wgsl/softmax-tiled.ts';
import { BLOCKED_BY_DEFAULT, candidateSchedules } from '../../backends/wgsl/chunk-schedules.ts';
import { PREFETCH_MARK, type ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import { MAX_PREFETCH } from '../../backends/wgsl/chunked/staging.ts';
import { CHUNK_DEFAULTS, outputPart } from '../../backends/wgsl/chunked/analysis.ts';
import { HELD_MARK } from '../../backends/wgsl/chunked/fold-tiled.ts';
import { weighSpans } from '../../backends/wgsl/chunked/span-default.ts';
import { featureNodes, featureRoles } from '../../backends/wgsl/feature-nodes.ts';
import { bestByModel, chooseFusion } from '../../backends/wgsl/fusion-model.ts';
import { recurrentPlan } from '../../backends/wgsl/recurrent.ts';
import { hardwareModel } from '../../backends/wgsl/schedule-model.ts';
import { lowerChunked } from '../../backends/wgsl/lower.ts';
import { isSoftmaxProgram } from '../../backends/wgsl/softmax-analysis.ts';
import { printNode } from '../ir/print.ts';
import type { Program } from '../ir/types.ts';
import { computeUnits } from './adapter-model.ts';

export interface ReportAdapter {
  /** The adapter's name, as Dawn reports it (compute units come from it). */
  readonly name: string;
  /** maxComputeWorkgroupStorageSize and maxComputeInvocationsPerWorkgroup. */
  readonly workgroupBytes: number;
  readonly invocations: number;
}

const show = (s: ChunkSchedule) => `chunk ${s.chunk}, cols ${s.cols}, threads ${s.threads}${s.segment ? `, segments of ${s.segment}` : ''}${s.block && s.block > 1 ? `, blocks of ${s.block} columns` : ''}`;

export function planReport(p: Program, sizes: Readonly<Record<string, number>>, adapter: ReportAdapter, shape: { b: number; t: number }): string {
  const units = computeUnits(adapter.name, false);
  const where = `${adapter.name} (model: ${units} units, ${adapter.workgroupBytes} bytes of workgroup memory) at b ${shape.b}, t ${shape.t}, sizes ${Object.entries(sizes).map(([a, n]) => `${a} ${n}`).join(', ')}`;
  const lines = [`// ---- plan (not a pass: the chunked plan lowering chooses on ${where})`];
  if (isSoftmaxProgram(p)) {
    // the schedule the plan choice takes on such an adapter: the tiled kernel's largest shape, if any (schedule.ts)
    const cands = candidateSchedules({ maxComputeWorkgroupStorageSize: adapter.workgroupBytes, maxComputeInvocationsPerWorkgroup: adapter.invocations }, p, sizes);
    const tiled = cands.find((s) => s.block);
    return [...lines, `plan softmax: ${tiled ? flashKernel(tiled) : 'the flash kernel'} (no feature maps to place)`, ''].join('\n');
  }
  const m = hardwareModel(units, adapter.workgroupBytes);
  const limits = { maxComputeWorkgroupStorageSize: adapter.workgroupBytes, maxComputeInvocationsPerWorkgroup: adapter.invocations };
  const c = chooseFusion(m, p, sizes, { fused: candidateSchedules(limits, p, sizes), unfused: candidateSchedules(limits, p, sizes, true).filter((s) => !s.segment) }, shape.b, shape.t);
  if (!c) return [...lines, 'plan unfused over feature tiles: neither the fused kernel nor every unfused term kernel fits', ''].join('\n');
  const kind = !c.fuse ? 'unfused' : c.prologue?.size ? 'fused with a prologue' : 'fused';
  lines.push(`plan ${kind} (${show(c.schedule)}): ${c.reason.replace(/^(every feature inline|fused with a prologue|unfused): /, '')}`);
  // the candidate over spans (plan-choice.ts spanChoice), which runs where it is estimated under the fused pick
  const w = c.fuse && !c.prologue?.size ? weighSpans(m, p, sizes, limits, shape.b, shape.t, c.schedule) : undefined;
  const taken = !!w && w.us < w.plainUs;
  if (w) lines.push(`over spans (chunked/span-default.ts): ${show(w.schedule)} in spans of ${w.schedule.span} segments, est. ${(w.us / 1e3).toFixed(3)} ms${taken ? ' < the fused pick: the plan runs this' : ' ≥ the fused pick: not taken'}`);
  const ran = taken ? w!.schedule : c.schedule;
  lines.push(stagingLine(p, sizes, c.fuse, ran, c.prologue));
  lines.push(switchesLine(p, sizes, c.fuse, ran, c.prologue));
  // The register-blocked schedules (ChunkSchedule.block), which the choice above does not see until they are timed.
  const blocked = BLOCKED_BY_DEFAULT ? undefined : bestByModel(m, p, sizes, candidateSchedules(limits, p, sizes, false, true).filter((s) => s.block), true, shape.b, shape.t);
  if (blocked) lines.push(`register-blocked fused, not chosen by default until timed (chunk-schedules.ts BLOCKED_BY_DEFAULT): best ${show(blocked.schedule)}, est. ${(blocked.us / 1e3).toFixed(3)} ms`);
  const h = c.hybrid;
  if (h) {
    const roles = featureRoles(p);
    lines.push(`feature nodes (${featureNodes(outputPart(p, false)).length}), decided at the prologue plan's best schedule (${show(h.schedule)}):`);
    for (const id of featureNodes(outputPart(p, false))) {
      const d = h.decisions.find((x) => x.id === id);
      const verdict = !d
        ? 'inline    computes nothing (a load or a position): a prologue would copy it'
        : d.prologue
          ? `prologue  inline ${d.inlineUs.toFixed(1)} µs > prologue ${d.prologueUs.toFixed(1)} µs`
          : `inline    inline ${d.inlineUs.toFixed(1)} µs ≤ prologue ${d.prologueUs.toFixed(1)} µs`;
      lines.push(`  ${printNode(p.nodes[id]).padEnd(30)} ${verdict}  (${roles.get(id)!.join(', ')})`);
    }
  }
  return [...lines, decodeLine(p, sizes, shape.b), ''].join('\n');
}

/**
 * Whether the chosen plan's chunk kernels load the next chunk's rows while this one computes (chunked/staging.ts
 * prefetchSlots), read from the kernels lowering writes: where one does, how many loads a thread holds.
 */
function stagingLine(p: Program, sizes: Readonly<Record<string, number>>, fuse: boolean, schedule: ChunkSchedule, prologue: ReadonlySet<number> | undefined): string {
  const kernels = lowerChunked(p, sizes, { fuse, schedule, ...(prologue?.size ? { prologue } : {}) }).kernels.filter((k) => k.code.includes('let nchunks'));
  const held = kernels.map((k) => new RegExp(`${PREFETCH_MARK}: (\\d+) global loads`).exec(k.code)?.[1]);
  const ahead = held.filter((h) => h !== undefined).length;
  if (!kernels.length) return 'staging: no chunk kernel';
  if (!ahead) return `staging: each chunk's rows loaded at its start (${kernels.length} chunk kernel${kernels.length > 1 ? 's' : ''}; prefetching needs every staged array unrolled, no staged row quantities and at most ${MAX_PREFETCH} loads a thread)`;
  return `staging: the next chunk's rows loaded while this one computes in ${ahead} of ${kernels.length} chunk kernel${kernels.length > 1 ? 's' : ''} (${held.map((h) => h ?? '—').join(', ')} global loads a thread held)`;
}

/**
 * The chunk kernels' three switches (chunked/analysis.ts CHUNK_DEFAULTS): vec4 feature arrays (φ, z, ψ read four
 * features a trip), convolution weights hoisted out of the chunk loop, and the outputs beside the state update on
 * two halves of the workgroup — on or off, and how many of the chosen plan's chunk kernels take each, read from the
 * kernels lowering writes with all asked for.
 */
function switchesLine(p: Program, sizes: Readonly<Record<string, number>>, fuse: boolean, schedule: ChunkSchedule, prologue: ReadonlySet<number> | undefined): string {
  const kernels = lowerChunked(p, sizes, { fuse, schedule, ...(prologue?.size ? { prologue } : {}), vec4: true, hoistTaps: true, overlap: true }).kernels.filter((k) => k.code.includes('let nchunks'));
  const vec4 = kernels.filter((k) => /var<workgroup> phi\d+: array<vec4<f32>/.test(k.code)).length;
  const taps = kernels.filter((k) => k.code.includes('// hoisted taps of ')).length;
  const overlap = kernels.filter((k) => k.code.includes(HELD_MARK)).length;
  const state = (on: boolean) => (on ? 'on' : 'off until timed');
  return `vec4 feature arrays for ${vec4} of ${kernels.length} chunk kernel(s): ${state(CHUNK_DEFAULTS.vec4)}; hoisted convolution weights for ${taps}: ${state(CHUNK_DEFAULTS.hoistTaps)}; outputs beside the state update for ${overlap}: ${state(CHUNK_DEFAULTS.overlap)} (chunked/analysis.ts CHUNK_DEFAULTS)`;
}

/** The decode step's workgroups at batch b, its split chosen for b, and each thread's longest walk (t = 1 per call). */
function decodeLine(p: Program, sizes: Readonly<Record<string, number>>, b: number): string {
  if (p.terms.some((t) => t.noncausal)) return 'decode step: none (a noncausal term)';
  const s = recurrentPlan(p, sizes, undefined, { hardware: true, batch: b }).schedule;
  return (
    `decode step: ${s.workgroups * b} workgroups at b ${b} (${s.workgroups / s.columnBlocks} head slices × ${s.columnBlocks} column blocks × b) ` +
    `of ${s.columns} columns × ${s.slices} slices, a thread walking ≤ ${s.rowsPerThread} rows of S and ≤ ${s.lagsPerThread} lags per term; then the commit of z and the rings`
  );
}
