// Decoding speed of a LLaMA-2-7B-shaped model (random weights, float32) at batch 1, next to the bound of reading
// every weight once per token at the adapter's measured copy bandwidth, and next to Hugging Face transformers fp32
// on the same GPU (tools/hf_decode_baseline.py writes its figure; --baseline reads it):
//
//   tsx bench/hf_decode.ts [--shape llama7b|tiny] [--attention softmax|linearized-aug] [--prompt 32] [--tokens 128]
//                          [--tree 64] [--profile] [--baseline FILE.json]
//
// llama7b: vocab 32000, hidden 4096, intermediate 11008, 32 layers, 32 heads of 128, RoPE θ 10000 — LLaMA-2-7B's
// config. Each distinct weight shape is drawn once on the host and uploaded for every layer (the GPU holds all 27 GB;
// the host never does), so the model builds in seconds. softmax: LLaMA's attention (examples/models/llama/
// softmax_rope.la, a key/value cache of prompt + tokens positions); linearized-aug: the paper's layer. --tree N also
// times the speculative verification of an N-node tree (random Medusa heads, greedy) against a decode step.
// --profile (with timestamp queries): the decode step's and the tree step's GPU time kernel by kernel
// (src/runtime/dispatch-profile.ts: each dispatch replayed in a timed pass of its own) with the weight bytes each
// matmul reads: where the tree step's time beyond the decode step's goes.
// tiny: a small model of the same layout, for lavapipe. Prints a table; writes hf_decode.json to $OUT (else out/).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseConfig, REPO_ROOT, type ModelConfig } from '../src/model/config.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import type { LayerWeights, ModelWeights } from '../src/model/weights.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { ProfilingPass, timeDispatchesOf, timeStepStream } from '../src/runtime/dispatch-profile.ts';
import { median } from '../src/runtime/timing.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { TreeBuilder } from '../src/speculative/token-tree.ts';
import type { Tensor } from '../src/tensor.ts';
import { measureCopyBandwidth } from './roofline.ts';
import { formatTable, matmulReads, profileTable, stepProfile, treeStepMatmuls, type StepProfile } from './step-profile.ts';
import { runIfMain, writeReport } from './script.ts';

interface Shape {
  readonly vocab: number;
  readonly hidden: number;
  readonly intermediate: number;
  readonly layers: number;
  readonly heads: number;
  readonly headDim: number;
}

export const LLAMA7B: Shape = { vocab: 32000, hidden: 4096, intermediate: 11008, layers: 32, heads: 32, headDim: 128 };
const TINY: Shape = { vocab: 512, hidden: 128, intermediate: 256, layers: 2, heads: 4, headDim: 32 };

const VARIANTS = {
  softmax: { file: 'examples/models/llama/softmax_rope.la', options: (s: Shape) => ({ D: s.headDim }) },
  'linearized-aug': { file: 'examples/models/llama/linearized_aug.la', options: () => ({ C: 64, K: 32 }) },
} as const;

function config(shape: Shape, attention: keyof typeof VARIANTS, maxLength: number, medusa: number): ModelConfig {
  const v = VARIANTS[attention];
  return parseConfig(
    {
      vocab_size: shape.vocab, hidden_size: shape.hidden, intermediate_size: shape.intermediate, num_hidden_layers: shape.layers,
      num_attention_heads: shape.heads, head_dim: shape.headDim, rms_norm_eps: 1e-5, rope_theta: 10000, max_position_embeddings: maxLength,
      tokenizer: 'bytes', attention: { variant: v.file, options: v.options(shape) },
      ...(medusa > 0 && { medusa: { num_heads: medusa } }),
    },
    join(REPO_ROOT, 'bench', 'hf-decode-config.json'),
  );
}

/** Uniform values of standard deviation 1/√(last axis), by xorshift: fast, and any value works for timing. */
function random(shape: readonly number[], seed: number): Tensor<Float32Array> {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  const scale = Math.sqrt(3 / shape[shape.length - 1]) / 2 ** 31;
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    data[i] = (x | 0) * scale;
  }
  return { shape: [...shape], data };
}

