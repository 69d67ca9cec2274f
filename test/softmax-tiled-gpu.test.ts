// The register-tiled flash kernel (backends/wgsl/softmax-tiled.ts) against the float64 oracle on lavapipe: softmax.la
// with logits up to ±80 and LLaMA's rope(q)·rope(k) / √D (llama3 frequency scaling), at every tiled shape the
// schedules offer at 16 value columns (64 or 32 query rows; 4 or 8 value columns and 1 or 2 logit columns a thread;
// keys and values in one workgroup array, held in registers a phase early, and in two),
// over t = 45 and 130 (a ragged last query block; key blocks of 2 to 8 with a ragged last one), b = 2; a prefill that exports its key/value
// cache is decoded on from by the decoding kernel; the matcher takes only a scaled dot product of one query and one
// key feature, and a schedule that names the tiled kernel for any other logit is refused.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { analyseSoftmax } from '../backends/wgsl/softmax-analysis.ts';
import { shapeOf, tiledLogit } from '../backends/wgsl/softmax-tiled.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill } from './helpers/plan-calls.ts';

const AXES = { h: 2, d: 8, e: 16 };
const variants = [
  ['softmax', compileFile('examples/variants/softmax.la', { sizes: { D: 8 } })],
  ['llama rope', compileFile('examples/models/llama/softmax_rope.la', { sizes: { D: 8 }, rope: { theta: 50, scaling: { kind: 'llama3', factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 16 } } })],
] as const;
const LIMITS = { maxComputeWorkgroupStorageSize: 16384, maxComputeInvocationsPerWorkgroup: 256 };

/** The largest |q·k| / √d over the causal pairs (rope rotates pairs of features, so it keeps their scale). */
function largestLogit(x: ReturnType<typeof makeInputs>, t: number): number {
  const { h, d } = AXES;
  let largest = 0;
  for (let s = 0; s < 2; s++) for (let i = 0; i < t; i++) for (let j = 0; j <= i; j++) for (let n = 0; n < h; n++) {
    let dot = 0;
    for (let f = 0; f < d; f++) dot += x.q.data[((s * t + i) * h + n) * d + f] * x.k.data[((s * t + j) * h + n) * d + f];
    largest = Math.max(largest, Math.abs(dot) / Math.sqrt(d));
  }
  return largest;
}

describe('the register-tiled flash kernel', () => {
  it.each(variants)('%s: every tiled shape equals the oracle over ragged blocks, logits up to ±80', async (_, c) => {
    const g = await gpu();
    const sizes = axisSizes(c.source, AXES);
    expect(tiledLogit(analyseSoftmax(c.program, sizes))).toBeDefined();
    const tiled = candidateSchedules(LIMITS, c.program, sizes).filter((s) => s.block);
    expect(tiled.map((s) => `${s.chunk}x${s.threads}b${s.block}`)).toEqual(['64x64b2', '64x64b1', '64x32b2', '64x32b1', '32x32b2', '32x32b1']); // 4 value columns a thread (16 / 4 threads a row group), then 8
    for (const t of [45, 130]) {
      const x = makeInputs(c.source, { b: 2, t, axes: AXES, seed: t });
      for (let i = 0; i < x.q.data.length; i++) x.q.data[i] *= 48;
      const ref = evaluateParallel(c.source, x);
      for (const schedule of tiled) {
        // keys and values in one workgroup array, each held in registers a phase early (the default), and in two
        for (const shareKV of [true, false]) {
          const runner = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule, ...(!shareKV && { shareKV }) }));
          expect(runner.plan.kernels[0].code).toMatch(shareKV ? /register-tiled flash kernel .* \(keys and values in one array, in turn\)/s : /register-tiled flash kernel/);
          expectRelClose((await runner.run(x, 2, t)).data, ref.data, 1e-5, `${c.program.name} t ${t} ${JSON.stringify(schedule)}${shareKV ? ' shared K/V' : ''}`);
        }
      }
      expect(largestLogit(x, t)).toBeGreaterThan(60);
    }
  });

  it('on 48 KB of workgroup memory d 128 takes 32 rows × 4 value columns, d 64 64 rows × 2 logits, both with one key/value array (bench/results/h200-softmax-shared-kv.json)', () => {
    const first = (D: number) => {
      const c = compileFile('examples/variants/softmax.la', { sizes: { D } });
      const sizes = axisSizes(c.source, { h: 16, d: D, e: D });
      const s = candidateSchedules({ maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 }, c.program, sizes)[0];
      return { tag: `${s.chunk}x${s.cols}x${s.threads}b${s.block}`, shared: shapeOf(analyseSoftmax(c.program, sizes), s).shareKV };
    };
    // H200, b 4 h 16 t 4096 (calls 134–135): d 128 32x128x256b1 18.56 ms (32x128x128b2 18.38; with two arrays, staged
    // at the top of each block, the best shape ran 40.58); d 64 64x64x256b2 8.03 (two arrays 8.99; 32x64x128b2 7.94).
    expect(first(128)).toEqual({ tag: '32x128x256b1', shared: true });
    expect(first(64)).toEqual({ tag: '64x64x256b2', shared: true });
  });

  it('decoding continues from the key/value cache a tiled prefill exports', async () => {
    const g = await gpu();
    const [, c] = variants[1];
    const sizes = axisSizes(c.source, AXES);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes, 80));
    for (const schedule of [{ chunk: 64, cols: 16, threads: 64, block: 2 }, { chunk: 64, cols: 16, threads: 32, block: 1 }, { chunk: 32, cols: 16, threads: 32, block: 1 }]) {
      const prefill = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule, exportState: true, maxLength: 80 }));
      for (const t0 of [9, 70]) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes: AXES, t0, steps: 3, seed: 300 + t0, what: `tiled prefill ${JSON.stringify(schedule)} of ${t0}` });
    }
  });

  it('takes only a scaled q·k logit, and refuses a tiled schedule for any other', () => {
    const other = compileFile('examples/variants/softmax.la', { sizes: { D: 8 } });
    const sizes = axisSizes(other.source, { h: 2, d: 8, e: 3 });
    // three value columns: no tiled shape (columns in fours), so the per-logit kernel's schedules alone
    expect(candidateSchedules(LIMITS, other.program, sizes).some((s) => s.block)).toBe(false);
    expect(() => lowerChunked(other.program, sizes, { fuse: true, schedule: { chunk: 64, cols: 3, threads: 48, block: 2 } })).toThrow(/tiled flash kernel needs value columns in fours/);
    const s16 = axisSizes(other.source, AXES);
    expect(() => lowerChunked(other.program, s16, { fuse: true, schedule: { chunk: 64, cols: 16, threads: 128, block: 2 } })).toThrow(/4 or 2 threads per 4 rows \(4 or 8 value columns a thread\); got chunk 64, threads 128, b2/);
  });
});
