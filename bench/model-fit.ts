// The cost model (backends/wgsl/fusion-model.ts, schedule-model.ts) against the H200's measurements
// (bench/results/h200-kernels-fit.json: calls 6-9, cosformer's schedules of calls 11 and 15): every measured plan's estimate at the schedule it ran at beside its time, and
// the plan the model picks today (choosePlan on a described H200, no GPU needed) beside the one measured faster.
//
//   npx tsx bench/model-fit.ts [FILE]        (default bench/results/h200-kernels-fit.json: the pre-toggle rows of calls 6–15;
//                                             bench/results/h200-kernels.json: the toggled rows the constants are now fitted to)
//
// test/model-fit.test.ts checks the picks; this prints the table the constants are refitted from.
import { readFileSync } from 'node:fs';
import { estimatePlan, type PlanEstimate } from '../backends/wgsl/fusion-model.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { axisSizes } from '../src/inputs.ts';
import { isSoftmaxProgram } from '../backends/wgsl/softmax-analysis.ts';
import { adapterModel } from '../src/runtime/adapter-model.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import type { Program } from '../src/ir/types.ts';
import { DECODABLE_VARIANTS } from './variant-list.ts';

/** The bench's adapter as the model sees it: its name and limits (48 KB of workgroup memory on the H200). */
export const H200 = {
  adapterName: 'nvidia-h200',
  isSoftware: false,
  hasTimestamps: true,
  limits: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 },
  // Dawn with the 'subgroups' feature reports NVIDIA's subgroups of 32 (min = max): the resident default applies
  subgroupSize: 32,
} as unknown as Gpu;

/**
 * The same H200 without a fixed subgroup size: the plain chunk kernel's schedule pick, which files measured before the
 * resident default (a state in lanes' registers at d 128) are held to.
 */
export const H200_PLAIN = { ...H200, subgroupSize: undefined } as unknown as Gpu;

export interface MeasuredRow {
  variant: string; b: number; h: number; t: number; d: number; call?: number; model_units: number; note?: string;
  fused_ms: number | null; unfused_ms: number | null; prologue_ms?: number | null; prologue_nodes?: number[];
  fused_schedule?: ChunkSchedule; unfused_schedule?: ChunkSchedule;
  /** Absent in rows written before the bench recorded it: the prologue plan ran at the fused schedule. */
  prologue_schedule?: ChunkSchedule;
}

export type PlanName = 'fused' | 'prologue' | 'unfused';

export interface FitRow {
  readonly row: MeasuredRow;
  /**
   * Each measured plan: its time and the model's estimate at the schedule (and prologue) it ran at; none for a fused
   * kernel that kept its state in lanes' registers (`resident`), which the plan choice takes by rule, unpriced
   * (chunked/resident-default.ts).
   */
  readonly plans: { plan: PlanName; ms: number; estMs: number | undefined; schedule: ChunkSchedule; resident?: boolean }[];
  /** The measured fastest plan and by how much the runner-up is slower (0.1: 10 %). */
  readonly fastest: PlanName;
  readonly gap: number;
  /** The model's pick today at the row's shape, its schedule, and whether that schedule is the one measured. */
  readonly pick: PlanName;
  readonly pickSchedule: ChunkSchedule;
  readonly pickMeasured: boolean;
  /** The model's estimate of its pick at that schedule (ms). */
  readonly pickEstMs: number | undefined;
  readonly reason: string;
}

// `block` too: a register-blocked pick is not measured by its unblocked schedule's figure.
const same = (a: ChunkSchedule | undefined, b: ChunkSchedule) => !!a && a.chunk === b.chunk && a.cols === b.cols && a.threads === b.threads && (a.segment ?? 0) === (b.segment ?? 0) && (a.span ?? 1) === (b.span ?? 1) && (a.block ?? 0) === (b.block ?? 0);

const sameOwn = (a: ChunkSchedule | undefined, b: ChunkSchedule | undefined) => (!a && !b) || (!!a && !!b && same(a, b));

export function readRows(file = 'bench/results/h200-kernels-fit.json'): MeasuredRow[] {
  return (JSON.parse(readFileSync(file, 'utf8')) as { rows: MeasuredRow[] }).rows;
}

/** Whether the row's plans ran over feature tiles (based): the model prices chunk kernels, not tile kernels. */
export function featureTiledRow(row: MeasuredRow): boolean {
  return [row.fused_schedule, row.unfused_schedule].some((s) => s !== null && s !== undefined && 'featureTile' in s);
}

/**
 * One row's fit; undefined for a row with no fused time or schedule, a feature-tiled one (featureTiledRow: plan-choice
 * takes the fused plan over tiles by rule where no chunk kernel fits, not by an estimate) or softmax. A row of the fused plan
 * alone (an autotuner's trial of one schedule: call 15) has no runner-up (gap 0): it only ranks schedules.
 */
