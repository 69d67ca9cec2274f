// The fused plan with a feature prologue (lower.ts's `prologue`: feature nodes materialised by feature kernels,
// read by the one chunk kernel) against the float64 parallel oracle, for every causal variant with feature nodes:
// every feature node in the prologue, and the set the H200's model chooses at b 4, h 16, t 4096, d 64; a segmented
// schedule where the variant has one; the decoding state its kernel exports, decoded on step by step (the
// gpu-prefill-state.test.ts pattern); and a training forward's kept n and z (keepNormalisers), which must equal
// the all-inline kernel's. The chunk kernel must not compute a prologue node itself.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';
import { segmentable, type ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { featureNodes } from '../backends/wgsl/feature-nodes.ts';
import { bestHybrid } from '../backends/wgsl/fusion-model.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { hardwareModel } from '../backends/wgsl/schedule-model.ts';
import { isSoftmaxProgram } from '../backends/wgsl/softmax-analysis.ts';
import type { Id } from '../src/ir/types.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill, keptParts } from './helpers/plan-calls.ts';
import { DECODABLE } from './helpers/variants.ts';

const AXES = { h: 2, d: 4, e: 6 };
const SHAPE = { b: 2, t: 13 }; // t not a multiple of the chunk, b > 1
const SCHEDULE: ChunkSchedule = { chunk: 4, cols: 4, threads: 64 }; // cols < e: two column tiles read each feature
const H200 = hardwareModel(132, 48 * 1024);
const LIMITS = { maxComputeWorkgroupStorageSize: 48 * 1024, maxComputeInvocationsPerWorkgroup: 1024 };

const VARIANTS = DECODABLE.filter((f) => {
  const c = compileFile(f);
  return !isSoftmaxProgram(c.program) && featureNodes(c.program).length > 0;
});

/** The prologue the H200's model chooses for the variant at b 4, h 16, t 4096, d 64 (node ids do not depend on sizes). */
function h200Prologue(file: string): ReadonlySet<Id> {
  const c = compileFile(file);
  const sizes = axisSizes(c.source, Object.fromEntries(Object.entries({ h: 16, d: 64, e: 64 }).filter(([a]) => c.source.axes[a]?.kind === 'free')));
  return bestHybrid(H200, c.program, sizes, candidateSchedules(LIMITS, c.program, sizes), 4, 4096)?.prologue ?? new Set();
}


describe.each(VARIANTS)('%s', (file) => {
  const c = compileFile(file);
  const sizes = axisSizes(c.program, AXES);
  const all = new Set(featureNodes(c.program));
  const chosen = h200Prologue(file);

  it('fused with a prologue equals the oracle: every feature node, the H200 model\'s choice, and segmented where it can be', async () => {
    const g = await gpu();
    const seed = 31 * SHAPE.b + SHAPE.t;
    const x = makeInputs(c.source, { ...SHAPE, axes: AXES, seed });
    const ref = evaluateParallel(c.source, x);
    const cases: [string, ReadonlySet<Id>, ChunkSchedule][] = [['every feature node', all, SCHEDULE]];
    if (chosen.size && chosen.size < all.size) cases.push(["the H200 model's choice", chosen, SCHEDULE]);
    // segments start at a past_groups term's group starts (chunked/segments.ts: flash's and llama's 64 rows, one segment here)
    const sg = segmentable(c.program, sizes);
    if (sg) cases.push(['every feature node, segmented', all, { ...SCHEDULE, segment: Math.max(2, sg.align / SCHEDULE.chunk) }]);
    for (const [what, prologue, schedule] of cases) {
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule, prologue });
      expect(plan.kernels.filter((k) => k.label.includes('.feature%')).length, what).toBe(prologue.size);
      // ExprGen marks each node's statement `// %ID op`: in a chunk kernel a prologue node's is a load (of its
      // buffer when staged, of the staged array after, or of the register a prefetched staging loaded it into a
      // chunk earlier: `pf`, chunked/staging.ts), never an expression; and its buffer is read somewhere.
      const chunkCode = plan.kernels.filter((k) => /for \(var c: u32 = /.test(k.code)).map((k) => k.code).join('\n');
      for (const id of prologue) {
        for (const l of chunkCode.split('\n').filter((x) => new RegExp(`// %${id} `).test(x))) expect(l.trim(), `${what}: %${id} computed inline`).toMatch(/^let \w+ = (\w+\[[^;]*\]|pf(_\d+)?); \/\//);
        expect(chunkCode, `${what}: %${id} never read from its prologue buffer`).toContain(`feat_${id}[`);
      }
      const runner = await PlanRunner.create(g, plan);
      const o = await runner.run(x, SHAPE.b, SHAPE.t);
      expectRelClose(o.data, ref.data, 1e-4, `${file} ${what} seed ${seed}`);
    }
  });

  it.runIf(['paper/elu.la', 'paper/performer.la', 'variants/hedgehog.la'].some((n) => file.endsWith(n)))('a training forward with a prologue keeps the same n and z as with every feature inline', async () => {
    const g = await gpu();
    const seed = 77;
    const x = makeInputs(c.source, { ...SHAPE, axes: AXES, seed });
    const kept = async (prologue: ReadonlySet<Id>) => {
      return keptParts(g, await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule: SCHEDULE, keepNormalisers: true, prologue })), c, x, SHAPE);
    };
    const [inline, pro] = [await kept(new Set()), await kept(all)];
    expect(Object.keys(pro).length).toBeGreaterThan(1);
    expectRelClose(pro['out:o'], evaluateParallel(c.source, x).data, 1e-4, `${file} o, seed ${seed}`);
    for (const n of Object.keys(inline)) expectRelClose(pro[n], inline[n], 1e-5, `${file} ${n}, seed ${seed}`);
  });

  it('the prefill with every feature node in its prologue exports the state decoding continues from', async () => {
    const g = await gpu();
    const prefill = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule: SCHEDULE, exportState: true, prologue: all }));
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    for (const t0 of [3, 11]) {
      await expectDecodesFromPrefill(g, c.source, prefill, step, { axes: AXES, t0, steps: 3, seed: 500 + t0, what: `${file} prefill ${t0}` });
    }
  });
});
