// Issue 15's target against the H200's current figures (bench/results/h200-kernels.json: B 4, H 16, T 4096, D 64
// with Dawn's toggles, plus elu_dwconv at T 16384 and D 128): the plan a user gets by default is the fastest one
// measured. For every row with more than one plan measured, from the model as it is now, on a described H200 (no GPU):
//   - every plan's estimate, at the schedule it ran at, is within ESTIMATE_FACTOR of its time;
//   - of the plans measured, the one the model estimates cheapest is the fastest or within PICK_SLACK of it;
//   - the plan choosePlan picks, where the file measured it at the schedule it picks, is the fastest or within
//     PICK_SLACK; a pick at a schedule the file has no figure for is listed (UNMEASURED_PICKS) until an H200 run of
//     bench/h200-kernels.ts times it.
// A change to the generator that the model does not price (hedgehog's staged row quantities, priced the old way,
// had its estimates 50× high and picked the prologue plan 18 % over the unfused one) or to the model's constants
// that breaks the ranking fails here.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { featureTiledRow, fitRow, fitTable, H200, readRows, rowProgram, type FitRow, type MeasuredRow } from '../bench/model-fit.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { estimatePlan } from '../backends/wgsl/fusion-model.ts';
import { adapterModel } from '../src/runtime/adapter-model.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';

const ESTIMATE_FACTOR = 2;
const PICK_SLACK = 0.05;
/**
 * Rows whose pick runs at a schedule not measured. Call 31 timed hedgehog's pick, the prologue plan at the unfused
 * plan's 16×32×1024: 2.38 ms beside unfused's 2.54 (call 30 had timed the prologue plan only at the fused default,
 * 8×64×512 in segments of 16: 3.00 ms). The lone-workgroup-with-room rate (schedule-model.ts roomOpsPerUs, roomStepUs,
 * fitted to bench/results/h200-around-picks.json) moved the fused plan of the elu family, retnet and mamba2 from
 * 16×32×512 to 32×32×512 and llama_linearized's unfused plan to 16×32×1024; calls 57 and 58 timed them there. Since the
 * model prices prefetched staging (schedule-model.ts prefetchRoomShare) and features that read many inputs inline at
 * their own rate (inlineElementOpsPerUs), performer and performer_aug pick the prologue plan at 32×32×512 (the file
 * timed it at 16×64×512 in segments of 16): call 66 timed it there (h200-performer-plans.json, checked below).
 */
const UNMEASURED_PICKS: string[] = [];

const fits = readRows('bench/results/h200-kernels.json').flatMap((r) => fitRow(r) ?? []);
const ranked = fits.filter((f) => f.plans.length > 1);
const name = (f: FitRow) => `${f.row.variant} t${f.row.t} d${f.row.d}`;
const measured = (f: FitRow) => f.plans.map((x) => `${x.plan} ${x.ms.toFixed(2)} ms (est. ${x.estMs?.toFixed(2)})`).join(', ');
const fastestMs = (f: FitRow) => Math.min(...f.plans.map((x) => x.ms));

