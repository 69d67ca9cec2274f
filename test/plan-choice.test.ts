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
  it('takes hedgehog unfused, shows both estimates, and lowers what it chose', () => {
    const { p, sizes } = variant('variants/hedgehog');
    const c = choosePlan(H200, p, sizes, {}, shape);
    expect(c.fuse).toBe(false);
    expect(c.reason).toMatch(/unfused est\. [\d.]+ ms < fused [\d.]+ ms/);
    expect(lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule }).form).toBe('unfused');
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
      expect(lowerChunked(p, sizes, { fuse: c.fuse, schedule: c.schedule }).kernels.length, name).toBeGreaterThan(0);
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