/** Weights whose every layer shares one host tensor per shape (uploaded once per layer all the same). */
function sharedWeights(c: ModelConfig, params: readonly { name: string; shape: readonly number[] }[]): ModelWeights<Float32Array> {
  const H = c.hiddenSize;
  const hd = c.numHeads * c.headDim;
  const ones = { shape: [H], data: new Float32Array(H).fill(1) };
  const proj = random([hd, H], 1);
  const layer: LayerWeights<Float32Array> = {
    inputNorm: ones, qProj: proj, kProj: random([hd, H], 2), vProj: random([hd, H], 3), oProj: random([H, hd], 4),
    attention: Object.fromEntries(params.map((p) => [p.name, { shape: [...p.shape], data: new Float32Array(p.shape.reduce((a, b) => a * b, 1)).fill(0.01) }])),
    postNorm: ones, gateProj: random([c.intermediateSize, H], 5), upProj: random([c.intermediateSize, H], 6), downProj: random([H, c.intermediateSize], 7),
  };
  const medusa = Array.from({ length: c.medusa?.numHeads ?? 0 }, (_, n) => ({ proj: random([H, H], 20 + n), lmHead: random([c.vocabSize, H], 30 + n) }));
  return { embedTokens: random([c.vocabSize, H], 8), layers: Array.from({ length: c.numLayers }, () => layer), norm: ones, lmHead: random([c.vocabSize, H], 9), medusa };
}