describe('the cost model against the H200 with the toggles (bench/results/h200-kernels.json)', () => {
  it('has every shipped variant with more than one plan measured', () => {
    console.log(fitTable(fits));
    expect(ranked.map((f) => f.row.variant)).toEqual(expect.arrayContaining(['hedgehog', 'performer', 'performer_aug', 'llama_linearized', 'flash', 'elu', 'gla', 'cosformer', 'retnet', 'mamba2']));
  });

  // (a fused kernel with its state in lanes' registers is taken by rule, not priced: the last test of the three
  // below holds it to its measured figure)
  it.each(ranked.map((f) => [name(f), f] as const))(`%s: every plan's estimate is within ${ESTIMATE_FACTOR}x of its time`, (_, f) => {
    for (const x of f.plans.filter((x) => !x.resident)) {
      expect(x.estMs, `${x.plan}: ${measured(f)}`).toBeDefined();
      const ratio = x.estMs! / x.ms;
      expect(Math.max(ratio, 1 / ratio), `${x.plan}: ${measured(f)}`).toBeLessThan(ESTIMATE_FACTOR);
    }
  });

  it.each(ranked.map((f) => [name(f), f] as const))(`%s: the measured plan the model ranks cheapest is the fastest or within ${PICK_SLACK * 100} %`, (_, f) => {
    const priced = f.plans.filter((x) => !x.resident);
    const cheapest = priced.reduce((a, b) => ((b.estMs ?? Infinity) < (a.estMs ?? Infinity) ? b : a));
    expect(cheapest.ms, `the model ranks ${cheapest.plan} cheapest; measured ${measured(f)}`).toBeLessThanOrEqual(Math.min(...priced.map((x) => x.ms)) * (1 + PICK_SLACK));
  });

  it.each(ranked.filter((f) => f.pickMeasured).map((f) => [name(f), f] as const))(`%s: the plan choosePlan picks is the fastest or within ${PICK_SLACK * 100} %`, (_, f) => {
    const pick = f.plans.find((x) => x.plan === f.pick)!;
    expect(pick.ms, `picks ${f.pick}; measured ${measured(f)}; ${f.reason}`).toBeLessThanOrEqual(fastestMs(f) * (1 + PICK_SLACK));
  });

  it('picks at a measured schedule everywhere but the rows listed to measure', () => {
    expect(ranked.filter((f) => !f.pickMeasured).map((f) => `${name(f)}: ${f.pick} at ${JSON.stringify(f.pickSchedule)}`)).toEqual(
      UNMEASURED_PICKS.map((n) => expect.stringMatching(new RegExp(`^${n}: `))),
    );
  });
  // The model prices chunk kernels only: where none fits (based at d 64, 4161 Taylor features), plan-choice takes the
  // fused plan over feature tiles by rule. Call 41: fused over tiles 47.57 ms, unfused over tiles 72.62 (the plain tile
  // kernel unfused, call 25: 129.9).
  it.each(readRows('bench/results/h200-kernels.json').filter(featureTiledRow).map((r) => [`${r.variant} t${r.t} d${r.d}`, r] as const))(
    '%s (feature-tiled): the plan choosePlan takes is the fastest measured',
    (_, r) => {
      const { p, sizes } = rowProgram(r)!;
      const choice = choosePlan(H200, p, sizes, {}, { b: r.b, t: r.t });
      const took = choice.fuse ? r.fused_ms : r.unfused_ms;
      expect(took, choice.reason).not.toBeNull();
      expect(took!, `${choice.reason}; fused ${r.fused_ms} ms, unfused ${r.unfused_ms} ms`).toBeLessThanOrEqual(Math.min(r.fused_ms ?? Infinity, r.unfused_ms ?? Infinity) * (1 + PICK_SLACK));
    },
  );
});

// The same at batch 8 (bench/results/h200-kernels-b8.json, calls 100, 102 and 112): twice the workgroups, so a kernel
// that left units idle at b 4 fills them and one that filled them runs two waves. The model picked llama_linearized's
// fused plan there (12.85 ms against its unfused 6.34: the group's reach left out of the score matrix, schedule-model.ts
// scoreReach) until call 102, and performer's fused plan at 32×64×512 (3.52 ms, 8 % over its unfused plan's 3.26) until
// the feature kernels of features that read many inputs per element got their own rate (manyReadsKernelOpsPerUs): it
// had priced the prologue and unfused plans 1.2–1.4× their times. performer and performer_aug now pick the prologue plan
// at 16×64×512, 2.94 and 3.14 ms, the fastest plans measured (call 112).
const fits8 = readRows('bench/results/h200-kernels-b8.json').flatMap((r) => fitRow(r) ?? []);
const ranked8 = fits8.filter((f) => f.plans.length > 1);

describe('the cost model against the H200 at batch 8 (bench/results/h200-kernels-b8.json)', () => {
  it('has the shipped variants with more than one plan measured, each pick at a measured schedule', () => {
    console.log(fitTable(fits8));
    expect(ranked8.map((f) => f.row.variant)).toEqual(expect.arrayContaining(['hedgehog', 'performer', 'llama_linearized', 'flash', 'elu_dwconv', 'gla', 'cosformer', 'retnet']));
    expect(ranked8.filter((f) => !f.pickMeasured).map((f) => `${name(f)}: ${f.pick} at ${JSON.stringify(f.pickSchedule)}`)).toEqual([]);
  });

  it.each(ranked8.filter((f) => f.pickMeasured).map((f) => [name(f), f] as const))(`%s: the plan choosePlan picks is the fastest or within ${PICK_SLACK * 100} %`, (_, f) => {
    const pick = f.plans.find((x) => x.plan === f.pick)!;
    expect(pick.ms, `picks ${f.pick}; measured ${measured(f)}; ${f.reason}`).toBeLessThanOrEqual(fastestMs(f) * (1 + PICK_SLACK));
  });
});

