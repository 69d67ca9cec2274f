// The schedule model against call 116's workgroup sizes (bench/results/h200-threads.json), on a described H200 (no
// GPU): nine variants' plans at B 4 and B 8 (H 16, T 4096, D 64), each timed at 512 and 1024 invocations on the same
// chunk and column tiles. For every such pair measured over 5 % apart, the size measured faster must have the lower
// estimate (test/helpers/schedule-ranking.ts; KNOWN_MISRANKED with it.fails).
//
// The pairs that mattered: llama_linearized's and flash's unfused plans, whose first kernel is a bounded (quadratic)
// term's, ran 4–15 % faster at 1024 in all eight pairs, and the model, which gave a lone 512-thread workgroup with
// room for another the room rate for all of its products, picked 512 for both at B 4 (llama 4.260 ms against 3.905)
// and flash's 8×64×512 at B 8 (6.955 against 6.105). Those terms' products now take the lone rate
// (schedule-model.ts launchCost `scoreOps`); every other variant's kernels are priced as before.
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
 * gla's fused 16×64 5 % faster at 1024 (its per-feature gate's products, like a bounded term's, read workgroup memory);
 * llama_linearized's unfused 16×32 at B 8 (256 workgroups: two 512-thread ones share a unit, not the room case) 9 %
 * faster at 1024. None of them moves a pick: the picks sit at other tiles (test/model-picks-h200.test.ts).
 */
const KNOWN_MISRANKED = ['b4 cosformer fused 16x32: 512 < 1024', 'b8 cosformer fused 8x64: 512 < 1024', 'b8 gla fused 16x64: 1024 < 512', 'b8 llama_linearized unfused 16x32: 1024 < 512'];

describe('the schedule model against 512 and 1024 invocations (bench/results/h200-threads.json)', () => {
  it('has every row checked against the float64 oracle and both sizes of every tile', () => {
    for (const r of rows) expect(r.errVsOracle, tile(r)).toBeLessThan(1e-6);
    for (const r of rows) expect(rows.filter((y) => tile(y) === tile(r)).map((y) => y.schedule.threads).sort(), tile(r)).toEqual([1024, 512]);
    console.log(`misranked (over 5 % apart): ${pairs.filter((q) => !(q.fast.estMs < q.slow.estMs)).map((q) => q.key).join(', ') || 'none'}`);
    expect(pairs.length).toBeGreaterThan(25);
  });

  checkRanking(pairs, KNOWN_MISRANKED, fmt);

  // The picks of the two variants the pairs moved: the unfused plan at 1024 invocations, the fastest of the file's.
  it.each([
    [4, 'llama_linearized', '16x32x1024'],
    [8, 'llama_linearized', '8x64x1024'],
    [4, 'flash', '16x32x1024'],
    [8, 'flash', '8x64x1024'],
  ] as const)('b %s %s: picks the unfused plan at %s, the fastest measured', (b, variant, want) => {
    const at = est.filter((r) => r.b === b && r.variant === variant);
    const { p, sizes } = rowProgram(at[0] as unknown as MeasuredRow)!;
    const c = choosePlan(H200, p, sizes, {}, { b, t: 4096 });
    expect(c.fuse, c.reason).toBe(false);
    expect(`${c.schedule.chunk}x${c.schedule.cols}x${c.schedule.threads}`, c.reason).toBe(want);
    const fastest = at.reduce((x, y) => (y.ms < x.ms ? y : x));
    expect(fastest.asked).toBe(`u:${want}`);
  });
});
