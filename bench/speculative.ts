// Speculative decoding against plain decoding on the GPU, same model, same prompt, same run.
//
//   npm run bench:speculative [-- --small] [--tokens N] [--out DIR]
//
// Model (random weights): bench/decode.ts's — 12 layers, hidden 768, 12 heads of 64, intermediate 2048,
// vocab 32000, elu+1 linear attention + K = 4 depthwise conv on v (examples/paper/elu_dwconv.la) — with
// 3 Medusa heads; the draft model for draft:DIR is 2 layers, hidden 256, 4 heads, same vocabulary. --small
// (and any software adapter) uses decode.ts's small shape and few tokens so lavapipe finishes.
//
// Figures, each a greedy generation of the same prompt (64 tokens: a random 16-token phrase four times):
//   - plain decoding (generateGpu, pipelined as `linattn generate` runs): tokens/s, GPU ms per decode step;
//   - per draft source (n-gram, Medusa, draft model: top:4 under 16 draft nodes; oracle: chain:4): mean
//     accepted length, tokens/s, speed-up over plain, GPU ms per tree step, output identical to plain;
//   - the oracle (the target's own plain output replayed: every proposal is accepted) with chains of 1, 4,
//     16, 64 draft nodes — accepted length N + 1 — for the ceiling of speed-up against tree size, and the
//     GPU time of one tree step of that size against one decode step.
// With random weights the n-gram, Medusa and draft-model acceptance rates say nothing about trained models;
// their rows measure what drafting and verifying cost. Prints a table; writes speculative.json to --out,
// else $OUT, else out/.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseConfig, REPO_ROOT, type ModelConfig } from '../src/model/config.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import type { Tokenizer } from '../src/model/tokenizer.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { ModelDraft } from '../src/speculative/model-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { chainShape, parseTreeSpec, type TreeShape } from '../src/speculative/tree-spec.ts';
import { FULL, SMALL, type ModelShape } from './decode.ts';

const DRAFT_FULL: ModelShape = { layers: 2, hidden: 256, heads: 4, intermediate: 512, vocab: FULL.vocab, K: 4 };
const DRAFT_SMALL: ModelShape = { layers: 1, hidden: 64, heads: 2, intermediate: 128, vocab: SMALL.vocab, K: 4 };
const MEDUSA_HEADS = 3;
const ORACLE_SIZES = [1, 4, 16, 64];

export interface SpeculativeFigure {
  readonly source: string;
  readonly tree: string;
  /** Draft nodes per step (root excluded). */
  readonly maxNodes: number;
  readonly meanAccepted: number;
  readonly meanTreeNodes: number;
  readonly steps: number;
  readonly tokensPerS: number;
  readonly speedup: number;
  readonly draftMsPerStep: number;
  readonly gpuMsPerTreeStep: number | undefined;
  /** GPU time of one tree step over one plain decode step. */
  readonly treeStepOverDecodeStep: number | undefined;
  readonly identicalToPlain: boolean;
}

export interface SpeculativeBenchReport {
  readonly adapter: string;
  readonly software: boolean;
  readonly date: string;
  readonly model: ModelShape & { readonly medusaHeads: number };
  readonly draftModel: ModelShape;
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly timing: 'timestamp-query' | 'wall-clock only';
  readonly plain: { readonly tokensPerS: number; readonly gpuMsPerDecodeStep: number | undefined };
  readonly sources: readonly SpeculativeFigure[];
  readonly oracleBySize: readonly SpeculativeFigure[];
}

function benchConfig(shape: ModelShape, medusaHeads: number, name: string): ModelConfig {
  return parseConfig(
    {
      vocab_size: shape.vocab, hidden_size: shape.hidden, intermediate_size: shape.intermediate,
      num_hidden_layers: shape.layers, num_attention_heads: shape.heads, rms_norm_eps: 1e-5,
      tokenizer: 'bytes', attention: { variant: 'examples/paper/elu_dwconv.la', options: { K: shape.K } },
      ...(medusaHeads > 0 && { medusa: { num_heads: medusaHeads } }),
    },
    join(REPO_ROOT, 'bench', `${name}.json`),
  );
}

/** Ids only: the bench never prints text. */
const silent = (vocab: number): Tokenizer => ({ vocabSize: vocab, encode: () => [], decode: () => '' });