// The same at batch 1 (bench/results/h200-kernels-b1.json, call 170): b·heads = 16 workgroups of whole heads, so the
// segmented plans decide; since call 170 a past_groups term's plans may be segmented at its group starts, and flash's
// and llama_linearized's fused plans over segments (llama's norms in a prologue) ran 0.60 ms against their unfused 1.02
// and 1.10. elu_dwconv at d 128 takes its fused kernel with the state in lanes' registers by rule (plan-choice.ts), not
// priced: in one walk at b 1 (32 workgroups) it ran 1.296 ms against the unfused plan's 0.987 (call 170); over spans of
// segments, its default where whole heads leave units idle since call 172, 0.460 against 0.996.
const fits1 = readRows('bench/results/h200-kernels-b1.json').flatMap((r) => fitRow(r) ?? []);
const ranked1 = fits1.filter((f) => f.plans.length > 1);

describe('the cost model against the H200 at batch 1 (bench/results/h200-kernels-b1.json)', () => {
  it('has flash, llama_linearized and elu_dwconv with more than one plan measured, each pick at a measured schedule', () => {
    console.log(fitTable(fits1));
    expect(ranked1.map((f) => f.row.variant)).toEqual(expect.arrayContaining(['llama_linearized', 'flash', 'elu_dwconv']));
    expect(ranked1.filter((f) => !f.pickMeasured).map((f) => `${name(f)}: ${f.pick} at ${JSON.stringify(f.pickSchedule)}`)).toEqual([]);
  });

  it.each(ranked1.filter((f) => f.pickMeasured).map((f) => [name(f), f] as const))(`%s: the plan choosePlan picks is the fastest or within ${PICK_SLACK * 100} %`, (_, f) => {
    const pick = f.plans.find((x) => x.plan === f.pick)!;
    expect(pick.ms, `picks ${f.pick}; measured ${measured(f)}; ${f.reason}`).toBeLessThanOrEqual(fastestMs(f) * (1 + PICK_SLACK));
  });
});

// The same at D 128 (bench/results/h200-kernels-d128.json, calls 176 and 180: B 4, every variant but based): the elu family,
// retnet, mamba2 and gla take the fused kernel with the state in lanes' registers by rule; cosformer and cosformer_aug
// take their unfused plan with its prefix kernels in lanes' registers (2.92 ms, under the fused resident kernel's 3.67
// and the plain unfused plan's 4.23: calls 177–180); performer, performer_aug and hedgehog their prologue plans; flash
// and llama_linearized their unfused plans, prefix kernels in registers too (5.23 and 5.72 ms, call 184; their fused kernels fit
// only chunks of 4–8 and 8 columns at d 128: 123 and 57 ms). The estimates at d 128 are not held to
// ESTIMATE_FACTOR (the fused kernels squeezed into small tiles are priced 2–4× their times); the picks are.
// At B 1 (bench/results/h200-kernels-d128-b1.json, call 180): the resident kernel over spans of segments for the elu
// family, retnet, mamba2, gla and cosformer; flash's and llama_linearized's unfused plan with its stateless kernels over
// segments and its prefix kernel in lanes' registers over spans (1.49 and 1.60 ms, call 184, from 3.52 and 3.77 in one
// walk each).
for (const [file, count] of [['bench/results/h200-kernels-d128.json', 15], ['bench/results/h200-kernels-d128-b1.json', 11]] as const) {
  const fits128 = readRows(file).flatMap((r) => fitRow(r) ?? []);
  const ranked128 = fits128.filter((f) => f.plans.length > 1);

  describe(`the plan choice against the H200 at D 128 (${file})`, () => {
    it('has the variants with more than one plan measured, each pick at a measured schedule', () => {
      console.log(fitTable(fits128));
      expect(ranked128.length).toBe(count);
      expect(ranked128.filter((f) => !f.pickMeasured).map((f) => `${name(f)}: ${f.pick} at ${JSON.stringify(f.pickSchedule)}`)).toEqual([]);
    });

    it.each(ranked128.filter((f) => f.pickMeasured).map((f) => [name(f), f] as const))(`%s: the plan choosePlan picks is the fastest or within ${PICK_SLACK * 100} %`, (_, f) => {
      const pick = f.plans.find((x) => x.plan === f.pick)!;
      expect(pick.ms, `picks ${f.pick}; measured ${measured(f)}; ${f.reason}`).toBeLessThanOrEqual(fastestMs(f) * (1 + PICK_SLACK));
    });
  });
}