export function fitRow(row: MeasuredRow, gpu: Gpu = H200, prefetched = prefetchedRow(row)): FitRow | undefined {
  const compiled = rowProgram(row);
  if (!compiled || row.fused_ms === null || !row.fused_schedule || featureTiledRow(row)) return undefined;
  const { p, sizes } = compiled;
  const m = adapterModel(gpu);
  const est = (s: ChunkSchedule, fuse: boolean, prologue?: ReadonlySet<number>) => ms(estimatePlan(m, p, sizes, s, fuse, row.b, row.t, prologue, prefetched));
  const resident = !!(row.fused_schedule as { resident?: boolean }).resident;
  // a plan that kept its state in lanes' registers (a prologue plan with a group open across chunks, an unfused plan's
  // prefix kernels: plan-choice.ts residentChoice, withResidentPrefix) is unpriced
  const measuredPlan = (plan: 'prologue' | 'unfused', ms: number, s: ChunkSchedule, nodes?: ReadonlySet<number>) => {
    const rs = !!(s as { resident?: boolean }).resident;
    return { plan, ms, estMs: rs ? undefined : est(s, plan !== 'unfused', nodes), schedule: s, ...(rs && { resident: rs }) };
  };
  const plans: FitRow['plans'] = [
    { plan: 'fused', ms: row.fused_ms, estMs: resident ? undefined : est(row.fused_schedule, true), schedule: row.fused_schedule, ...(resident && { resident }) },
    ...(row.prologue_ms != null && row.prologue_nodes ? [measuredPlan('prologue', row.prologue_ms, row.prologue_schedule ?? row.fused_schedule, new Set(row.prologue_nodes))] : []),
    ...(row.unfused_ms !== null && row.unfused_schedule ? [measuredPlan('unfused', row.unfused_ms, row.unfused_schedule)] : []),
  ];
  const sorted = [...plans].sort((a, b) => a.ms - b.ms);
  const choice = choosePlan(gpu, p, sizes, {}, { b: row.b, t: row.t });
  const pick: PlanName = !choice.fuse ? 'unfused' : choice.prologue?.size ? 'prologue' : 'fused';
  const measured = plans.find((x) => x.plan === pick);
  return {
    row,
    plans,
    fastest: sorted[0].plan,
    gap: sorted.length > 1 ? sorted[1].ms / sorted[0].ms - 1 : 0,
    pick,
    pickSchedule: choice.schedule,
    // (an unfused plan's resident prefix kernels run at a schedule of their own, which must match too)
    pickMeasured: !!measured && same(measured.schedule, choice.schedule) && !!measured.resident === !!choice.resident && sameOwn((measured.schedule as { residentSchedule?: ChunkSchedule }).residentSchedule, choice.residentSchedule),
    pickEstMs: choice.resident ? undefined : est(choice.schedule, choice.fuse, choice.prologue),
    reason: choice.reason,
  };
}

/** The H200 call that timed the row: its `call`, or the one its `note` names (h200-kernels.json); 0 where neither says. */
export const rowCall = (row: MeasuredRow): number => row.call ?? Number(/call (\d+)/.exec(row.note ?? '')?.[1] ?? 0);

/**
 * Whether the row's chunk kernels prefetched their staging (chunked/staging.ts, from call 60 on): h200-kernels.json's
 * chunk rows were re-timed with it (calls 61 and 62, their `note`); the rows of earlier calls ran without, and the
 * model prices them so.
 */
export const prefetchedRow = (row: MeasuredRow): boolean => rowCall(row) >= 60;

/** The row's variant compiled at its shape; undefined for a variant not shipped and for softmax attention. */
export function rowProgram(row: MeasuredRow): { p: Program; sizes: Record<string, number> } | undefined {
  const file = DECODABLE_VARIANTS.find((f) => f.endsWith(`/${row.variant}.la`));
  if (!file) return undefined;
  const c = compileFile(file);
  const axes: Record<string, number> = {};
  for (const [a, def] of Object.entries(c.source.axes)) if (def.kind === 'free') axes[a] = a === 'h' ? row.h : row.d;
  return isSoftmaxProgram(c.program) ? undefined : { p: c.program, sizes: axisSizes(c.source, axes) };
}

const ms = (e: PlanEstimate | undefined) => (e ? e.us / 1e3 : undefined);
const show = (s: ChunkSchedule) => `${s.chunk}x${s.cols}x${s.threads}${s.segment ? `s${s.segment}` : ''}${s.span ? `p${s.span}` : ''}${s.block ? `b${s.block}` : ''}`;

