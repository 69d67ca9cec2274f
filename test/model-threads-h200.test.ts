// The schedule model against the workgroup sizes of calls 116 and 119 (bench/results/h200-threads.json), on a
// described H200 (no GPU): nine variants' plans at B 4 and B 8 (H 16, T 4096, D 64), each timed at 512 and 1024
// invocations on the same chunk and column tiles. For every such pair measured over 5 % apart, the size measured
// faster must have the lower estimate (test/helpers/schedule-ranking.ts; KNOWN_MISRANKED with it.fails).
//
// What the file taught: call 116 ran llama_linearized's and flash's unfused plans 4–15 % faster at 1024 than at 512
// in all eight pairs, which the model (a lone 512-thread workgroup with room for another at its room rate) ranked the
// other way round. The cause was their group term's kernel, not the rate: it staged and scored the mask's 63 rows
// before every chunk, a 16 × 79 score tile, three passes of 512 invocations and two of 1024. A chunk that divides
// the group reaches back at most G − C rows (layout.ts groupReach): at 48 rows the tile is 16 × 64, both sizes ran
// within 1–5 % of each other (call 119, whose figures replace call 116's for the two variants) and 32 × 32 at 512
// invocations, which the model ranks first at B 4, ran fastest. The room rate stayed as it was. Call 126 re-timed
// the two variants' rows after their key rows were padded against bank conflicts and the unfused plan's elementwise
// kernels sped up (llama b 4 32 × 32 × 512: 3.13 → 1.94 ms); the model's estimates for them are now 1.5–2× the
// measured times (until BOUNDED_SCORE_OPS), and its picks kept their places; flash's at B 4 moved to the fastest tile
// once a past_groups term priced no score tile where its chunk divides its groups (call 127).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkRanking } from './helpers/schedule-ranking.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { estimatePlan } from '../backends/wgsl/fusion-model.ts';
import { adapterModel } from '../src/runtime/adapter-model.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import { H200, rowProgram, type MeasuredRow } from '../bench/model-fit.ts';

interface Row { variant: string; b: number; h: number; t: number; d: number; schedule: ChunkSchedule; asked: string; plan: 'fused' | 'prologue' | 'unfused'; prologueNodes?: number[]; medianMs: number; errVsOracle: number }

const rows = (JSON.parse(readFileSync('bench/results/h200-threads.json', 'utf8')) as { rows: Row[] }).rows;
const m = adapterModel(H200);
const tile = (r: Row) => `b${r.b} ${r.variant} ${r.plan} ${r.schedule.chunk}x${r.schedule.cols}`;
const est = rows.map((r) => {
  const { p, sizes } = rowProgram(r as unknown as MeasuredRow)!;
  const e = estimatePlan(m, p, sizes, r.schedule, r.plan !== 'unfused', r.b, r.t, new Set(r.prologueNodes ?? []));
  return { ...r, name: `${r.asked} ${r.schedule.threads}`, ms: r.medianMs, estMs: e!.us / 1e3 };
});
type Est = (typeof est)[number];
const fmt = (x: Est) => `${x.asked} ${x.ms.toFixed(3)} ms (est. ${x.estMs.toFixed(3)})`;
const pairs = est.flatMap((x) =>
  est.filter((y) => tile(y) === tile(x) && y.schedule.threads !== x.schedule.threads && y.ms > 1.05 * x.ms).map((y) => ({ key: `${tile(x)}: ${x.schedule.threads} < ${y.schedule.threads}`, fast: x, slow: y })),
);

/**
 * Pairs (faster < slower, over 5 % apart) the model ranks the wrong way round today: cosformer's fused kernel (two
 * prefix terms' registers: one workgroup a unit at either size, estimated alike) ran 1.25× and 1.40× faster at 512;
 * gla's fused 16×64 5 % faster at 1024 (its per-feature gate's products read workgroup memory). Neither moves a pick.
 */
const KNOWN_MISRANKED = ['b4 cosformer fused 16x32: 512 < 1024', 'b8 cosformer fused 8x64: 512 < 1024', 'b8 gla fused 16x64: 1024 < 512'];

/** The model's pick for the two variants whose tiles the halo moved, against the fastest tile of the file. */
const PICK_SLACK = 0.05;
/**
 * None. flash at B 4 picked 16×32×512, 10.8 % over 32×32×512 in call 126's rows (2.003 against 1.807 ms); since its
 * past_groups term prices no score tile where the chunk divides its groups (analysis.ts scoresInChunk, which call 127
 * timed: 32×32×512 1.57 ms) the model picks 32×32×512.
 */
const KNOWN_SLOW_PICKS: string[] = [];
const picks = ([[4, 'llama_linearized'], [8, 'llama_linearized'], [4, 'flash'], [8, 'flash']] as const).map(([b, variant]) => {
  const at = est.filter((r) => r.b === b && r.variant === variant);
  const { p, sizes } = rowProgram(at[0] as unknown as MeasuredRow)!;
  // (the unfused plan's pick: since call 182 their default at B 4 and 8 is the fused kernel with the state in lanes'
  // registers, test/model-picks-h200.test.ts; the tiles here are the unfused plan's)
  const c = choosePlan(H200, p, sizes, { fuse: false }, { b, t: 4096 });
  const s = c.schedule;
  const picked = at.find((r) => r.plan === (c.fuse ? 'fused' : 'unfused') && r.schedule.chunk === s.chunk && r.schedule.cols === s.cols && r.schedule.threads === s.threads);
  const fastest = at.reduce((x, y) => (y.ms < x.ms ? y : x));
  return { key: `b${b} ${variant}`, c, picked, fastest };
});

describe('the schedule model against 512 and 1024 invocations (bench/results/h200-threads.json)', () => {
  it('has every row checked against the float64 oracle and both sizes of every tile', () => {
    for (const r of rows) expect(r.errVsOracle, tile(r)).toBeLessThan(1e-6);
    for (const r of rows) expect(rows.filter((y) => tile(y) === tile(r)).map((y) => y.schedule.threads).sort(), tile(r)).toEqual([1024, 512]);
    console.log(`misranked (over 5 % apart): ${pairs.filter((q) => !(q.fast.estMs < q.slow.estMs)).map((q) => q.key).join(', ') || 'none'}`);
    expect(pairs.length).toBeGreaterThan(20);
  });

  checkRanking(pairs, KNOWN_MISRANKED, fmt);

  it.each(picks.map((x) => [x.key, x] as const))('%s: picks a tile the file measured', (_, x) => {
    expect(x.picked, x.c.reason).toBeDefined();
  });

  const slack = (x: (typeof picks)[number]) => expect(x.picked!.ms, `picked ${fmt(x.picked!)}; fastest ${fmt(x.fastest)}`).toBeLessThanOrEqual(x.fastest.ms * (1 + PICK_SLACK));
  it.each(picks.filter((x) => !KNOWN_SLOW_PICKS.includes(x.key)).map((x) => [x.key, x] as const))('%s: the pick is the fastest tile or within 5 % of it', (_, x) => slack(x));
  it.fails.each(picks.filter((x) => KNOWN_SLOW_PICKS.includes(x.key)).map((x) => [x.key, x] as const))('%s: the pick is within 5 % of the fastest tile (not yet: KNOWN_SLOW_PICKS)', (_, x) => slack(x));
});
