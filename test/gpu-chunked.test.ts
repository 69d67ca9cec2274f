// The fused chunked kernel: one kernel for the paper's augmented layer, any schedule gives the same result,
// and it is causal on the GPU.
import { describe, expect, it } from 'vitest';
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { compileFile, runCompiled } from '../src/runtime/compiler.ts';
import { axisSizes, makeInputs } from '../src/inputs.ts';
import { candidateSchedules, defaultSchedule, tuningOrder } from '../backends/wgsl/chunk-schedules.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const AXES = { h: 2, d: 8, e: 8 };

describe('the fused chunked lowering', () => {
  it.each(['examples/paper/elu_dwconv.la', 'examples/paper/llama_linearized.la', 'examples/paper/cosformer_aug.la'])(
    '%s is one kernel per call, against several without fusion',
    (file) => {
      const c = compileFile(file);
      const sizes = axisSizes(c.source, AXES);
      const schedule = candidateSchedules({ maxComputeWorkgroupStorageSize: 1 << 16, maxComputeInvocationsPerWorkgroup: 256 }, c.program, sizes)[0];
      const fused = lowerChunked(c.program, sizes, { fuse: true, schedule });
      const unfused = lowerChunked(c.program, sizes, { fuse: false, schedule });
      expect(fused.kernels.length).toBe(1);
      expect(unfused.kernels.length).toBeGreaterThan(2);
    },
  );

  it('gives the same result under every schedule the autotuner may choose', async () => {
    const g = await gpu();
    for (const file of ['examples/paper/elu_dwconv.la', 'examples/paper/llama_linearized.la']) {
      const c = compileFile(file);
      const x = makeInputs(c.source, { b: 2, t: 45, axes: AXES, seed: 3 });
      const ref = evaluateParallel(c.source, x);
      const cands = candidateSchedules(g.limits, c.program, axisSizes(c.source, AXES));
      expect(cands.length).toBeGreaterThan(3);
      // Spread over the candidates: smallest and largest chunks and column tiles.
      const picks = [...new Map(cands.map((s) => [`${s.chunk}/${s.cols}/${s.segment ?? 0}`, s])).values()].filter((_, k, a) => k % Math.ceil(a.length / 6) === 0);
      for (const s of picks) {
        const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', schedule: s });
        expectRelClose(r.o.data, ref.data, 1e-4, `${file} schedule ${JSON.stringify(s)}`);
      }
    }
  });

  // The chunk kernel stages llama's ‖q‖ and ‖k‖ once per row (chunked/row-reductions.ts) and its φ, ψ and key
  // features read them back at their rows: ‖k‖ over the chunk and the group term's 56-row halo (its groups of 64
  // start at most 64 − 8 rows before a chunk of 8: layout.ts groupReach; the mask's own reach is 63). Odd
  // sizes (d 5, e 3, t 45 over chunks of 8) so no power of two hides a wrong row or offset.
  it('llama_linearized fused at d 5 and t 45 (norms staged per row, a partial last chunk) equals the oracle', async () => {
    const g = await gpu();
    const c = compileFile('examples/paper/llama_linearized.la');
    const axes = { h: 3, d: 5, e: 3 };
    const x = makeInputs(c.source, { b: 2, t: 45, axes, seed: 21 });
    const schedule = { chunk: 8, cols: 4, threads: 64 };
    const plan = lowerChunked(c.program, axisSizes(c.source, axes), { fuse: true, schedule });
    expect(plan.kernels[0].code).toMatch(/var<workgroup> red\d+: array<f32, 64>/); // ‖k‖: 8 rows and the halo of 56
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse: true, schedule, prologue: 'none' });
    expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, 'llama_linearized d 5');
  });

  // A group term's keys reach back to its group's start, at most G − C rows before a chunk that divides G (layout.ts
  // groupReach): over t = 140 (two whole groups of 64 and a partial third) at chunk 16 every chunk's reach, 0 to 48
  // rows, is taken, the last chunk of each group's exactly the halo; both plans, so the group term's own kernel and
  // the fused one. The past_groups term pairs no two rows of a chunk that divides its groups (analysis.ts
  // scoresInChunk): its φ·ψ tile is left out, and its own kernel has no score matrix at all; with groups of 8, two
  // groups a chunk of 16, it keeps both.
  it.each([[true, 16, 64], [false, 16, 64], [false, 16, 8]] as const)('llama_linearized over t 140, fused %s at chunk %i, groups of %i, equals the oracle', async (fuse, chunk, group) => {
    const g = await gpu();
    const c = compileFile('examples/paper/llama_linearized.la', { sizes: { C: group } });
    const axes = { h: 2, d: 5, e: 3 };
    const x = makeInputs(c.source, { b: 1, t: 140, axes, seed: 140 });
    const schedule = { chunk, cols: 4, threads: 64 };
    const plan = lowerChunked(c.program, axisSizes(c.source, axes), { fuse, schedule });
    const code = (label: string) => plan.kernels.find((k) => k.label.endsWith(label))!.code;
    if (group === 64) expect(code(fuse ? '.chunked' : '.term.local')).toMatch(/^\/\/ chunk 16, 4 value columns per workgroup, halo 48,/m);
    const divides = group % chunk === 0;
    expect(code(fuse ? '.chunked' : '.term.global')).toMatch(divides ? /^(?![\s\S]*term global \(prefix\): φ_i·ψ_j)/ : /term global \(prefix\): φ_i·ψ_j/);
    if (!fuse) expect(code('.term.global')).toMatch(divides ? /^(?![\s\S]*var<workgroup> A0)/ : /var<workgroup> A0/);
    const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse, schedule, prologue: 'none' });
    expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, `llama_linearized t 140 fused ${fuse} chunk ${chunk} groups ${group}`);
  });

  // Two variants (one prefix term with a convolution; two prefix terms, so two states scanned), two schedules:
  // with a cold shader cache lavapipe needs minutes for these kernels. Segments of 2 and 3 chunks over t = 45
  // and 130 give 6 and 6 segments; segments of 2 chunks of 4 over t = 150 give 19, more than two of the scan's
  // blocks of 8 loads (segment-scan.ts); t = 3 is one partial chunk.
  it.each(['examples/paper/elu_dwconv.la', 'examples/paper/cosformer_aug.la'])(
    '%s: segmented schedules (segment states, scan, outputs: three launches) equal the oracle across many segments',
    async (file) => {
      const g = await gpu();
      const c = compileFile(file);
      const sizes = axisSizes(c.source, AXES);
      expect(candidateSchedules(g.limits, c.program, sizes).some((s) => s.segment)).toBe(true);
      for (const [t, schedule] of [[45, { chunk: 4, cols: 4, threads: 64, segment: 2 }], [130, { chunk: 8, cols: 3, threads: 128, segment: 3 }], [150, { chunk: 4, cols: 3, threads: 64, segment: 2 }], [3, { chunk: 4, cols: 4, threads: 64, segment: 2 }]] as const) {
        const x = makeInputs(c.source, { b: 2, t, axes: AXES, seed: t });
        const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', schedule });
        expect(r.plan!.kernels.map((k) => k.label)).toEqual([`${c.program.name}.segment-state`, `${c.program.name}.segment-scan`, `${c.program.name}.chunked`]);
        expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, `${file} t=${t} schedule ${JSON.stringify(schedule)}`);
      }
    },
  );

  // A decayed term's segments combine as S_in(g + 1) = exp(L_g) ⊙ S_in(g) + S_own(g) (chunked/segments.ts): each state
  // launch writes its segment's Σ log decay beside its state, the scan (or, over spans, the output launch) applies it.
  // retnet's scalar decay (a parameter), mamba2's (an input: a decay that differs row by row) and gla's per feature;
  // segments of 2 and 3 chunks, a partial last chunk, spans of 3 segments (the last span shorter), vec4 z and not.
  it.each(['examples/variants/retnet.la', 'examples/variants/mamba2.la', 'examples/variants/gla.la'])('%s: segmented plans (a decayed state) equal the oracle', async (file) => {
    const g = await gpu();
    const c = compileFile(file);
    const sizes = axisSizes(c.source, AXES);
    expect(candidateSchedules(g.limits, c.program, sizes).some((s) => s.segment)).toBe(true);
    for (const [t, schedule, labels] of [
      [45, { chunk: 4, cols: 4, threads: 64, segment: 2 }, ['segment-state', 'segment-scan', 'chunked']],
      [130, { chunk: 8, cols: 3, threads: 128, segment: 3 }, ['segment-state', 'segment-scan', 'chunked']],
      [150, { chunk: 8, cols: 8, threads: 64, segment: 2, span: 3 }, ['segment-state', 'chunked']],
    ] as const) {
      const x = makeInputs(c.source, { b: 2, t, axes: AXES, seed: t + 7 });
      const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse: true, schedule });
      expect(r.plan!.kernels.map((k) => k.label.split('.').at(-1))).toEqual(labels);
      expectRelClose(r.o.data, evaluateParallel(c.source, x).data, 1e-4, `${file} t=${t} schedule ${JSON.stringify(schedule)}`);
    }
  });

  // A past_groups term's state adds up across segments that start at its groups' starts (chunked/segments.ts): a
  // segment's own state is its closed groups plus the group its last chunk closes, still open in So when it ends.
  it('offers a past_groups term only segments that start at group starts, and refuses others', () => {
    const c = compileFile('examples/paper/llama_linearized.la');
    const sizes = axisSizes(c.source, AXES);
    const segmented = candidateSchedules({ maxComputeWorkgroupStorageSize: 1 << 16, maxComputeInvocationsPerWorkgroup: 256 }, c.program, sizes).filter((s) => s.segment);
    expect(segmented.length).toBeGreaterThan(0);
    for (const s of segmented) expect((s.chunk * s.segment!) % 64).toBe(0);
    expect(() => lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 8, cols: 4, threads: 64, segment: 4 } })).toThrow(/4 chunks of 8 rows is not a multiple of 64 rows/);
  });

  // llama_linearized and flash, groups of 16: the local (group) term reads its keys from before a segment's first
  // chunk (the halo, staged from memory), the global (past_groups) term folds each segment from zero into S and its
  // open group, the scan adds whole segments; t = 150 ends in a partial group and chunk. Chunks of 8 (two a group,
  // the open group kept apart) and of 16 (one a group), segments of one and two groups, over spans too.
  it.each(['examples/paper/llama_linearized.la', 'examples/paper/flash.la'])('%s: segmented plans (groups of 16) equal the oracle', async (file) => {
    const g = await gpu();
    const c = compileFile(file, { sizes: { C: 16 } });
    const axes = { h: 2, d: 5, e: 6 };
    const x = makeInputs(c.source, { b: 2, t: 150, axes, seed: 150 });
    const ref = evaluateParallel(c.source, x);
    for (const schedule of [{ chunk: 8, cols: 4, threads: 64, segment: 2 }, { chunk: 8, cols: 6, threads: 64, segment: 4 }, { chunk: 16, cols: 4, threads: 64, segment: 1 }, { chunk: 8, cols: 6, threads: 64, segment: 2, span: 3 }]) {
      const r = await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked', fuse: true, schedule, prologue: 'none' });
      expect(r.plan!.kernels.map((k) => k.label.split('.').at(-1))).toEqual(schedule.span ? ['segment-state', 'chunked'] : ['segment-state', 'segment-scan', 'chunked']);
      expectRelClose(r.o.data, ref.data, 1e-4, `${file} ${JSON.stringify(schedule)}`);
    }
  });

  it('defaults, with the limits of an H100, to the schedule it timed near the fastest; on a software adapter to 128 threads', () => {
    const c = compileFile('examples/paper/elu_dwconv.la');
    const cands = candidateSchedules({ maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 }, c.program, axisSizes(c.source, { h: 16, d: 64, e: 64 }));
    expect(defaultSchedule(cands)).toEqual({ chunk: 32, cols: 32, threads: 512 });
    expect(defaultSchedule(cands, true)).toMatchObject({ chunk: 32, threads: 128 });
    expect(tuningOrder(cands)[0]).toEqual(defaultSchedule(cands));
  });

  it.each(['examples/paper/elu_dwconv.la', 'examples/paper/llama_linearized.la', 'examples/variants/gla.la'])(
    '%s is causal on the GPU: changing positions > t leaves outputs ≤ t unchanged',
    async (file) => {
      const g = await gpu();
      const c = compileFile(file);
      const T = 40;
      const cut = 17;
      const x = makeInputs(c.source, { b: 2, t: T, axes: AXES, seed: 9 });
      const y = makeInputs(c.source, { b: 2, t: T, axes: AXES, seed: 99 });
      // y equals x up to position `cut`, then differs.
      for (const d of c.source.inputs) {
        const per = x[d.name].data.length / (2 * T);
        for (let b = 0; b < 2; b++) y[d.name].data.set(x[d.name].data.subarray(b * T * per, (b * T + cut + 1) * per), b * T * per);
      }
      for (const d of c.source.params) y[d.name] = x[d.name];
      const ox = (await runCompiled(c, x, { device: 'gpu', gpu: g, form: 'chunked' })).o;
      const oy = (await runCompiled(c, y, { device: 'gpu', gpu: g, form: 'chunked' })).o;
      const per = ox.data.length / (2 * T);
      let maxBefore = 0;
      let maxAfter = 0;
      for (let b = 0; b < 2; b++) {
        for (let t = 0; t < T; t++) {
          for (let k = 0; k < per; k++) {
            const d = Math.abs(ox.data[(b * T + t) * per + k] - oy.data[(b * T + t) * per + k]);
            if (t <= cut) maxBefore = Math.max(maxBefore, d);
            else maxAfter = Math.max(maxAfter, d);
          }
        }
      }
      expect(maxBefore).toBe(0);
      expect(maxAfter).toBeGreaterThan(1e-3); // the change is visible after the cut, so the test can fail
    },
  );
});
