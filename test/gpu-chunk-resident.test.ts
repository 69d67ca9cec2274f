// The chunk kernel with its prefix state in subgroup lanes' registers (LowerOptions.resident, the `rs` schedule
// switch: chunked/resident.ts). Generated for the adapter's subgroup size SG (lavapipe's 8: F = 4·SG = 32 features,
// 4 a lane; 2·SG and SG too), checked against the float64 oracle with 1, 2 and 4 columns a subgroup (4: the values
// staged as vec4), a last chunk shorter than the others, a last column tile past the value axis, segments, no decay
// (elu, relu, elu_dwconv with its convolution's halo), a scalar one (retnet, mamba2) and one per feature (gla); decoding continues from the state it exports; and it is refused, naming why, where it does not apply.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import type { ChunkSchedule } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { recurrentPlan } from '../backends/wgsl/recurrent.ts';
import { compileFile } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { PlanRunner } from '../src/runtime/executor.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';
import { expectDecodesFromPrefill } from './helpers/plan-calls.ts';
import { chunkScale, rsChunk } from './helpers/subgroups.ts';

const SG = (await gpu()).subgroupSize;

/**
 * Schedules at subgroup size sg: 1 column a subgroup (sg rows a reduction block), 2, 4 over a chunk of 4 rows at sg 8,
 * and 2 with the outputs register-blocked (2 columns an invocation sharing a row's denominator), two segmented, and 1
 * column a subgroup with 16 subgroups (more than the chunk's rows where sg < 16). A chunk must be a multiple of the
 * rows a reduction block takes, so past sg 8 each grows to the smallest allowed (rsChunk): lavapipe's 8 runs chunks of
 * 8 and 4, an NVIDIA GPU's 32 chunks of 32, 16 and 8.
 */
const schedules = (sg: number): ChunkSchedule[] => [
  { chunk: rsChunk(8, sg, 1), cols: 8, threads: 8 * sg },
  { chunk: rsChunk(8, sg, 2), cols: 16, threads: 8 * sg },
  { chunk: rsChunk(4, sg, 4), cols: 8, threads: 2 * sg },
  { chunk: rsChunk(8, sg, 2), cols: 16, threads: 8 * sg, block: 2 },
  // segments (the segment-state launch stores its registers, the output launch starts them from the scan)
  { chunk: rsChunk(8, sg, 2), cols: 16, threads: 8 * sg, segment: 2 },
  { chunk: rsChunk(4, sg, 4), cols: 8, threads: 2 * sg, segment: 3 },
  // 16 subgroups: at sg 8, more than the 8 rows (the rows' φ·z_prev go to the first 8, the rest reduce a clamped row unwritten)
  { chunk: rsChunk(8, sg, 1), cols: 16, threads: 16 * sg },
];

// The rest is skipped on a device without a fixed subgroup size: not silently on the one CI runs.
it('the device reports the adapter\'s fixed subgroup size (lavapipe: subgroups of 8)', async () => {
  const g = await gpu();
  const info = g.adapter.info as { subgroupMinSize?: number; subgroupMaxSize?: number };
  if (g.features.has('subgroups') && info.subgroupMinSize === info.subgroupMaxSize) expect(g.subgroupSize).toBe(info.subgroupMinSize);
  if (/llvmpipe|lavapipe/.test(g.adapterName)) expect(g.subgroupSize).toBe(8);
});