/** The table: per row and plan, measured vs estimated ms, then the pick against the measured fastest. */
export function fitTable(fits: readonly FitRow[]): string {
  const lines = ['variant            shape          call plan      schedule      measured  model   ratio', ''];
  const logErr: number[] = [];
  const logErr132: number[] = [];
  for (const f of fits) {
    const r = f.row;
    for (const x of f.plans) {
      const ratio = x.estMs !== undefined ? x.estMs / x.ms : undefined;
      if (ratio !== undefined) logErr.push(Math.abs(Math.log(ratio)));
      if (ratio !== undefined && r.model_units === 132) logErr132.push(Math.abs(Math.log(ratio)));
      lines.push(`${r.variant.padEnd(18)} t${r.t} d${r.d}`.padEnd(34) + `${rowCall(r)}    ${x.plan.padEnd(9)} ${show(x.schedule).padEnd(12)} ${x.ms.toFixed(2).padStart(8)} ${(x.estMs?.toFixed(2) ?? '—').padStart(7)} ${ratio?.toFixed(2).padStart(6) ?? ''}`);
    }
    const ok = f.plans.length < 2 ? 'one plan measured' : f.pick === f.fastest ? 'right' : !f.pickMeasured ? 'not timed at that schedule' : f.gap > 0.1 ? 'WRONG' : 'wrong (within 10 %)';
    lines.push(`  → fastest ${f.fastest} (next +${(f.gap * 100).toFixed(0)} %), model picks ${f.pick} at ${show(f.pickSchedule)} (est. ${f.pickEstMs?.toFixed(2)} ms${f.pickMeasured ? '' : ', a schedule not measured'}): ${ok}`);
  }
  const geo = (xs: number[]) => Math.exp(xs.reduce((a, b) => a + b, 0) / xs.length).toFixed(2);
  const of132 = logErr132.length ? `, ${geo(logErr132)}× over the ${logErr132.length} of calls 7 onwards (132 units, three rounds)` : '';
  lines.push('', `estimate error, the geometric mean of max(model/measured, measured/model): ${geo(logErr)}× over all ${logErr.length} plans${of132}`);
  return lines.join('\n');
}

/** Two measured schedules of one plan of one variant at one shape (from any two 132-unit rows), the faster first. */
export interface SchedulePair {
  readonly variant: string;
  readonly shape: string;
  readonly plan: PlanName;
  readonly fast: { schedule: ChunkSchedule; ms: number; estMs: number | undefined; call: number };
  readonly slow: { schedule: ChunkSchedule; ms: number; estMs: number | undefined; call: number };
  /** How much slower the slow one ran (0.1: 10 %). */
  readonly gap: number;
}

/**
 * Every pair of different schedules at which the H200 ran one plan of one variant at one shape, over the rows the
 * model saw 132 units in (calls 7 onwards, three rounds each): what the model's ranking of schedules is checked by.
 */
export function schedulePairs(fits: readonly FitRow[]): SchedulePair[] {
  const groups = new Map<string, { variant: string; shape: string; plan: PlanName; runs: SchedulePair['fast'][] }>();
  for (const f of fits) {
    const r = f.row;
    if (r.model_units !== 132) continue;
    for (const x of f.plans) {
      const shape = `b${r.b} h${r.h} t${r.t} d${r.d}`;
      const key = `${r.variant} ${shape} ${x.plan}`;
      const g = groups.get(key) ?? { variant: r.variant, shape, plan: x.plan, runs: [] };
      g.runs.push({ schedule: x.schedule, ms: x.ms, estMs: x.estMs, call: rowCall(r) });
      groups.set(key, g);
    }
  }
  const out: SchedulePair[] = [];
  for (const g of groups.values()) {
    for (let i = 0; i < g.runs.length; i++) {
      for (let j = i + 1; j < g.runs.length; j++) {
        if (same(g.runs[i].schedule, g.runs[j].schedule)) continue;
        const [fast, slow] = g.runs[i].ms <= g.runs[j].ms ? [g.runs[i], g.runs[j]] : [g.runs[j], g.runs[i]];
        out.push({ variant: g.variant, shape: g.shape, plan: g.plan, fast, slow, gap: slow.ms / fast.ms - 1 });
      }
    }
  }
  return out;
}

/** The pairs: measured and estimated ms of each schedule, and whether the model ranks them as measured. */
export function pairTable(pairs: readonly SchedulePair[]): string {
  const lines = ['variant            plan      faster (call)        ms   model   slower (call)        ms   model  ranked', ''];
  for (const q of pairs) {
    const ok = q.fast.estMs !== undefined && q.slow.estMs !== undefined && q.fast.estMs < q.slow.estMs;
    const side = (x: SchedulePair['fast']) => `${`${show(x.schedule)} (${x.call})`.padEnd(16)} ${x.ms.toFixed(2).padStart(6)} ${(x.estMs?.toFixed(2) ?? '—').padStart(6)}`;
    lines.push(`${q.variant.padEnd(18)} ${q.plan.padEnd(9)} ${side(q.fast)}   ${side(q.slow)}  ${ok ? 'right' : q.gap > 0.1 ? 'WRONG' : 'wrong (within 10 %)'}`);
  }
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const fits = readRows(process.argv[2]).flatMap((r) => fitRow(r) ?? []);
  console.log(fitTable(fits));
  console.log('\nschedules of one plan measured side by side (132-unit rows):\n');
  console.log(pairTable(schedulePairs(fits)));
}
