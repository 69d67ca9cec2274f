// Chained runs recorded once and replayed (gpu-chain.ts chainedStep): steps ≥ 1 of a run are encoded by JavaScript
// once per key — plan, rows, medusaK, the chain kernel's bind group, the folded sets' parity — and replayed as
// recorded commands by every later step and run. Replays across prompts, runs of different lengths, Medusa and
// prompt lookup (whose GPU token history grows, rebuilding the lookup kernel's bind group) must still emit plain
// greedy decoding's tokens (float64), and a run's steps must share one compute pass per submit piece with no copy
// between them (the next step's dims are bound in the chain state the chain kernel writes). The models are
// speculative-chain.test.ts's: random, scaled so greedy text repeats itself (Medusa's heads accepted inside a run).
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import type { GpuModel } from '../src/model/gpu-model.ts';
import { RecordedStep } from '../src/model/step-recording.ts';
import { relativeError } from '../src/tensor.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { chainCuts } from '../src/speculative/gpu-chain.ts';
import { TREE_STEP_RECORDING } from '../src/speculative/gpu-verifier.ts';
import { LookupChainDraft } from '../src/speculative/lookup-chain.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, randomPrompts, repeatingModel } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Every layer's attention state buffers, in name order. */
async function readStates(model: GpuModel): Promise<Float32Array[]> {
  const { device } = model.gpu;
  const out: Float32Array[] = [];
  for (const st of model.attentionStates) {
    for (const [, buf] of Object.entries(st.buffers!).sort(([a], [b]) => a.localeCompare(b))) {
      const copy = device.createBuffer({ size: buf.size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(buf, 0, copy, 0, buf.size);
      device.queue.submit([enc.finish()]);
      await copy.mapAsync(GPUMapMode.READ);
      out.push(new Float32Array(copy.getMappedRange().slice(0)));
      copy.destroy();
    }
  }
  return out;
}

/** Recordings of chained runs' steps (the verifier's own tree steps, recorded once per folded set, left out). */
const chained = (record: { mock: { calls: unknown[][] } }) => record.mock.calls.filter((c) => c[1] !== TREE_STEP_RECORDING).length;

const PROMPTS = [[72, 101, 108, 108, 111, 32, 108, 108], ...randomPrompts(3, 14)];

describe('chained runs replayed from their recording', () => {
  const medusa = repeatingModel(makeModel(MODEL_SPECS[1], 202), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));

  it('Medusa: prompts and run lengths replayed from one recording per folded set emit plain greedy decoding\'s tokens', async () => {
    const verifier = await gpuVerifierOf(medusa, { maxNodes: 4, splitChain: true }, cleanup);
    const shape = parseTreeSpec('chain:3');
    const record = vi.spyOn(RecordedStep, 'recordAsync');
    let steps = 0;
    for (const [p, prompt] of PROMPTS.entries()) {
      for (const [R, max] of [[2, 24], [5, 31], [3, 17]]) {
        const want = plainGreedy(medusa, prompt, max);
        const r = await speculativeGenerate(verifier, new MedusaDraft(3, 2), prompt, { maxTokens: max, shape, maxNodes: 3, chainSteps: R });
        expect(r.tokens, `prompt ${p} R=${R} max ${max}`).toEqual(want);
        steps += r.steps;
      }
      // Two recordings at most (one per folded set a later step reads), made by the first runs; the rest replay.
      if (p > 0) expect(chained(record), `prompt ${p}`).toBeLessThanOrEqual(2);
    }
    expect(chained(record)).toBeGreaterThanOrEqual(1);
    expect(steps).toBeGreaterThan(10 * chained(record));
  }, 180_000);

  it('lookup: replays stay right as the GPU history grows and its bind group is rebuilt', async () => {
    const m = repeatingModel(makeModel(MODEL_SPECS[1], 202, 0));
    const verifier = await gpuVerifierOf(m, { maxNodes: 8 }, cleanup);
    const { device } = await gpu();
    const create = vi.spyOn(device, 'createBuffer');
    const record = vi.spyOn(RecordedStep, 'recordAsync');
    const shape = parseTreeSpec('chain:3');
    let steps = 0;
    // Longer prompts and runs later: the history outgrows the buffer the first runs made.
    for (const [p, prompt] of [PROMPTS[0], [...PROMPTS[1], ...PROMPTS[0]], PROMPTS[0].concat(PROMPTS[0], PROMPTS[0], PROMPTS[2])].entries()) {
      for (const [R, max] of [[3, 20], [6, 48], [4, 33]]) {
        const want = plainGreedy(m, prompt, max);
        const r = await speculativeGenerate(verifier, new LookupChainDraft({ length: 3, minN: 1, maxN: 4 }), prompt, { maxTokens: max, shape, maxNodes: 3, chainSteps: R });
        expect(r.tokens, `prompt ${p} R=${R} max ${max}`).toEqual(want);
        steps += r.steps;
      }
    }
    const histories = create.mock.calls.filter(([d]) => d.label === 'chain token history').length;
    expect(histories, 'the history buffer grew').toBeGreaterThanOrEqual(2);
    // Each history buffer's bind group is recorded anew (per folded set), every other step replays.
    expect(chained(record)).toBeLessThanOrEqual(2 * histories);
    expect(steps).toBeGreaterThan(4 * chained(record));
  }, 180_000);

  it('softmax attention (its commit a launch of its own, no folded sets): replayed runs emit plain greedy decoding\'s tokens', async () => {
    const m = repeatingModel(makeModel({ name: 'softmax', variant: 'examples/variants/softmax.la', options: {} }, 404), (w) => w.medusa.map((h) => ({ proj: { ...h.proj, data: new Float64Array(h.proj.data.length) }, lmHead: w.embedTokens })));
    const verifier = await gpuVerifierOf(m, { maxNodes: 4, splitChain: true }, cleanup);
    const record = vi.spyOn(RecordedStep, 'recordAsync');
    let steps = 0;
    for (const [p, prompt] of PROMPTS.slice(0, 2).entries()) {
      for (const [R, max] of [[4, 24], [3, 19]]) {
        const r = await speculativeGenerate(verifier, new MedusaDraft(3, 2), prompt, { maxTokens: max, shape: parseTreeSpec('[[0],[1],[0,0]]'), maxNodes: 3, chainSteps: R });
        expect(r.tokens, `prompt ${p} R=${R} max ${max}`).toEqual(plainGreedy(m, prompt, max));
        expect(r.meanAccepted, `prompt ${p} R=${R}: paths longer than the root, committed from the GPU's dims`).toBeGreaterThan(1.2);
        steps += r.steps;
        // Softmax attention barely notices a misplaced key at this model's scale, so the state is compared too: the
        // key and value cache after the runs (steps past the stop included) equals decoding the same tokens one by one.
        await verifier.flush();
        const { model } = verifier;
        const fed = model.position - prompt.length;
        const committed = await readStates(model);
        await (await model.prefill([prompt])).tokens();
        for (const t of plainGreedy(m, prompt, fed).slice(0, fed)) await model.decodeStep({ tokens: [t] }).tokens();
        const stepped = await readStates(model);
        committed.forEach((c, i) => expect(relativeError(c, stepped[i]), `prompt ${p} R=${R}: state buffer ${i}`).toBeLessThan(1e-5));
      }
    }
    expect(record.mock.calls.length).toBeGreaterThanOrEqual(1);
    expect(steps).toBeGreaterThan(4 * record.mock.calls.length);
  }, 180_000);

  it('a run of R steps opens one compute pass per submit piece and copies nothing between its steps', async () => {
    const verifier = await gpuVerifierOf(medusa, { maxNodes: 4, splitChain: true }, cleanup);
    const { device } = await gpu();
    // Per chained run's command encoder (by label), its commands in order: C a copy, P a compute pass.
    const runs: { steps: number; continued: boolean; encoders: string[] }[] = [];
    const real = device.createCommandEncoder.bind(device);
    vi.spyOn(device, 'createCommandEncoder').mockImplementation((d?: GPUCommandEncoderDescriptor) => {
      const encoder = real(d);
      const label = d?.label ?? '';
      const m = /^chained tree steps \[(\d+) ×/.exec(label);
      if (!m) return encoder;
      if (!label.includes('from step')) runs.push({ steps: Number(m[1]), continued: label.endsWith('continued'), encoders: [] });
      const run = runs[runs.length - 1];
      const at = run.encoders.push('') - 1;
      const begin = encoder.beginComputePass.bind(encoder);
      const copy = encoder.copyBufferToBuffer.bind(encoder);
      encoder.beginComputePass = (pd?: GPUComputePassDescriptor) => {
        run.encoders[at] += 'P';
        return begin(pd);
      };
      encoder.copyBufferToBuffer = ((...args: Parameters<GPUCommandEncoder['copyBufferToBuffer']>) => {
        run.encoders[at] += 'C';
        return (copy as (...a: typeof args) => void)(...args);
      }) as GPUCommandEncoder['copyBufferToBuffer'];
      return encoder;
    });
    const prompt = PROMPTS[0];
    for (const R of [4, 7]) {
      runs.length = 0;
      const r = await speculativeGenerate(verifier, new MedusaDraft(3, 2), prompt, { maxTokens: 40, shape: parseTreeSpec('chain:3'), maxNodes: 3, chainSteps: R });
      expect(r.tokens).toEqual(plainGreedy(medusa, prompt, 40));
      expect(runs.length, `R=${R}`).toBeGreaterThanOrEqual(2);
      expect(runs.filter((x) => x.continued).length, `R=${R}: runs continued`).toBeGreaterThanOrEqual(1);
      for (const run of runs) {
        // A continued run (submitted while the GPU still runs the last one) goes whole.
        const pieces = run.continued ? 1 : chainCuts(run.steps).length + 1;
        expect(run.encoders.length, `R=${R}, a run of ${run.steps}`).toBe(pieces);
        // The first piece may start with the copy of the state into the folded sets; the last ends with the
        // readback's copies; in between, each piece is one pass.
        run.encoders.forEach((e, k) => {
          const want = k === 0 && pieces === 1 ? /^C*PC+$/ : k === 0 ? /^C*P$/ : k === pieces - 1 ? /^PC+$/ : /^P$/;
          expect(e, `R=${R}, a run of ${run.steps}, piece ${k}`).toMatch(want);
        });
      }
    }
  }, 180_000);
});
