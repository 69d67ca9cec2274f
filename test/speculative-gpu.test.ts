// Speculative decoding on the GPU (src/speculative/gpu-verifier.ts: tree kernels inside the model's pass,
// commit of the accepted path into every layer's state): greedy output equals plain greedy decoding (the
// float64 reference) for every draft source on three random tiny models, where a float32 near-tie (top-2
// logits within 1e-4 in float64) is the only excuse and is counted; after speculative steps the state
// buffers equal those that decoding the same tokens one by one leaves; deterministic drafts under
// sampling emit plain GPU sampling's tokens; and what the verifier refuses.
import { afterAll, describe, expect, it } from 'vitest';
import { cpuModel } from '../src/model/cpu-forward.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { CpuTreeVerifier } from '../src/speculative/cpu-verifier.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { ModelDraft } from '../src/speculative/model-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { acceptByPicks } from '../src/speculative/acceptance.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { randn, relativeError } from '../src/tensor.ts';
import { gpu } from './helpers/gpu.ts';
import { simpleAttentionFactory } from './helpers/simple-gpu-attention.ts';
import { makeModel, MODEL_SPECS, plainGreedy, randomPrompts, type TestModel } from './helpers/speculative.ts';

const NEW_TOKENS = 10;
const MAX_NODES = 6;
const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function gpuTarget(m: TestModel, weights = m.weights): Promise<{ model: GpuModel; verifier: GpuTreeVerifier }> {
  const g = await gpu();
  const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim);
  const model = await GpuModel.create(g, m.config, weights, factory);
  const verifier = await GpuTreeVerifier.create(model, m.variant.compiled, weights, { maxNodes: MAX_NODES + 1, ownsModel: true });
  cleanup.push(() => verifier.destroy());
  return { model, verifier };
}

/** Float64 top-2 logit gap of the target at the first position where `got` leaves `want`. */
async function gapAtDivergence(m: TestModel, prompt: readonly number[], want: readonly number[], got: readonly number[]): Promise<number> {
  const k = want.findIndex((t, i) => t !== got[i]);
  const v = new CpuTreeVerifier(m.cpu, m.variant.compiled, 1);
  await v.start(prompt, { temperature: 0 }, 0);
  let logits: Float64Array | undefined;
  for (let i = 0; i < k; i++) logits = v.decode(want[i]);
  if (!logits) throw new Error('the prefill token itself differs');
  const sorted = Array.from(logits).sort((a, b) => b - a);
  return sorted[0] - sorted[1];
}

/** Prompts for the GPU runs: random lengths, so group variants also see prompts that end inside a later group. */
function promptsFor(_spec: { options: Record<string, number> }, count: number, seed: number): number[][] {
  return randomPrompts(count, seed);
}