function prompt(vocab: number, seed: number): number[] {
  let x = seed >>> 0 || 1;
  const phrase = Array.from({ length: 16 }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % vocab;
  });
  return [...phrase, ...phrase, ...phrase, ...phrase];
}

async function targetModel(gpu: Gpu, config: ModelConfig, seed: number) {
  const variant = loadModelVariant(config);
  const weights = randomWeights(config, seed, variant.params);
  const model = await GpuModel.create(gpu, config, weights, await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim));
  return { variant, weights, model };
}

export async function runSpeculativeBench(opts: { small?: boolean; tokens?: number; log?: (s: string) => void } = {}): Promise<SpeculativeBenchReport> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const gpu = await getDevice();
  const small = opts.small ?? gpu.isSoftware;
  const shape = small ? SMALL : FULL;
  const draftShape = small ? DRAFT_SMALL : DRAFT_FULL;
  const newTokens = opts.tokens ?? (small ? 40 : 256);
  const config = benchConfig(shape, MEDUSA_HEADS, 'speculative-bench-target');
  const draftConfig = benchConfig(draftShape, 0, 'speculative-bench-draft');
  log(`speculative bench on ${gpu.adapterName}: ${shape.layers} layers, hidden ${shape.hidden}, vocab ${shape.vocab}, ${newTokens} new tokens${small ? ' (small)' : ''}`);

  const maxNodes = Math.max(16, ...ORACLE_SIZES);
  const target = await targetModel(gpu, config, 1);
  const sizes = [...ORACLE_SIZES, 16].map((n) => n + 1);
  const verifier = await GpuTreeVerifier.create(target.model, target.variant.compiled, target.weights, { maxNodes: maxNodes + 1, ownsModel: true, sizes });
  const draft = await targetModel(gpu, draftConfig, 2);
  const draftVerifier = await GpuTreeVerifier.create(draft.model, draft.variant.compiled, draft.weights, { maxNodes: maxNodes + 1, ownsModel: true, sizes });
  try {
    const ids = prompt(shape.vocab, 7);
    const tok = silent(shape.vocab);
    // Plain decoding: a warm-up run compiles its plans, the second is timed.
    await generateGpu(target.model, tok, [ids], { maxTokens: 8 });
    const plainRun = await generateGpu(target.model, tok, [ids], { maxTokens: newTokens });
    const plain = plainRun.tokens[0];
    const plainTps = plainRun.decodeTokensPerS ?? NaN;
    const decodeGpu = plainRun.decodeSteps.every((s) => s.gpuMs !== undefined) && plainRun.decodeSteps.length ? median(plainRun.decodeSteps.map((s) => s.gpuMs!)) : undefined;
    log(`plain decoding: ${plainTps.toFixed(1)} tokens/s, GPU ${decodeGpu?.toFixed(3) ?? '—'} ms per decode step`);

    await verifier.prepare({ medusaTopK: 4 });
    await draftVerifier.prepare({ topK: 4 });
    const run = async (source: string, d: () => DraftSource, shapeOf: TreeShape, nodes: number): Promise<SpeculativeFigure> => {
      // One short warm-up (bind groups, the shape's first encodes), then the timed run.
      await speculativeGenerate(verifier, d(), ids, { maxTokens: Math.min(newTokens, 2 * nodes + 4), shape: shapeOf, maxNodes: nodes });
      const r = await speculativeGenerate(verifier, d(), ids, { maxTokens: newTokens, shape: shapeOf, maxNodes: nodes });
      const tps = r.decodeTokensPerS ?? NaN;
      const gpuMs = r.gpuMsPerStep.length ? median(r.gpuMsPerStep) : undefined;
      const fig: SpeculativeFigure = {
        source, tree: shapeOf.spec, maxNodes: nodes, meanAccepted: r.meanAccepted, meanTreeNodes: r.meanTreeNodes, steps: r.steps,
        tokensPerS: tps, speedup: tps / plainTps, draftMsPerStep: r.steps ? r.draftMs / r.steps : 0,
        gpuMsPerTreeStep: gpuMs, treeStepOverDecodeStep: gpuMs !== undefined && decodeGpu ? gpuMs / decodeGpu : undefined,
        identicalToPlain: r.tokens.join(',') === plain.join(','),
      };
      log(`  ${source} --tree ${fig.tree} (≤ ${nodes} nodes): accepted ${fig.meanAccepted.toFixed(2)}/step, ${tps.toFixed(1)} tokens/s, ${fig.speedup.toFixed(2)}×`);
      return fig;
    };

    const sources: SpeculativeFigure[] = [];
    sources.push(await run('ngram', () => new NgramDraft(), parseTreeSpec('top:4'), 16));
    sources.push(await run('medusa', () => new MedusaDraft(MEDUSA_HEADS, 4), parseTreeSpec('top:4'), 16));
    sources.push(await run('draft model', () => new ModelDraft('draft model', draftVerifier, { temperature: 0 }, 0), parseTreeSpec('top:4'), 16));
    sources.push(await run('oracle', () => new OracleDraft(ids, plain, shape.vocab), chainShape(4), 4));
    const oracleBySize: SpeculativeFigure[] = [];
    for (const n of ORACLE_SIZES) oracleBySize.push(await run('oracle', () => new OracleDraft(ids, plain, shape.vocab), chainShape(n), n));

    return {
      adapter: gpu.adapterName,
      software: gpu.isSoftware,
      date: new Date().toISOString(),
      model: { ...shape, medusaHeads: MEDUSA_HEADS },
      draftModel: draftShape,
      promptTokens: ids.length,
      newTokens,
      timing: target.model.hasTimestamps ? 'timestamp-query' : 'wall-clock only',
      plain: { tokensPerS: plainTps, gpuMsPerDecodeStep: decodeGpu },
      sources,
      oracleBySize,
    };
  } finally {
    await draftVerifier.destroy();
    await verifier.destroy();
  }
}