export async function runHfDecodeBench(opts: { shape: 'llama7b' | 'tiny'; attention: keyof typeof VARIANTS; prompt: number; tokens: number; tree: number; profile?: boolean; log: (s: string) => void }) {
  const { log } = opts;
  const gpu = await getDevice();
  const shape = opts.shape === 'tiny' ? TINY : LLAMA7B;
  const maxLength = opts.prompt + opts.tokens + opts.tree + 16;
  const c = config(shape, opts.attention, maxLength, opts.tree > 0 ? 4 : 0);
  const variant = loadModelVariant(c);
  log(`hf decode bench on ${gpu.adapterName}: ${opts.shape} (${shape.layers} layers, hidden ${shape.hidden}), attention ${opts.attention}, prompt ${opts.prompt}, ${opts.tokens} tokens`);
  const copy = await measureCopyBandwidth(gpu, { bytes: gpu.isSoftware ? 16 << 20 : 256 << 20, iters: 20 });
  const t0 = performance.now();
  const weights = sharedWeights(c, variant.params);
  const model = await GpuModel.create(gpu, c, weights, await compiledAttentionFactory(gpu, variant.compiled, c.numHeads, c.headDim, { maxLength }));
  const loadS = (performance.now() - t0) / 1000;
  try {
    const prompt = Array.from({ length: opts.prompt }, (_, i) => (i * 7919 + 11) % c.vocabSize);
    // Warm-up: compiles the prefill and decode pipelines.
    await (await model.prefill([prompt])).tokens();
    for (let i = 0; i < 4; i++) await model.decodeStep().tokens();
    // Greedy decoding as generate runs it: step n+1 submitted before step n's token is read.
    await (await model.prefill([prompt])).tokens();
    const gpuMs: number[] = [];
    const start = performance.now();
    let pending = model.decodeStep();
    let tokens = pending.tokens();
    for (let i = 1; i < opts.tokens; i++) {
      const next = model.decodeStep();
      const nextTokens = next.tokens();
      await tokens;
      if (pending.timing.gpuMs !== undefined) gpuMs.push(pending.timing.gpuMs);
      pending = next;
      tokens = nextTokens;
    }
    await tokens;
    const decodeS = (performance.now() - start) / 1000;
    const tokensPerS = opts.tokens / decodeS;
    const boundTokensPerS = (copy.gbPerS * 1e9) / model.weightBytesPerToken;
    const profiling = (opts.profile ?? false) && gpu.hasTimestamps;
    if (opts.profile && !gpu.hasTimestamps) log(`--profile: ${gpu.adapterName} has no timestamp queries; no profile`);
    const profile: StepProfile[] = [];
    if (profiling) {
      // Replays run the step's state update again: the state's values no longer matter for timing.
      const pass = new ProfilingPass();
      model.recordDecodeStep(pass.asPass());
      profile.push({
        ...stepProfile('decode step', 1, await timeDispatchesOf(gpu, pass.dispatches), matmulReads(model.decodeMatmuls, c.numLayers), model.weightBytesPerToken),
        streamMs: await timeStepStream(gpu, pass.dispatches, 8),
      });
    }
    let tree: { nodes: number; verifyMs: number; decodeStepMs: number; ratio: number } | undefined;
    if (opts.tree > 0) {
      const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: opts.tree, sizes: [opts.tree] });
      await verifier.prepare();
      let root = await verifier.start(prompt, { temperature: 0 }, 0);
      const b = new TreeBuilder(root);
      for (let n = 1; n < opts.tree; n++) b.add(Math.floor((n - 1) / 2), (n * 31) % c.vocabSize);
      const times: number[] = [];
      for (let i = 0; i < 12; i++) {
        const r = await verifier.verify({ tree: b.build() });
        if (r.gpuMs !== undefined) times.push(r.gpuMs);
        verifier.commit([0]);
        root = r.picks[0];
      }
      await verifier.flush();
      if (profiling) {
        // The step the loop times: the previous step's one-node commit, then the tree.
        await verifier.start(prompt, { temperature: 0 }, 0);
        await verifier.verify({ tree: b.build() });
        verifier.commit([0]);
        const plan = await model.planStep(1, opts.tree, { pickRows: true, qkvPerLayer: true });
        const treeTimes = await verifier.profileStep({ trees: [b.build()] });
        profile.push({
          ...stepProfile(`tree step, ${opts.tree} nodes, commit of 1`, opts.tree, treeTimes, matmulReads(treeStepMatmuls(plan), c.numLayers)),
          streamMs: await verifier.streamStep({ trees: [b.build()] }, 8),
        });
      }
      await verifier.destroy();
      const verifyMs = median(times.slice(2));
      const decodeStepMs = median(gpuMs);
      tree = { nodes: opts.tree, verifyMs, decodeStepMs, ratio: verifyMs / decodeStepMs };
    }
    return {
      adapter: gpu.adapterName, date: new Date().toISOString(), shape: opts.shape, ...shape, attention: opts.attention,
      prompt: opts.prompt, tokens: opts.tokens, loadSeconds: loadS,
      weightBytesPerToken: model.weightBytesPerToken, copyGbPerS: copy.gbPerS,
      decodeTokensPerS: tokensPerS, gpuMsPerStep: gpuMs.length ? median(gpuMs) : undefined,
      boundTokensPerS, fractionOfBound: tokensPerS / boundTokensPerS,
      ...(tree && { tree }),
      ...(profile.length && { profile }),
    };
  } finally {
    await model.destroy();
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string, dflt: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : dflt;
  };
  const shape = valueOf('--shape', 'llama7b');
  const attention = valueOf('--attention', 'softmax');
  if (shape !== 'llama7b' && shape !== 'tiny') throw new Error(`--shape is llama7b or tiny, got ${shape}`);
  if (!(attention in VARIANTS)) throw new Error(`--attention is ${Object.keys(VARIANTS).join(' or ')}, got ${attention}`);
  const r = await runHfDecodeBench({
    shape, attention: attention as keyof typeof VARIANTS,
    prompt: Number(valueOf('--prompt', '32')), tokens: Number(valueOf('--tokens', '128')), tree: Number(valueOf('--tree', '0')), profile: args.includes('--profile'),
    log: (s) => console.log(s),
  });
  const baselineFile = valueOf('--baseline', '');
  const baseline = baselineFile && existsSync(baselineFile) ? (JSON.parse(readFileSync(baselineFile, 'utf8')) as { tokens_per_s: number; transformers: string; torch: string }) : undefined;
  const gb = (r.weightBytesPerToken / 1e9).toFixed(2);
  console.log(`model: ${r.shape}, ${r.layers} layers, hidden ${r.hidden}, ${r.heads}×${r.headDim} heads, vocab ${r.vocab}; ${gb} GB of weights read per token (float32); built and uploaded in ${r.loadSeconds.toFixed(1)} s`);
  console.log(`decode (batch 1, ${r.attention}, prompt ${r.prompt}, ${r.tokens} greedy tokens, pipelined as generate runs): ${r.decodeTokensPerS.toFixed(1)} tokens/s` + (r.gpuMsPerStep !== undefined ? `, GPU ${r.gpuMsPerStep.toFixed(3)} ms/step` : ''));
  console.log(`weight-read bound: ${r.boundTokensPerS.toFixed(1)} tokens/s (${gb} GB at the measured copy bandwidth ${r.copyGbPerS.toFixed(0)} GB/s); ${(100 * r.fractionOfBound).toFixed(1)}% of it`);
  if (baseline) console.log(`Hugging Face transformers ${baseline.transformers} fp32 (torch ${baseline.torch}, same GPU): ${baseline.tokens_per_s.toFixed(1)} tokens/s → ${(r.decodeTokensPerS / baseline.tokens_per_s).toFixed(2)}×`);
  else console.log(baselineFile ? `no baseline at ${baselineFile}` : 'no --baseline given (tools/hf_decode_baseline.py writes one)');
  if (r.tree) console.log(`speculative verification of a ${r.tree.nodes}-node tree: ${r.tree.verifyMs.toFixed(3)} ms GPU vs ${r.tree.decodeStepMs.toFixed(3)} ms a decode step (${r.tree.ratio.toFixed(2)}×)`);
  if (r.profile) {
    const title = `where the GPU time goes (${r.attention}): ms (dispatches) per kernel, each dispatch timed in a pass of its own`;
    for (const line of formatTable(title, profileTable(r.profile, (p) => (p.rows === 1 ? 'decode' : `tree ${p.rows}`)))) console.log(line);
  }
  writeReport(process.env.OUT ?? 'out', `hf_decode_${r.attention}.json`, { ...r, ...(baseline && { baseline }) });
}

runIfMain(import.meta.url, main, { stack: true });