describe.each(MODEL_SPECS.map((s, i) => ({ ...s, i })))('GPU speculative decoding, $name', (spec) => {
  const m = makeModel(spec, spec.seed);

  it('greedy output equals plain greedy for n-gram, adaptive, Medusa, oracle and draft-model trees (ties < 1e-4 counted)', async () => {
    const { verifier } = await gpuTarget(m);
    const draftModel = makeModel(spec, spec.seed + 1, 0);
    const draft = await gpuTarget(draftModel);
    let ties = 0;
    let oracleAccepted = 0;
    for (const [p, prompt] of promptsFor(spec, 6, 4000 + spec.i).entries()) {
      const want = plainGreedy(m, prompt, NEW_TOKENS);
      const runs: [DraftSource, string][] = [
        [new NgramDraft(), '[[0],[0,0],[1],[0,0,0]]'],
        [new AdaptiveDraft(p), p % 2 ? 'best:2' : 'top:2'],
        [new MedusaDraft(3, 2), '[[0],[0,0],[1],[0,1]]'],
        [new OracleDraft(prompt, want, m.config.vocabSize), 'chain:4'],
        [new ModelDraft('draft', draft.verifier, { temperature: 0 }, 0), p % 2 ? 'chain:3' : '[[0],[0,0],[1],[0,1]]'],
      ];
      for (const [d, tree] of runs) {
        const r = await speculativeGenerate(verifier, d, prompt, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(tree), maxNodes: MAX_NODES });
        if (d.name === 'oracle') oracleAccepted += r.meanAccepted;
        if (r.tokens.join() === want.join()) continue;
        const gap = await gapAtDivergence(m, prompt, want, r.tokens);
        expect(gap, `${spec.name} ${d.name} --tree ${tree} prompt [${prompt}]: got [${r.tokens}], want [${want}], float64 top-2 gap ${gap}`).toBeLessThan(1e-4);
        ties++;
      }
    }
    expect(ties, 'near-ties (float32 may break them either way)').toBeLessThanOrEqual(1);
    expect(oracleAccepted / 6).toBeGreaterThan(4); // chains of 4 accepted whole (a tie could cut one short)
  });

  it('after speculative steps every layer’s state buffers equal those of decoding the same tokens one by one', async () => {
    const { model, verifier } = await gpuTarget(m);
    const g = await gpu();
    const read = async () => {
      const out: Float32Array[] = [];
      for (const st of model.attentionStates) {
        for (const [, buf] of Object.entries(st.buffers!).sort(([a], [b]) => a.localeCompare(b))) {
          const copy = g.device.createBuffer({ size: buf.size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
          const enc = g.device.createCommandEncoder();
          enc.copyBufferToBuffer(buf, 0, copy, 0, buf.size);
          g.device.queue.submit([enc.finish()]);
          await copy.mapAsync(GPUMapMode.READ);
          out.push(new Float32Array(copy.getMappedRange().slice(0)));
          copy.destroy();
        }
      }
      return out;
    };
    for (const prompt of promptsFor(spec, 2, 4100 + spec.i)) {
      const all = plainGreedy(m, prompt, 12);
      const r = await speculativeGenerate(verifier, new OracleDraft(prompt, all, m.config.vocabSize), prompt, { maxTokens: 11, shape: parseTreeSpec('[[0],[0,0],[1],[0,0,0]]'), maxNodes: MAX_NODES });
      expect(r.tokens).toEqual(all.slice(0, 11));
      await verifier.flush();
      expect(model.position).toBe(prompt.length + 10);
      const committed = await read();
      model.keepLogits = true; // read below; the next prompt's speculation picks through the argmax head again
      await model.decodeStep({ tokens: [all[10]] }).tokens();
      const next = await model.readLogits();

      await (await model.prefill([prompt])).tokens();
      for (const t of all.slice(0, 10)) await model.decodeStep({ tokens: [t] }).tokens();
      const stepped = await read();
      await model.decodeStep({ tokens: [all[10]] }).tokens();
      const nextStepped = await model.readLogits();
      model.keepLogits = false;
      committed.forEach((s, i) => expect(relativeError(s, stepped[i]), `${spec.name} state buffer ${i}, prompt [${prompt}]`).toBeLessThan(1e-5));
      expect(relativeError(next, nextStepped)).toBeLessThan(1e-5);
    }
  });

  if (spec.i === 0) {
    it('deterministic drafts under sampling emit plain GPU sampling’s tokens (same seed)', async () => {
      const { model, verifier } = await gpuTarget(m);
      const sampling = { temperature: 0.9, topK: 40 };
      for (const [p, prompt] of promptsFor(spec, 3, 4200).entries()) {
        const plain = (await generateGpu(model, new ByteTokenizer(), [prompt], { maxTokens: NEW_TOKENS, sampling, seed: 70 + p })).tokens[0];
        for (const [d, tree] of [[new NgramDraft(), '[[0],[1],[0,0]]'], [new OracleDraft(prompt, plain, m.config.vocabSize), 'chain:4']] as const) {
          const r = await speculativeGenerate(verifier, d, prompt, { maxTokens: NEW_TOKENS, shape: parseTreeSpec(tree), maxNodes: MAX_NODES, sampling, seed: 70 + p });
          expect(r.tokens, `${d.name} prompt [${prompt}] seed ${70 + p}`).toEqual(plain);
        }
      }
    });

    it('runs the Medusa heads at the node acceptance reaches: the same node and candidates as the float64 verifier, heads with biases too', async () => {
      const biased = { ...m.weights, medusa: m.weights.medusa.map((h, n) => ({ ...h, bias: randn([m.config.hiddenSize], 900 + n, 0.5) })) };
      for (const weights of [m.weights, biased]) {
        const { verifier } = await gpuTarget(m, weights);
        const cpu = new CpuTreeVerifier(cpuModel(m.config, weights), m.variant.compiled, MAX_NODES + 1);
        for (const prompt of promptsFor(spec, 3, 4300)) {
          const want = plainGreedy(m, prompt, 4);
          // Root, then the right token with a wrong sibling, then the right one again: acceptance ends at node 3.
          const tree = treeFromParents([want[0], want[1], (want[1] + 1) % 256, want[2], (want[2] + 7) % 256], [-1, 0, 0, 1, 1]);
          const got = [];
          for (const v of [verifier, cpu]) {
            expect(await v.start(prompt, { temperature: 0 }, 0)).toBe(want[0]);
            got.push(await v.verify({ tree, medusaTopK: 3 }));
          }
          const [g, c] = got;
          expect(g.medusaNode, `prompt [${prompt}]`).toBe(acceptByPicks(tree, g.picks).path.at(-1));
          expect(g.medusaNode).toBe(3);
          expect(g.medusaNode).toBe(c.medusaNode);
          expect(g.medusa!.map((h) => h.map((x) => x.token))).toEqual(c.medusa!.map((h) => h.map((x) => x.token)));
          g.medusa!.forEach((h, i) => h.forEach((x, r) => expect(Math.abs(x.prob - c.medusa![i][r].prob)).toBeLessThan(1e-4)));
        }
      }
    });

    it('refuses a tree larger than the compiled maxNodes, and attention without readable state', async () => {
      const { verifier } = await gpuTarget(m);
      await verifier.start([1, 2, 3], { temperature: 0 }, 0);
      const big = treeFromParents(Array.from({ length: MAX_NODES + 2 }, (_, i) => i), Array.from({ length: MAX_NODES + 2 }, (_, i) => i - 1));
      await expect(verifier.verify({ tree: big })).rejects.toThrow(/8 nodes; the verifier was compiled for 1\.\.7/);
      const g = await gpu();
      const simple = await GpuModel.create(g, m.config, randomWeights(m.config, 1, m.variant.params), await simpleAttentionFactory(g, { heads: 4, headDim: 16, K: 4 }));
      const v = await GpuTreeVerifier.create(simple, m.variant.compiled, m.weights, { maxNodes: 4, ownsModel: true });
      cleanup.push(() => v.destroy());
      await expect(v.start([1, 2], { temperature: 0 }, 0)).rejects.toThrow(/keeps no state buffers.*compiled variant/);
    });
  }
});
