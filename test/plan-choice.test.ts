// Fused or unfused on a hardware adapter (src/runtime/plan-choice.ts), without one: the choice is a pure function
// of the adapter's name and limits, so a described H200 stands in for the device. Every choice must lower.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { axisSizes } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
import { tuningCandidates } from '../src/runtime/schedule.ts';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';

process.env.LINATTN_CACHE_DIR = mkdtempSync(join(tmpdir(), 'linattn-plan-choice-')); // no autotuned winner
const H200 = {
  adapterName: 'NVIDIA H200 (nvidia, vulkan)',
  isSoftware: false,
  limits: { maxComputeWorkgroupStorageSize: 48 * 1024, maxComputeInvocationsPerWorkgroup: 1024 },
} as unknown as Gpu;
const shape = { b: 4, t: 4096 };
const variant = (name: string, d = 64) => {
  const c = compileFile(`examples/${name}.la`);
  return { p: c.program, sizes: axisSizes(c.source, { h: 16, d, e: d }) };
};

describe('plan choice on a hardware adapter', () => {
  it('takes hedgehog fused with its softmax features in a prologue, shows the three estimates and each node\'s, and lowers what it chose', () => {
    const { p, sizes } = variant('variants/hedgehog');
    const c = choosePlan(H200, p, sizes, {}, shape);
    expect(c.fuse).toBe(true);
    expect(c.prologue?.size).toBe(2);
    expect(c.reason).toMatch(/fused with a prologue: est\. fused [\d.]+ ms, fused with a prologue of 2 feature kernel\(s\) [\d.]+ ms, unfused [\d.]+ ms/);
    for (const id of c.prologue!) expect(c.reason).toMatch(new RegExp(`%${id} at prologue \\(inline [\\d.]+ µs > prologue [\\d.]+ µs\\)`));
    const plan = lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule, prologue: c.prologue });
    // the feature kernels first, then the chunk kernel (its segment-state and scan launches before it when segmented)
    const labels = plan.kernels.map((k) => k.label);
    expect(labels.slice(0, 2)).toEqual([...c.prologue!].sort((a, b) => a - b).map((id) => `hedgehog.feature%${id}`));
    expect(labels.slice(2).every((l) => !l.includes('.feature%'))).toBe(true);
    expect(labels.at(-1)).toBe('hedgehog.chunked');
  });

  it('obeys --prologue none and all', () => {
    const { p, sizes } = variant('variants/hedgehog');
    const none = choosePlan(H200, p, sizes, { prologue: 'none' }, shape);
    expect(none.prologue?.size ?? 0).toBe(0);
    expect(none.fuse).toBe(false); // without its prologue, hedgehog's fused kernel loses to the unfused plan
    const all = choosePlan(H200, p, sizes, { fuse: true, prologue: 'all' }, shape);
    expect(all.fuse).toBe(true);
    expect(all.prologue?.size).toBe(2);
    expect(all.reason).toMatch(/every feature node \(2\) in a prologue, as asked/);
  });

  it('obeys --fuse and --no-fuse, each at a schedule its plan fits', () => {
    const { p, sizes } = variant('paper/elu_dwconv');
    for (const fuse of [true, false]) {
      const c = choosePlan(H200, p, sizes, { fuse }, shape);
      expect(c.fuse).toBe(fuse);
      expect(c.reason).toMatch(/fused [\d.]+ ms, unfused [\d.]+ ms/);
      expect(lowerChunked(p, sizes, { fuse, schedule: c.schedule }).kernels.length).toBeGreaterThan(0);
    }
  });

  it('each kind of variant (prefix, decayed, gated, grouped, window, noncausal) at d 16 gets a plan that lowers; based at d 64 fits neither plan and takes the feature-tiled one', () => {
    for (const name of ['paper/elu', 'paper/cosformer_aug', 'paper/flash', 'paper/llama_linearized', 'paper/performer', 'paper/leaky_dwconv', 'paper/elu_dwconv', 'variants/gla', 'variants/mamba2', 'variants/based']) {
      const { p, sizes } = variant(name, 16);
      const c = choosePlan(H200, p, sizes, {}, { b: 1, t: 1024 });
      expect(lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule, ...(c.prologue && { prologue: c.prologue }) }).kernels.length, name).toBeGreaterThan(0);
    }
    const { p, sizes } = variant('variants/based');
    const c = choosePlan(H200, p, sizes, {}, shape);
    expect(c.reason).toMatch(/neither the fused kernel nor every unfused term kernel fits in 49152 bytes/);
    expect(lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule, featureTile: c.featureTile }).schedule.featureTile).toBe(c.featureTile);
  });

  it('has the autotuner start from the model\'s fused default and try every candidate', () => {
    const { p, sizes } = variant('paper/elu_dwconv');
    const cands = candidateSchedules(H200.limits, p, sizes);
    const order = tuningCandidates(H200, p, sizes, cands, shape);
    expect(order[0]).toEqual(choosePlan(H200, p, sizes, { fuse: true }, shape).schedule);
    expect(new Set(order)).toEqual(new Set(cands));
  });
});