const fmt = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));

export function formatReport(r: SpeculativeBenchReport): string[] {
  const m = r.model;
  const lines = [
    `model: ${m.layers} layers, hidden ${m.hidden}, ${m.heads} heads, intermediate ${m.intermediate}, vocab ${m.vocab}, K ${m.K}, ${m.medusaHeads} Medusa heads (random weights); draft model ${r.draftModel.layers} layers, hidden ${r.draftModel.hidden}`,
    `adapter: ${r.adapter}; GPU time by ${r.timing}; prompt ${r.promptTokens} tokens, ${r.newTokens} new tokens, greedy`,
    `plain decoding: ${fmt(r.plain.tokensPerS, 1)} tokens/s, GPU ${fmt(r.plain.gpuMsPerDecodeStep)} ms per decode step`,
  ];
  const table = (title: string, figs: readonly SpeculativeFigure[]) => {
    const rows = [['source', 'tree', 'nodes', 'accepted/step', 'tokens/s', 'speed-up', 'draft ms/step', 'GPU ms/tree step', 'tree/decode step', 'same as plain']];
    for (const f of figs) {
      rows.push([f.source, f.tree, String(f.maxNodes), fmt(f.meanAccepted, 2), fmt(f.tokensPerS, 1), `${fmt(f.speedup, 2)}×`, fmt(f.draftMsPerStep, 2), fmt(f.gpuMsPerTreeStep), f.treeStepOverDecodeStep === undefined ? '—' : `${fmt(f.treeStepOverDecodeStep, 2)}×`, f.identicalToPlain ? 'yes' : 'no']);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    lines.push(title);
    for (const row of rows) lines.push('  ' + row.map((c, i) => c.padStart(widths[i])).join('  '));
  };
  table('draft sources (speed-up against plain decoding in the same run):', r.sources);
  table('oracle draft by tree size (chains; every proposal accepted: the verification ceiling):', r.oracleBySize);
  return lines;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const tokens = valueOf('--tokens');
  if (tokens !== undefined && !(Number.isInteger(Number(tokens)) && Number(tokens) >= 2)) throw new Error(`--tokens must be an integer ≥ 2, got ${tokens}`);
  const report = await runSpeculativeBench({ small: args.includes('--small') || undefined, ...(tokens !== undefined && { tokens: Number(tokens) }) });
  for (const line of formatReport(report)) console.log(line);
  const outDir = valueOf('--out') ?? process.env.OUT ?? 'out';
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, 'speculative.json');
  writeFileSync(file, JSON.stringify(report, null, 2) + '\n');
  console.log(`wrote ${file}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e instanceof Error ? e.stack ?? e.message : e);
      process.exit(1);
    },
  );
}