// Call 66 (bench/results/h200-performer-plans.json: bench/kernels.ts --schedules with the u: and p: prefixes, 3 rounds)
// timed performer's and performer_aug's unfused plan and the fused plan with the prologue the model decides at each of
// five schedules side by side. The model picked the segmented 16×64×512 prologue plan (1.987 ms, est. 2.218) where the
// prologue plan at 32×32×512 ran 1.740 (est. 2.291) and the unfused plan 1.897: a fused pick slower than unfused.
interface PlanRun { variant: string; b: number; h: number; t: number; d: number; schedule: ChunkSchedule; asked: string; plan: 'unfused' | 'prologue' | 'fused'; prologueNodes?: number[]; medianMs: number }
const planRuns = (JSON.parse(readFileSync('bench/results/h200-performer-plans.json', 'utf8')) as { rows: PlanRun[] }).rows;
const sameSchedule = (a: ChunkSchedule, b: ChunkSchedule) => a.chunk === b.chunk && a.cols === b.cols && a.threads === b.threads && (a.segment ?? 0) === (b.segment ?? 0) && (a.block ?? 0) === (b.block ?? 0);
const showRun = (x: PlanRun & { estMs: number }) => `${x.asked} (${x.plan} ${x.schedule.chunk}x${x.schedule.cols}x${x.schedule.threads}${x.schedule.segment ? `s${x.schedule.segment}` : ''}) ${x.medianMs.toFixed(3)} ms, est. ${x.estMs.toFixed(3)}`;
const planSets = [...new Set(planRuns.map((r) => r.variant))].map((variant) => {
  const runs = planRuns.filter((r) => r.variant === variant);
  const { b, h, t, d } = runs[0];
  const { p, sizes } = rowProgram({ variant, b, h, t, d } as MeasuredRow)!;
  const m = adapterModel(H200);
  const est = runs.map((r) => ({ ...r, estMs: estimatePlan(m, p, sizes, r.schedule, r.plan !== 'unfused', b, t, new Set(r.prologueNodes ?? []))!.us / 1e3 }));
  const choice = choosePlan(H200, p, sizes, {}, { b, t });
  const nodes = (x: Iterable<number> | undefined) => [...(x ?? [])].sort((i, j) => i - j).join(',');
  const pick = est.find((r) => (r.plan !== 'unfused') === choice.fuse && sameSchedule(r.schedule, choice.schedule) && nodes(r.prologueNodes) === nodes(choice.prologue));
  return { variant, est, choice, pick, fastestMs: Math.min(...runs.map((r) => r.medianMs)), unfusedMs: Math.min(...runs.filter((r) => r.plan === 'unfused').map((r) => r.medianMs)) };
});

describe('the cost model against performer\'s plans side by side (bench/results/h200-performer-plans.json)', () => {
  it('prints each plan beside its estimate', () => {
    for (const x of planSets) console.log(`${x.variant}: picks ${x.choice.reason}\n  ${x.est.map(showRun).join('\n  ')}`);
    expect(planSets.map((x) => x.variant)).toEqual(['performer', 'performer_aug']);
  });

  it.each(planSets.map((x) => [x.variant, x] as const))(`%s: every plan's estimate is within ${ESTIMATE_FACTOR}x of its time`, (_, x) => {
    for (const r of x.est) expect(Math.max(r.estMs / r.medianMs, r.medianMs / r.estMs), showRun(r)).toBeLessThan(ESTIMATE_FACTOR);
  });

  it.each(planSets.map((x) => [x.variant, x] as const))(`%s: the measured plan the model ranks cheapest is the fastest or within ${PICK_SLACK * 100} %`, (_, x) => {
    const cheapest = x.est.reduce((a, b) => (b.estMs < a.estMs ? b : a));
    expect(cheapest.medianMs, `ranks ${showRun(cheapest)} cheapest; measured ${x.est.map(showRun).join('; ')}`).toBeLessThanOrEqual(x.fastestMs * (1 + PICK_SLACK));
  });

  it.each(planSets.map((x) => [x.variant, x] as const))(`%s: choosePlan picks a plan measured here, the fastest or within ${PICK_SLACK * 100} %, and no slower than the unfused plan`, (_, x) => {
    expect(x.pick, `picks ${x.choice.reason}: not a plan the file measured`).toBeDefined();
    expect(x.pick!.medianMs, `picks ${showRun(x.pick!)}; measured ${x.est.map(showRun).join('; ')}`).toBeLessThanOrEqual(x.fastestMs * (1 + PICK_SLACK));
    expect(x.pick!.medianMs, `picks ${showRun(x.pick!)}; the unfused plan ran ${x.unfusedMs} ms`).toBeLessThanOrEqual(x.unfusedMs);
  });
});
