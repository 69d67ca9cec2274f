// defaultFitting (backends/wgsl/chunk-schedules.ts) sizes the heuristic's favourite schedules one at a time until
// one fits, where the playground used to size every candidate on each keystroke. Its answer must be the one the
// full enumeration gives: defaultSchedule over candidateSchedules, filtered the same way, for every shipped
// variant, at small and model sizes, under WebGPU's default limits and an H200's, on software and hardware.
import { describe, expect, it } from 'vitest';
import { candidateSchedules, defaultFitting, defaultSchedule, type ScheduleLimits } from '../backends/wgsl/chunk-schedules.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { shippedVariants } from '../examples/playground/build.ts';
import { runPasses } from '../passes/pipeline.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { axisSizes } from '../src/inputs.ts';

const LIMITS: Record<string, ScheduleLimits> = {
  webgpu: { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 },
  h200: { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 },
  tight: { maxComputeWorkgroupStorageSize: 4096, maxComputeInvocationsPerWorkgroup: 128 },
};
const AXES = [{ h: 2, d: 16, e: 16 }, { h: 16, d: 64, e: 64 }];
const ACCEPT: Record<string, (s: ChunkSchedule) => boolean> = {
  any: () => true,
  'chunk ≤ 8': (s) => s.chunk <= 8,
  'chunk 16': (s) => s.chunk === 16,
};

describe('defaultFitting', () => {
  for (const v of shippedVariants()) {
    it(`${v.path}: equals defaultSchedule over every candidate that fits`, () => {
      const p = runPasses(compileSource(v.text, v.path));
      let found = 0;
      for (const axes of AXES) {
        const sizes = axisSizes(p, axes);
        for (const [ln, limits] of Object.entries(LIMITS)) {
          const cands = candidateSchedules(limits, p, sizes);
          for (const software of [true, false]) {
            for (const [an, accept] of Object.entries(ACCEPT)) {
              const want = defaultSchedule(cands.filter(accept), software);
              expect(defaultFitting(limits, p, sizes, software, accept), `${JSON.stringify(axes)} ${ln} software ${software} ${an}`).toEqual(want);
              if (want) found++;
            }
          }
        }
      }
      expect(found).toBeGreaterThan(0);
    });
  }
});
