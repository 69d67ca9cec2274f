// The schedule model against calls 52 and 54's schedules around the model's picks for elu_dwconv's fused chunk kernel
// at B 4, H 16, T 4096, D 64 and D 128 (bench/results/h200-around-picks.json), on a described H200 (no GPU). A
// schedule timed twice (32×32×512 in both calls) counts at the mean of its medians; the `default` rows repeat the
// pick's. For every pair of schedules at one d measured over 10 % apart, the schedule measured faster must have the
// lower estimate, and the schedule choosePlan picks must be the fastest of the file at that d.
//
// The pair that mattered: 32×32×512 (1.013–1.022 ms) against the 16×32×512 the model picked (1.066–1.075): both 128
// workgroups, one a unit with room for another. Charged at the shared rate (14 a cycle) and 1 µs a step, 32×32's
// 128 steps of 247K operations were est. 1.463 ms against 16×32's 256 of 101K at 1.349. A lone workgroup with room
// now takes 2 µs a step and its products at 18 a cycle (schedule-model.ts roomOpsPerUs, roomStepUs): est. 1.301
// against 1.368, and the pick is 32×32×512. Those two are 5 % apart, under the pairs' 10 %; the pick test holds them.
//
// KNOWN_MISRANKED lists the pairs the model still ranks the wrong way round, checked with it.fails so that a change
// which ranks one of them right fails here until it is taken off the list. The blocked schedules (b4) are priced by
// their loads alone (blockedShares) and ran 1.4–1.5× slower than unblocked; 256-thread and 8-row schedules (fewer
// busy invocations than fullRateInvocations) are charged 1.9–2.1× their time (16×32×256 1.339 ms, est. 2.647;
// 8×32×512 1.436, est. 2.988) where the shared 32×16 tiles are 1.1–1.2× (32×16×512 1.624, est. 1.735).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkRanking } from './helpers/schedule-ranking.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { estimatePlan } from '../backends/wgsl/fusion-model.ts';
import { adapterModel } from '../src/runtime/adapter-model.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import { chooseSchedule } from '../src/runtime/schedule.ts';
import { H200, H200_PLAIN, rowProgram, type MeasuredRow } from '../bench/model-fit.ts';

interface SweepRow { variant: string; b: number; h: number; t: number; d: number; schedule: ChunkSchedule; asked: string; medianMs: number }

const rows = (JSON.parse(readFileSync('bench/results/h200-around-picks.json', 'utf8')) as { rows: SweepRow[] }).rows;
const show = (s: ChunkSchedule) => `${s.chunk}x${s.cols}x${s.threads}${s.segment ? `s${s.segment}` : ''}${s.block && s.block > 1 ? `b${s.block}` : ''}`;

/** Pairs (d: faster < slower, measured over 10 % apart) the model ranks the wrong way round today. */
const KNOWN_MISRANKED = [
  'd64: 16x32x512 < 16x32x512b4', 'd64: 16x32x1024 < 16x32x512b4', 'd64: 16x32x256 < 16x32x512b4', 'd64: 16x32x256 < 16x64x512',
  'd64: 16x32x256 < 8x64x512', 'd64: 16x32x256 < 32x16x512', 'd64: 16x32x256 < 32x16x256', 'd64: 32x32x512 < 16x32x512b4',
  'd64: 8x32x512 < 16x32x512b4', 'd64: 8x32x512 < 16x64x512', 'd64: 8x32x512 < 8x64x512', 'd64: 8x32x512 < 32x16x512',
  'd64: 8x32x512 < 32x16x256', 'd64: 16x16x512 < 16x32x512b4', 'd64: 16x16x512 < 32x16x512', 'd64: 16x16x512 < 32x32x512s4',
  'd64: 32x32x1024 < 16x32x512b4', 'd64: 32x32x256 < 16x64x512', 'd64: 32x32x256 < 8x64x512', 'd64: 32x32x256 < 32x16x256',
  'd64: 32x32x512s4 < 16x32x512b4', 'd64: 32x32x512s4 < 32x16x512', 'd64: 16x32x512s4 < 16x32x512b4', 'd128: 8x64x512 < 8x64x512b4',
  'd128: 8x64x1024 < 8x64x512b4', 'd128: 8x64x256 < 8x64x512b4',
];

const m = adapterModel(H200);
const sets = [64, 128].map((d) => {
  const at = rows.filter((r) => r.d === d && r.asked !== 'default');
  const { p, sizes } = rowProgram(at[0] as unknown as MeasuredRow)!;
  const { b, t } = at[0];
  const names = [...new Set(at.map((r) => show(r.schedule)))];
  const est = names.map((name) => {
    const same = at.filter((r) => show(r.schedule) === name);
    const ms = same.reduce((n, r) => n + r.medianMs, 0) / same.length;
    // priced as they ran: before the chunk kernels prefetched their staging (call 60)
    return { name, ms, estMs: estimatePlan(m, p, sizes, same[0].schedule, true, b, t, new Set(), false)!.us / 1e3 };
  });
  const pairs = est.flatMap((x) => est.filter((y) => y.ms > 1.1 * x.ms).map((y) => ({ key: `d${d}: ${x.name} < ${y.name}`, fast: x, slow: y })));
  return { d, p, sizes, b, t, est, pairs, variants: new Set(at.map((r) => r.variant)) };
});
const pairs = sets.flatMap((x) => x.pairs);
type Est = (typeof sets)[number]['est'][number];
const fmt = (x: Est) => `${x.name} ${x.ms.toFixed(3)} ms (est. ${x.estMs.toFixed(3)})`;

describe('the schedule model against elu_dwconv around its picks (bench/results/h200-around-picks.json)', () => {
  it('prints each schedule beside its estimate and the pairs it ranks the wrong way round', () => {
    for (const s of sets) console.log(`d ${s.d}:\n${[...s.est].sort((x, y) => x.ms - y.ms).map(fmt).join('\n')}`);
    console.log(`misranked (over 10 % apart): ${pairs.filter((q) => !(q.fast.estMs < q.slow.estMs)).map((q) => q.key).join(', ') || 'none'}`);
    for (const s of sets) expect([...s.variants]).toEqual(['elu_dwconv']);
    expect(pairs.length).toBeGreaterThan(90);
  });

  checkRanking(pairs, KNOWN_MISRANKED, fmt);

  it.each(sets.map((s) => [s.d, s] as const))('d %s: picks the fused plan at the fastest schedule measured', (_, s) => {
    const choice = choosePlan(H200_PLAIN, s.p, s.sizes, {}, { b: s.b, t: s.t });
    const fastest = s.est.reduce((x, y) => (y.ms < x.ms ? y : x));
    expect(choice.fuse, choice.reason).toBe(true);
    // the plain kernel's pick: where the plan takes the candidate over spans (chunked/span-default.ts, which this
    // file did not time; h200-kernels.json holds it to its figure), the schedule it was weighed against
    const plain = choice.schedule.span ? chooseSchedule(H200_PLAIN, s.p, s.sizes, { b: s.b, t: s.t }) : choice.schedule;
    expect(show(plain), `${choice.reason}; fastest ${fmt(fastest)}`).toBe(fastest.name);
  });
});
