// The small-M, rows and skinny choosers' picks for a large GPU (an H200's limits: the shapes bench/small-m.ts timed, LLaMA-7B's
// and the Medusa heads'; the skinny kernel's from 9 rows where matmulPathFor places it) fit its limits and WebGPU's defaults, and `tuning` reproduces each. matmul-picks-*.test.ts
// run the picks against float64; their speed is the bench's business (bench/results/h200-small-m-*.json).
import { describe, expect, it } from 'vitest';
import { matmulKernel, type MatmulKernel } from '../backends/wgsl/matmul.ts';
import { chooseSkinny, skinnySweep } from '../backends/wgsl/matmul-skinny-choice.ts';
import { skinnyThreads, skinnyWorkgroupBytes } from '../backends/wgsl/matmul-skinny.ts';
import { H200, problem, ROWS, SHAPES, WEBGPU_DEFAULT } from './helpers/projections.ts';

describe('the small-M, rows and skinny choosers at real shapes', () => {
  it('pick a kernel within an H200\'s and WebGPU\'s default limits for every projection and row count, and `tuning` picks it again', () => {
    for (const target of [H200, WEBGPU_DEFAULT]) {
      for (const [model, projections] of SHAPES) {
        for (const p of projections) {
          for (const M of ROWS) {
            const what = `${target.adapterName}, ${model} ${p.name} M=${M}`;
            let k: MatmulKernel | undefined;
            expect(() => (k = matmulKernel(target, problem(p, M))), what).not.toThrow();
            if (!k) continue;
            expect(k.path, what).not.toBe('tiled');
            const again = matmulKernel(target, problem(p, M), k.tuning);
            expect(again.kernel, what).toBe(k.kernel);
            expect(again.code, what).toBe(k.code);
          }
        }
      }
    }
  });

  it("the skinny kernel's default knobs (both forms) and every knob set the bench sweeps fit an H200 (the defaults WebGPU's defaults too), and `tuning` picks each again", () => {
    for (const target of [H200, WEBGPU_DEFAULT]) {
      for (const [model, projections] of SHAPES) {
        for (const p of projections) {
          for (const M of ROWS) {
            const what = `${target.adapterName}, ${model} ${p.name} M=${M}`;
            const sets = [{}, { stageWeights: true }, { stageWeights: false }, ...(target === H200 && M > 1 ? skinnySweep(target, problem(p, M)) : [])];
            if (target === H200 && M > 1) expect(sets.length, what).toBeGreaterThan(3);
            for (const skinny of sets) {
              let k: MatmulKernel | undefined;
              expect(() => (k = matmulKernel(target, problem(p, M), { path: 'skinny', skinny })), `${what} ${JSON.stringify(skinny)}`).not.toThrow();
              if (!k) continue;
              const t = k.tuning.skinny!;
              // The variant the tuning names, whatever the defaults it leaves out.
              const v = chooseSkinny(target, problem(p, M), t);
              expect(skinnyWorkgroupBytes(v), what).toBeLessThanOrEqual(target.limits.maxComputeWorkgroupStorageSize);
              expect(skinnyThreads(v), what).toBeLessThanOrEqual(target.limits.maxComputeInvocationsPerWorkgroup);
              const again = matmulKernel(target, problem(p, M), k.tuning);
              expect(again.code, what).toBe(k.code);
            }
          }
        }
      }
    }
  });
});