describe.skipIf(!SG)('the prefix state in subgroup lanes\' registers (rs)', () => {
  const sg = SG!;
  const F = 4 * sg;

  // (lavapipe compiles each kernel in seconds: every schedule once, the convolution's halo at each; 4, 2 and 1 features a lane)
  it.each([
    ['examples/paper/elu_dwconv.la', 4, 16, [0, 1, 2, 4]],
    ['examples/paper/elu.la', 4, 12, [1, 3, 5]],
    ['examples/paper/relu.la', 4, 16, [0, 6]],
    ['examples/variants/retnet.la', 4, 12, [2]],
    ['examples/variants/mamba2.la', 4, 12, [1]],
    ['examples/variants/gla.la', 4, 12, [1, 2]],
    ['examples/variants/gla.la', 2, 8, [0]],
    ['examples/paper/elu_dwconv.la', 2, 16, [1, 2, 3]],
    ['examples/variants/retnet.la', 2, 8, [0]],
    ['examples/paper/elu.la', 1, 16, [1]],
  ] as const)('%s (F = %i·SG, e = %i) equals the oracle over a partial last chunk, at schedules %j', async (file, fl, e, which) => {
    const g = await gpu();
    const c = compileFile(file);
    const axes = { h: 2, d: fl * sg, e };
    const sizes = axisSizes(c.source, axes);
    for (const schedule of which.map((k) => schedules(sg)[k])) {
      const plan = lowerChunked(c.program, sizes, { fuse: true, schedule, resident: true, subgroupSize: sg });
      const code = plan.kernels[0].code;
      expect(code.startsWith('enable subgroups;')).toBe(true);
      expect(code).not.toMatch(/var<workgroup> S0/);
      const runner = await PlanRunner.create(g, plan);
      for (const t of [45 * chunkScale(sg), 3]) {
        const x = makeInputs(c.source, { b: 2, t, axes, seed: 40 + t });
        expectRelClose((await runner.run(x, 2, t)).data, evaluateParallel(c.source, x).data, 1e-4, `${file} rs ${JSON.stringify(schedule)} t=${t}`);
      }
    }
  });

  it('llama_linearized (past groups of a chunk, φ read by the local term as its query feature, so staged f32) equals the oracle', async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/llama_linearized.la', { sizes: { C: 8 } });
    const axes = { h: 2, d: F, e: 8 };
    const plan = lowerChunked(c.program, axisSizes(c.source, axes), { fuse: true, schedule: schedules(sg)[1], resident: true, subgroupSize: sg });
    expect(plan.kernels[0].code).toMatch(/var<workgroup> phi0: array<f32/);
    const runner = await PlanRunner.create(g, plan);
    for (const t of [45 * chunkScale(sg), 3]) {
      const x = makeInputs(c.source, { b: 2, t, axes, seed: 60 + t });
      expectRelClose((await runner.run(x, 2, t)).data, evaluateParallel(c.source, x).data, 1e-4, `llama_linearized rs t=${t}`);
    }
  });

  // (e = 12 over tiles of 8 columns: the last tile's lanes past the value axis export nothing, stage zeros)
  it.each([
    ['examples/paper/elu_dwconv.la', 4, 8, 1],
    ['examples/variants/retnet.la', 4, 8, 2],
    ['examples/paper/elu_dwconv.la', 2, 12, 2],
    ['examples/paper/elu_dwconv.la', 4, 12, 5],
    ['examples/variants/gla.la', 4, 8, 2],
  ] as const)('decoding continues from the state an rs prefill of %s exports (F = %i·SG, e = %i, schedule %i)', async (file, fl, e, which) => {
    const g = await gpu();
    const c = compileFile(file);
    const axes = { h: 2, d: fl * sg, e };
    const sizes = axisSizes(c.program, axes);
    const step = await PlanRunner.create(g, recurrentPlan(c.program, sizes));
    const schedule = schedules(sg)[which];
    const prefill = await PlanRunner.create(g, lowerChunked(c.program, sizes, { fuse: true, schedule, exportState: true, resident: true, subgroupSize: sg }));
    for (const t0 of [3, 11, 19].map((t) => t * chunkScale(sg))) await expectDecodesFromPrefill(g, c.source, prefill, step, { axes, t0, steps: 3, seed: 500 + t0, what: `${file} rs prefill ${t0} ${JSON.stringify(schedule)}` });
  });

  it('is refused, naming why, where it does not apply', () => {
    const lower = (file: string, d: number, schedule: ChunkSchedule, subgroupSize: number | null = sg) => () => {
      const c = compileFile(file);
      lowerChunked(c.program, axisSizes(c.source, { h: 2, d, e: 8 }), { fuse: true, schedule, resident: true, subgroupSize: subgroupSize ?? undefined });
    };
    const s = schedules(sg)[0];
    // a past_groups term whose groups fit a chunk keeps no open group, so a decoding state cannot keep its last group apart
    expect(() => {
      const c = compileFile('examples/paper/flash.la', { sizes: { C: 8 } });
      lowerChunked(c.program, axisSizes(c.source, { h: 2, d: F, e: 8 }), { fuse: true, schedule: s, resident: true, subgroupSize: sg, exportState: true });
    }).toThrow(/rs .* does not apply: term \w+ exports its last group apart .* but its groups fit a chunk/);
    expect(lower('examples/paper/elu.la', F - 4, s)).toThrow(new RegExp(`has ${F - 4} features; a lane holds 1, 2 or 4 of them, so it needs F = ${sg}, ${2 * sg} or ${F}`));
    expect(lower('examples/paper/elu.la', F, s, null)).toThrow(/no fixed subgroup size/);
    expect(lower('examples/paper/elu.la', F, { ...s, cols: 64 })).toThrow(/64 columns over 8 subgroups .* is not 1, 2 or 4 columns a subgroup/);
    expect(lower('examples/paper/elu.la', F, { ...s, chunk: sg / 2 })).toThrow(new RegExp(`chunk ${sg / 2} is not a multiple of the ${sg} rows a reduction block takes`));
    expect(lower('examples/variants/softmax.la', F, s)).toThrow(/does not apply: softmax attention/);
  });
});
