// Shared setup of the speculative-decoding tests: tiny random models (examples/models/tiny's shapes) over
// a few variants, with Medusa heads, and the plain decoding they are compared with.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createState, Recurrent } from '../../backends/cpu/recurrent.ts';
import { parseConfig, type ModelConfig } from '../../src/model/config.ts';
import { cpuForward, cpuModel, type CpuAttention, type CpuModel } from '../../src/model/cpu-forward.ts';
import { randomWeights } from '../../src/model/init-model.ts';
import { argmax } from '../../src/model/sampling.ts';
import { loadModelVariant, type ModelVariant } from '../../src/model/variant.ts';
import type { ModelWeights } from '../../src/model/weights.ts';
import { variantAxisSizes } from '../../src/speculative/verifier.ts';
import { rng } from '../../src/tensor.ts';
import { GpuModel } from '../../src/model/gpu-model.ts';
import { compiledAttentionFactory } from '../../src/runtime/compiled-attention.ts';
import { GpuTreeVerifier, type GpuVerifierOptions } from '../../src/speculative/gpu-verifier.ts';
import type { DraftSource, TextProposals } from '../../src/speculative/draft.ts';
import { pathTokens, type TokenTree } from '../../src/speculative/token-tree.ts';
import { gpu } from './gpu.ts';

import { TINY } from './tiny-model.ts';

export { TINY };

export interface TestModel {
  readonly name: string;
  readonly config: ModelConfig;
  readonly variant: ModelVariant;
  readonly weights: ModelWeights<Float64Array>;
  readonly cpu: CpuModel;
}

/** Small group and window sizes, so short sequences cross group boundaries and fill the ring. */
export const MODEL_SPECS = [
  { name: 'elu_dwconv', variant: 'examples/paper/elu_dwconv.la', options: { K: 4 }, seed: 101 },
  { name: 'llama_linearized', variant: 'examples/paper/llama_linearized.la', options: { C: 4, K: 3 }, seed: 202 },
  { name: 'retnet (gated)', variant: 'examples/variants/retnet.la', options: {}, seed: 303 },
] as const;

/** `config`: fields of examples/models/tiny/config.json replaced (say a smaller intermediate_size). */
export function makeModel(spec: { name: string; variant: string; options: Record<string, number> }, seed: number, medusaHeads = 3, config: Record<string, unknown> = {}): TestModel {
  const json = { ...(JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>), ...config };
  const parsed = parseConfig(
    { ...json, attention: { variant: resolve(import.meta.dirname, '../..', spec.variant), options: spec.options }, ...(medusaHeads > 0 && { medusa: { num_heads: medusaHeads } }) },
    TINY,
  );
  const variant = loadModelVariant(parsed);
  // 'normal' variant parameters except the decay rates (RetNet's γ must stay in (0, 1)).
  const weights = randomWeights(parsed, seed, variant.params.map((p) => (p.init === 'retention' ? p : { ...p, init: 'normal' as const })));
  return { name: spec.name, config: parsed, variant, weights, cpu: cpuModel(parsed, weights) };
}

/** A float64 attention session of one sequence that runs every layer's variant step by step (recurrent form). */
export function recurrentAttention(m: TestModel): CpuAttention {
  const c = m.config;
  const sizes = variantAxisSizes(m.variant.compiled, c.numHeads, c.headDim);
  const layers = m.cpu.weights.layers.map((l) => new Recurrent(m.variant.compiled, l.attention, sizes));
  const states = layers.map(() => createState());
  return (layer, q, k, v) => {
    const [, t, h, d] = q.shape;
    const per = h * d;
    const o = new Float64Array(t * per);
    for (let i = 0; i < t; i++) {
      const sl = (x: Float64Array) => x.slice(i * per, (i + 1) * per);
      o.set(layers[layer].step(states[layer], { q: sl(q.data), k: sl(k.data), v: sl(v.data) }), i * per);
    }
    return { shape: [1, t, h, d], data: o };
  };
}

/** Plain greedy decoding in float64 with recurrent steps: `n` new tokens. */
export function plainGreedy(m: TestModel, prompt: readonly number[], n: number): number[] {
  const c = m.config;
  const attention = recurrentAttention(m);
  const V = c.vocabSize;
  let logits = cpuForward(m.cpu, [prompt], attention).logits.data;
  const out: number[] = [];
  for (;;) {
    const next = argmax(logits.subarray(logits.length - V));
    out.push(next);
    if (out.length === n) return out;
    logits = cpuForward(m.cpu, [[next]], attention).logits.data;
  }
}

/** Random prompts of 3..10 byte tokens; every third repeats a short pattern (something for the n-gram draft to find). */
export function randomPrompts(count: number, seed: number): number[][] {
  const r = rng(seed);
  return Array.from({ length: count }, (_, i) => {
    const len = 3 + Math.floor(r() * 8);
    if (i % 3 !== 0) return Array.from({ length: len }, () => Math.floor(r() * 256));
    const pattern = Array.from({ length: 2 + Math.floor(r() * 2) }, () => Math.floor(r() * 256));
    return Array.from({ length: len }, (_, j) => pattern[j % pattern.length]);
  });
}

/**
 * `m` with its LM head tied to the embeddings and its attention and MLP outputs scaled by 0.2: its greedy text is
 * runs of repeated tokens that change with the state, so a draft that continues a run is accepted inside it and
 * refused at its end (the chained speculation tests' model). `medusa` replaces the heads when given.
 */
export function repeatingModel(m: TestModel, medusa?: (w: ModelWeights<Float64Array>) => ModelWeights<Float64Array>['medusa']): TestModel {
  const w = m.weights;
  const scaled = <T extends { data: Float64Array }>(t: T): T => ({ ...t, data: t.data.map((x) => 0.2 * x) });
  const weights = {
    ...w,
    lmHead: w.embedTokens,
    layers: w.layers.map((l) => ({ ...l, oProj: scaled(l.oProj), downProj: scaled(l.downProj) })),
    ...(medusa && { medusa: medusa(w) }),
  };
  return { ...m, weights, cpu: cpuModel(m.config, weights) };
}

/** The GPU model of `m` (its compiled variant) and a tree verifier that owns it; `cleanup` gets its destroy. */
export async function gpuVerifierOf(m: TestModel, opts: GpuVerifierOptions, cleanup: (() => Promise<void>)[]): Promise<GpuTreeVerifier> {
  const g = await gpu();
  const factory = await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim);
  const model = await GpuModel.create(g, m.config, m.weights, factory);
  const verifier = await GpuTreeVerifier.create(model, m.variant.compiled, m.weights, { ...opts, ownsModel: true });
  cleanup.push(() => verifier.destroy());
  return verifier;
}

/** Proposes the k tokens after each node's (token + 1, + 2, …), from the text alone: a full tree, next to never accepted. */
export class NextTokensDraft implements DraftSource {
  readonly name = 'next tokens';
  constructor(private readonly vocab: number) {}

  private after(last: number, k: number): number[] {
    return Array.from({ length: k }, (_, j) => (last + 1 + j) % this.vocab);
  }

  textProposals(): TextProposals {
    let last = 0;
    return { push: (t) => void (last = t), proposals: (k) => this.after(last, k) };
  }

  candidates(ctx: { tokens: readonly number[] }, tree: TokenTree, nodes: readonly number[], k: number) {
    return nodes.map((n) => {
      const text = [...ctx.tokens, ...pathTokens(tree, n).slice(1)];
      return this.after(text[text.length - 1], k).map((token, r) => ({ token, prob: 1 / (r + 2) }));
    });
  }
}
