// Speculative decoding against plain decoding on the GPU, same model, same prompt, same run.
//
//   npm run bench:speculative [-- --small] [--tokens N] [--no-profile] [--leave-out] [--oracle-only] [--out DIR]
//
// Model (random weights): bench/decode.ts's — 12 layers, hidden 768, 12 heads of 64, intermediate 2048,
// vocab 32000, elu+1 linear attention + K = 4 depthwise conv on v (examples/paper/elu_dwconv.la) — with
// 3 Medusa heads; the draft model for draft:DIR is 2 layers, hidden 256, 4 heads, same vocabulary. --small
// (and any software adapter) uses decode.ts's small shape and few tokens so lavapipe finishes.
//
// Every figure is a greedy generation of the same prompt (64 tokens: a random 16-token phrase four times),
// timed after a sustained warm-up of the same work (a GPU left idle drops its clocks):
//   - plain decoding: generateGpu, exactly what `linattn generate` runs (several steps in flight): the
//     tokens/s every speed-up is against; and the GPU time of one decode step, from a run with one step in
//     flight (with several queued, a step's begin timestamp may be written while the previous one still runs);
//   - per draft source (n-gram, adaptive, Medusa, draft model: 16 draft nodes; oracle: chain:4): mean accepted
//     length, tokens/s, speed-up, GPU ms per tree step and its ratio to the decode step, identical output;
//     then n-gram, adaptive, Medusa and the oracle with `--tree auto` (linattn generate's default: plain runs
//     and a few trees chosen step by step by measured speed), with each mode's share of the tokens and tokens/s;
//   - the oracle (the target's own plain output replayed: every proposal accepted) with chains of 1, 4, 16, 64
//     draft nodes: the speed-up ceiling against tree size, and the GPU time of a tree step of that size;
//   - batch 8 (eight prompts): plain generateGpu against batch speculation (oracle chain:4, adaptive best:4, the
//     latter also in lockstep: every sequence committing the batch's shortest accepted path; then both cost-aware,
//     `--tree auto`'s plain steps or trees for the batch, step by step); then the prompts cut to
//     different lengths (the longest kept): the start's cost against equal prompts, and the oracle's chain:4 on them;
//   - unless --no-profile (and with timestamp queries): where a decode step's and each oracle tree step's GPU
//     time goes, kernel by kernel (runtime/dispatch-profile.ts: every dispatch replayed in a timed pass of
//     its own), with the weight bytes each step's matmuls read; each oracle tree step twice: folded (its tree
//     launches commit the previous path, the verifier's default) and with the commit's own launch per layer
//     (GpuVerifierOptions.foldUpTo 0), the 'tree N +commit' columns. With --leave-out also what each kernel adds
//     to the decode step and each folded tree step run back to back (dispatch-profile.ts timeLeavingOut): a
//     dispatch in a pass of its own overstates its share of a stream.
// --oracle-only: the verification-cost figures alone (plain decoding, the oracle by tree size, the profile).
// With random weights the n-gram, adaptive, Medusa and draft-model acceptance says nothing about trained
// models; their rows measure what drafting and verifying cost. Prints tables; writes speculative.json to
// --out, else $OUT, else out/.
import { join } from 'node:path';
import { parseConfig, REPO_ROOT, type ModelConfig } from '../src/model/config.ts';
import { generateGpu, type GenerateResult } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { ProfilingPass, timeDispatchesOf, timeLeavingOut, timeStepStream } from '../src/runtime/dispatch-profile.ts';
import { median } from '../src/runtime/timing.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { autoSpeculation, autoTrees, batchController, batchWarmUpSchedule } from '../src/speculative/auto-trees.ts';
import { speculativeGenerate, type TreeOption } from '../src/speculative/generate.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { CHAIN_RUNS_IN_FLIGHT } from '../src/speculative/gpu-chain-batch.ts';
import { FixedSchedule, formatPolicySummary, type OptionSummary } from '../src/speculative/speculation-controller.ts';
import { speculativeGenerateBatch, type BatchAuto } from '../src/speculative/generate-batch.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { ModelDraft } from '../src/speculative/model-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { chainShape, parseTreeSpec, type TreeShape } from '../src/speculative/tree-spec.ts';
import { FULL, SMALL, silentTokenizer, type ModelShape } from './decode.ts';
import { formatTable, leaveOutTable, matmulReads, profileTable, stepProfile, treeStepMatmuls, type StepProfile } from './step-profile.ts';
import { adapterHeader, type AdapterHeader, flagValue, runIfMain, writeReport } from './script.ts';

const DRAFT_FULL: ModelShape = { layers: 2, hidden: 256, heads: 4, intermediate: 512, vocab: FULL.vocab, K: 4 };
const DRAFT_SMALL: ModelShape = { layers: 1, hidden: 64, heads: 2, intermediate: 128, vocab: SMALL.vocab, K: 4 };
const MEDUSA_HEADS = 3;
const ORACLE_SIZES = [1, 4, 16, 64];
const BATCH = 8;
/** Draft nodes per sequence in the batch figures: 8 × (15 + 1) = 128 rows, the fused small-M kernels' limit. */
const BATCH_NODES = 15;
/** Sustained warm-up before every timed figure on a hardware GPU (none on a software one). */
const WARM_MS = 300;
/** Timed runs of plain decoding on a hardware adapter; their median is the speed-ups' baseline. */
const PLAIN_RUNS = 5;

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
  /** `auto`: per mode (plain, then each tree) decisions, tokens and ms. */
  readonly modes?: readonly OptionSummary[];
}

export interface BatchFigure {
  readonly source: string;
  readonly tree: string;
  readonly maxNodes: number;
  /** Each sequence committed its own path (the default), or the batch the shortest (lockstep: the mode softmax attention runs in). */
  readonly lockstep: boolean;
  readonly steps: number;
  /** Tokens each sequence emitted per step, and what it accepted before the batch's shortest cut it. */
  readonly meanCommitted: number;
  readonly meanAccepted: number;
  readonly tokensPerS: number;
  readonly speedup: number;
  readonly gpuMsPerStep: number | undefined;
  readonly identicalToPlain: boolean;
  /** `auto`: per mode (plain, then each tree) decisions, tokens and ms. */
  readonly modes?: readonly OptionSummary[];
}

/** Batch 8 with prompts of different lengths (src/model/ragged-prompts.ts): the start's cost and the oracle's chain:4. */
export interface RaggedFigure {
  readonly promptTokens: readonly number[];
  /** Until every sequence's first token is on the host: ragged prompts, and the equal-length batch's (same run). */
  readonly plainPrefillMs: number;
  readonly equalPrefillMs: number;
  readonly plainTokensPerS: number;
  readonly oracle: {
    readonly tokensPerS: number; readonly speedup: number; readonly steps: number; readonly meanCommitted: number; readonly identicalToPlain: boolean;
    /** The speculative batch's start (GpuTreeVerifier.startBatch: greedy, the rests fed as chains of tree steps). */
    readonly prefillMs: number;
  };
}

/**
 * Batch 8 decoded by batch.auto's plain option alone: root-only steps through the batch verifier, chained (runs of
 * steps whose picks become the next roots on the GPU, one readback a run: the default where the batch is greedy) or
 * one readback a step (lockstep, which does not chain). A step's wall ms; the host's ms to the submits and waiting for
 * the readbacks, and the GPU's, per step (GpuTreeVerifier.chainBatchTimes / stepTimes); against generate.
 */
export interface RootOnlyFigure {
  readonly chained: boolean;
  /** Chained: runs submitted and not read at most (chainRunsInFlight). */
  readonly runsInFlight?: number;
  /** Steps a plain decision runs (each decision ends in a readback). */
  readonly stepsADecision?: number;
  readonly steps: number;
  readonly wallMsPerStep: number;
  readonly encodeMsPerStep: number;
  readonly waitMsPerStep: number;
  readonly gpuMsPerStep: number | undefined;
  readonly tokensPerS: number;
  readonly speedup: number;
  readonly identicalToPlain: boolean;
}

export interface SpeculativeBenchReport extends AdapterHeader {
  readonly model: ModelShape & { readonly medusaHeads: number };
  readonly draftModel: ModelShape;
  readonly promptTokens: number;
  readonly newTokens: number;
  readonly timing: 'timestamp-query' | 'wall-clock only';
  readonly plain: { readonly tokensPerS: number; readonly gpuMsPerDecodeStep: number | undefined };
  readonly sources: readonly SpeculativeFigure[];
  readonly oracleBySize: readonly SpeculativeFigure[];
  readonly batch: { readonly sequences: number; readonly plainTokensPerS: number; readonly figures: readonly BatchFigure[]; readonly rootOnly?: readonly RootOnlyFigure[]; readonly ragged?: RaggedFigure };
  readonly profile: readonly StepProfile[];
}

export function benchConfig(shape: ModelShape, medusaHeads: number, name: string): ModelConfig {
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

export function benchPrompt(vocab: number, seed: number): number[] {
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

const gpuMedian = (r: GenerateResult) => (r.decodeSteps.length && r.decodeSteps.every((s) => s.gpuMs !== undefined) ? median(r.decodeSteps.map((s) => s.gpuMs!)) : undefined);

export async function runSpeculativeBench(opts: { small?: boolean; tokens?: number; profile?: boolean; leaveOut?: boolean; oracleOnly?: boolean; log?: (s: string) => void } = {}): Promise<SpeculativeBenchReport> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const gpu = await getDevice();
  const small = opts.small ?? gpu.isSoftware;
  const shape = small ? SMALL : FULL;
  const draftShape = small ? DRAFT_SMALL : DRAFT_FULL;
  const newTokens = opts.tokens ?? (small ? 40 : 256);
  const config = benchConfig(shape, MEDUSA_HEADS, 'speculative-bench-target');
  const draftConfig = benchConfig(draftShape, 0, 'speculative-bench-draft');
  log(`speculative bench on ${gpu.adapterName} (Dawn toggles: ${gpu.toggles.join(', ') || 'none'}): ${shape.layers} layers, hidden ${shape.hidden}, vocab ${shape.vocab}, ${newTokens} new tokens${small ? ' (small)' : ''}`);
  /**
   * Runs `work` until WARM_MS have passed (once on a software adapter), then `timed` once. The warm-up is the
   * timed run itself, so that every plan and pipeline it meets (a last step's smaller tree too) was used before:
   * lavapipe compiles a pipeline at its first dispatch, inside the step's GPU time.
   */
  const warm = async <T>(work: () => Promise<unknown>, timed: () => Promise<T>): Promise<T> => {
    const until = performance.now() + (gpu.isSoftware ? 0 : WARM_MS);
    do await work(); while (performance.now() < until);
    return timed();
  };

  const maxNodes = Math.max(16, ...ORACLE_SIZES);
  const target = await targetModel(gpu, config, 1);
  const sizes = [...ORACLE_SIZES, 16, 8].map((n) => n + 1); // 8: auto's dynamic tree at 8 nodes
  const verifier = await GpuTreeVerifier.create(target.model, target.variant.compiled, target.weights, { maxNodes: maxNodes + 1, maxBatch: BATCH, ownsModel: true, sizes });
  const draft = opts.oracleOnly ? undefined : await targetModel(gpu, draftConfig, 2);
  const draftVerifier = draft && (await GpuTreeVerifier.create(draft.model, draft.variant.compiled, draft.weights, { maxNodes: maxNodes + 1, ownsModel: true, sizes }));
  try {
    const ids = benchPrompt(shape.vocab, 7);
    const tok = silentTokenizer(shape.vocab);
    // `linattn generate`'s loop: no step timestamps, unless asked (the decode step's GPU time below).
    const plainOf = (maxTokens: number, extra: { pipelined?: boolean; stepTimes?: boolean } = {}) => generateGpu(target.model, tok, [ids], { maxTokens, stepTimes: false, ...extra });
    const plainRun = await warm(() => plainOf(newTokens), () => plainOf(newTokens));
    const plain = plainRun.tokens[0];
    // The median of PLAIN_RUNS runs: one run's figure swung 2.5× on the H200's host (775–2330 tokens/s in call 33
    // for runs of one model back to back), and every speed-up below is divided by it.
    const plainRuns = [plainRun.decodeTokensPerS ?? NaN];
    if (!gpu.isSoftware) for (let i = 1; i < PLAIN_RUNS; i++) plainRuns.push((await plainOf(newTokens)).decodeTokensPerS ?? NaN);
    const plainTps = median(plainRuns);
    const decodeGpu = gpuMedian(await plainOf(Math.min(newTokens, 64), { pipelined: false, stepTimes: true }));
    log(`plain decoding (generateGpu): ${plainTps.toFixed(1)} tokens/s (median of ${plainRuns.length} runs, ${Math.min(...plainRuns).toFixed(0)}–${Math.max(...plainRuns).toFixed(0)}); GPU ${decodeGpu?.toFixed(3) ?? '—'} ms per decode step (one step in flight)`);

    await verifier.prepare({ medusaTopK: 4 });
    await draftVerifier?.prepare({ topK: 4 });
    /** With `auto` trees, --tree auto: `shapeOf` then only sets the candidates per node (Medusa's top-k). */
    const run = async (source: string, d: () => DraftSource, shapeOf: TreeShape, nodes: number, auto?: readonly TreeOption[]): Promise<SpeculativeFigure> => {
      const once = (maxTokens: number) =>
        speculativeGenerate(verifier, d(), ids, {
          maxTokens, shape: shapeOf, maxNodes: nodes,
          ...(auto && { auto: autoSpeculation(auto, new GpuPlainDecoder(verifier, { temperature: 0 })) }),
        });
      const r = await warm(() => once(newTokens), () => once(newTokens));
      const tps = r.decodeTokensPerS ?? NaN;
      const gpuMs = r.gpuMsPerStep.length ? median(r.gpuMsPerStep) : undefined;
      const fig: SpeculativeFigure = {
        source, tree: auto ? 'auto' : shapeOf.spec, maxNodes: nodes, meanAccepted: r.meanAccepted, meanTreeNodes: r.meanTreeNodes, steps: r.steps,
        tokensPerS: tps, speedup: tps / plainTps, draftMsPerStep: r.steps ? r.draftMs / r.steps : 0,
        gpuMsPerTreeStep: gpuMs, treeStepOverDecodeStep: gpuMs !== undefined && decodeGpu ? gpuMs / decodeGpu : undefined,
        identicalToPlain: r.tokens.join(',') === plain.join(','),
        ...(r.policy && { modes: r.policy }),
      };
      log(`  ${source} --tree ${fig.tree} (≤ ${nodes} nodes): accepted ${fig.meanAccepted.toFixed(2)}/step, ${tps.toFixed(1)} tokens/s, ${fig.speedup.toFixed(2)}×` +
        (fig.modes ? `\n    auto: ${formatPolicySummary(fig.modes)}` : ''));
      return fig;
    };

    const sources: SpeculativeFigure[] = [];
    if (!opts.oracleOnly) {
      sources.push(await run('ngram', () => new NgramDraft(), parseTreeSpec('top:4'), 16));
      sources.push(await run('adaptive', () => new AdaptiveDraft(0), parseTreeSpec('best:4'), 16));
      sources.push(await run('medusa', () => new MedusaDraft(MEDUSA_HEADS, 4), parseTreeSpec('top:4'), 16));
      sources.push(await run('draft model', () => new ModelDraft('draft model', draftVerifier!, { temperature: 0 }, 0), parseTreeSpec('top:4'), 16));
      sources.push(await run('oracle', () => new OracleDraft(ids, plain, shape.vocab), chainShape(4), 4));
      sources.push(await run('ngram', () => new NgramDraft(), parseTreeSpec('top:4'), 16, autoTrees('ngram', 16)));
      sources.push(await run('adaptive', () => new AdaptiveDraft(0), parseTreeSpec('best:4'), 16, autoTrees('adaptive', 16)));
      sources.push(await run('medusa', () => new MedusaDraft(MEDUSA_HEADS, 4), parseTreeSpec('top:4'), 16, autoTrees('medusa', 16, MEDUSA_HEADS)));
      sources.push(await run('oracle', () => new OracleDraft(ids, plain, shape.vocab), chainShape(16), 16, autoTrees('oracle', 16)));
    }
    const oracleBySize: SpeculativeFigure[] = [];
    for (const n of ORACLE_SIZES) oracleBySize.push(await run('oracle', () => new OracleDraft(ids, plain, shape.vocab), chainShape(n), n));

    // Batch 8: eight prompts, plain generateGpu against batch speculation.
    const prompts = Array.from({ length: BATCH }, (_, s) => benchPrompt(shape.vocab, 100 + s));
    const plainBatchOf = (maxTokens: number) => generateGpu(target.model, tok, prompts, { maxTokens, stepTimes: false });
    const plainBatch = opts.oracleOnly ? { tokens: [], decodeTokensPerS: NaN } : await warm(() => plainBatchOf(newTokens), () => plainBatchOf(newTokens));
    const plainBatchTps = plainBatch.decodeTokensPerS ?? NaN;
    if (!opts.oracleOnly) log(`plain decoding, batch ${BATCH}: ${plainBatchTps.toFixed(1)} tokens/s`);
    // auto: a fresh controller over autoTrees(source, nodes) for every run, as `linattn generate` makes one per batch.
    const batchRun = async (source: string, d: (s: number) => DraftSource, shapeOf: TreeShape, nodes: number, lockstep = false, auto = false): Promise<BatchFigure> => {
      const trees = autoTrees(source, nodes);
      const autoOf = (): BatchAuto => ({ policy: batchController(trees), trees });
      const once = (maxTokens: number) => speculativeGenerateBatch(verifier, prompts.map((_, s) => d(s)), prompts, { maxTokens, shape: shapeOf, maxNodes: nodes }, { lockstep, ...(auto && { auto: autoOf() }) });
      // auto: first every option at both folded state sets (batchWarmUpSchedule), as `linattn generate` warms up.
      if (auto) await speculativeGenerateBatch(verifier, prompts.map((_, s) => d(s)), prompts, { maxTokens: newTokens, shape: shapeOf, maxNodes: nodes }, { auto: { policy: batchWarmUpSchedule(trees), trees } });
      const r = await warm(() => once(newTokens), () => once(newTokens));
      const tps = r.decodeTokensPerS ?? NaN;
      const fig: BatchFigure = {
        source, tree: auto ? 'auto' : shapeOf.spec, maxNodes: nodes, lockstep, steps: r.steps, meanCommitted: r.meanCommitted, meanAccepted: r.meanAccepted, tokensPerS: tps, speedup: tps / plainBatchTps,
        gpuMsPerStep: r.gpuMsPerStep.length ? median(r.gpuMsPerStep) : undefined,
        identicalToPlain: r.tokens.every((t, s) => t.join(',') === plainBatch.tokens[s].join(',')),
        ...(r.policy && { modes: r.policy }),
      };
      log(`  batch ${BATCH} ${source} --tree ${fig.tree}${lockstep ? ' lockstep' : ''}: ${r.steps} steps, ${fig.meanCommitted.toFixed(2)} tokens/step per sequence, ${tps.toFixed(1)} tokens/s, ${fig.speedup.toFixed(2)}×`);
      if (r.policy) log(`    auto: ${formatPolicySummary(r.policy)}`);
      return fig;
    };
    const batchFigures = opts.oracleOnly
      ? []
      : [
          await batchRun('oracle', (s) => new OracleDraft(prompts[s], plainBatch.tokens[s], shape.vocab), chainShape(4), 4),
          await batchRun('adaptive', (s) => new AdaptiveDraft(s), parseTreeSpec('best:4'), BATCH_NODES),
          await batchRun('adaptive', (s) => new AdaptiveDraft(s), parseTreeSpec('best:4'), BATCH_NODES, true),
          await batchRun('oracle', (s) => new OracleDraft(prompts[s], plainBatch.tokens[s], shape.vocab), chainShape(4), BATCH_NODES, false, true),
          await batchRun('adaptive', (s) => new AdaptiveDraft(s), parseTreeSpec('best:4'), BATCH_NODES, false, true),
        ];
    // What auto's plain option costs in a batch: root-only steps through the verifier, chained and read back a step.
    const rootOnly: RootOnlyFigure[] = [];
    // Chained with 1 … 6 runs in flight (1: each run read before the next is encoded), the default's among them, in one
    // decision of every token; the default also in decisions of 16 steps (each ends in a readback: auto's shortest).
    const depths = [...new Set([1, 2, CHAIN_RUNS_IN_FLIGHT, 4, 6])].sort((a, b) => a - b);
    const rows = [...depths.map((d) => [true, d, newTokens] as const), [true, CHAIN_RUNS_IN_FLIGHT, 16] as const, [false, undefined, 16] as const];
    for (const [chained, inFlight, plainRun] of opts.oracleOnly ? [] : rows) {
      const once = () => speculativeGenerateBatch(verifier, prompts.map(() => new NgramDraft()), prompts, { maxTokens: newTokens, shape: chainShape(1), maxNodes: 1, ...(inFlight && { chainRunsInFlight: inFlight }) }, { lockstep: !chained, auto: { policy: new FixedSchedule([], [0], plainRun), trees: [] } });
      await warm(once, async () => undefined);
      const times = () => (chained ? verifier.chainBatchTimes : { ...verifier.stepTimes, gpuMs: NaN });
      const before = times();
      const r = await once();
      const after = times();
      const n = after.steps - before.steps;
      const tps = r.decodeTokensPerS ?? NaN;
      const fig: RootOnlyFigure = {
        chained, ...(inFlight && { runsInFlight: inFlight }), stepsADecision: plainRun, steps: r.steps, wallMsPerStep: r.decodeMs / r.steps, encodeMsPerStep: (after.encodeMs - before.encodeMs) / n, waitMsPerStep: (after.waitMs - before.waitMs) / n,
        gpuMsPerStep: r.gpuMsPerStep.length ? median(r.gpuMsPerStep) : undefined, tokensPerS: tps, speedup: tps / plainBatchTps,
        identicalToPlain: r.tokens.every((t, s) => t.join(',') === plainBatch.tokens[s].join(',')),
      };
      rootOnly.push(fig);
      log(`  batch ${BATCH} root-only steps (auto's plain option), ${chained ? `chained, ${inFlight} run(s) in flight` : 'a readback a step'}, decisions of ${plainRun} steps: ${fmt(fig.wallMsPerStep)} ms a step (to the submits ${fmt(fig.encodeMsPerStep)}, waiting ${fmt(fig.waitMsPerStep)}, GPU ${fmt(fig.gpuMsPerStep)}), ${tps.toFixed(1)} tokens/s, ${fmt(fig.speedup, 2)}×`);
    }
    // The same prompts cut to 64, 60, … tokens: their common part prefilled, the rest fed a token a step.
    let ragged: RaggedFigure | undefined;
    if (!opts.oracleOnly && 'prefillMs' in plainBatch) {
      const cut = prompts.map((p, s) => p.slice(0, Math.max(1, p.length - Math.ceil(p.length / 16) * s)));
      const plainCut = await warm(() => generateGpu(target.model, tok, cut, { maxTokens: newTokens, stepTimes: false }), () => generateGpu(target.model, tok, cut, { maxTokens: newTokens, stepTimes: false }));
      const once = () => speculativeGenerateBatch(verifier, cut.map((p, s) => new OracleDraft(p, plainCut.tokens[s], shape.vocab)), cut, { maxTokens: newTokens, shape: chainShape(4), maxNodes: 4 });
      const r = await warm(once, once);
      const tps = r.decodeTokensPerS ?? NaN;
      ragged = {
        promptTokens: cut.map((p) => p.length), plainPrefillMs: plainCut.prefillMs, equalPrefillMs: plainBatch.prefillMs, plainTokensPerS: plainCut.decodeTokensPerS ?? NaN,
        oracle: { prefillMs: r.prefillMs, tokensPerS: tps, speedup: tps / (plainCut.decodeTokensPerS ?? NaN), steps: r.steps, meanCommitted: r.meanCommitted, identicalToPlain: r.tokens.every((t, s) => t.join(',') === plainCut.tokens[s].join(',')) },
      };
      log(`  batch ${BATCH} ragged (prompts ${ragged.promptTokens.join(', ')}): plain prefill ${ragged.plainPrefillMs.toFixed(1)} ms, speculative start ${r.prefillMs.toFixed(1)} ms (equal prompts ${ragged.equalPrefillMs.toFixed(1)}), oracle chain:4 ${tps.toFixed(1)} tokens/s, ${ragged.oracle.speedup.toFixed(2)}×`);
    }

    const profile = opts.profile !== false && gpu.hasTimestamps ? await profileSteps(gpu, target.model, verifier, ids, opts.leaveOut === true) : [];
    return {
      ...adapterHeader(gpu),
      model: { ...shape, medusaHeads: MEDUSA_HEADS },
      draftModel: draftShape,
      promptTokens: ids.length,
      newTokens,
      timing: target.model.hasTimestamps ? 'timestamp-query' : 'wall-clock only',
      plain: { tokensPerS: plainTps, gpuMsPerDecodeStep: decodeGpu },
      sources,
      oracleBySize,
      batch: { sequences: BATCH, plainTokensPerS: plainBatchTps, figures: batchFigures, ...(rootOnly.length && { rootOnly }), ...(ragged && { ragged }) },
      profile,
    };
  } finally {
    await draftVerifier?.destroy();
    await verifier.destroy();
  }
}

/** The decode step and an oracle-shaped tree step of each size (a chain, its whole path committed first), kernel by kernel. */
async function profileSteps(gpu: Gpu, model: GpuModel, verifier: GpuTreeVerifier, ids: readonly number[], leaveOut: boolean): Promise<StepProfile[]> {
  const V = model.config.vocabSize;
  const layers = model.config.numLayers;
  await (await model.prefill([ids])).tokens();
  await model.decodeStep().tokens();
  const pass = new ProfilingPass();
  model.recordDecodeStep(pass.asPass());
  const out = [{
    ...stepProfile('decode step', 1, await timeDispatchesOf(gpu, pass.dispatches), matmulReads(model.decodeMatmuls, layers), model.weightBytesPerToken),
    streamMs: await timeStepStream(gpu, pass.dispatches),
    ...(leaveOut && { leaveOut: await timeLeavingOut(gpu, pass.dispatches) }),
  }];
  const foldUpTo = verifier.foldUpTo;
  for (const n of ORACLE_SIZES) {
    for (const fold of [true, false]) {
      verifier.foldUpTo = fold ? foldUpTo : 0;
      await verifier.start(ids, { temperature: 0 }, 0);
      const tree = treeFromParents(Array.from({ length: n + 1 }, (_, i) => (ids[i % ids.length] + i) % V), Array.from({ length: n + 1 }, (_, i) => i - 1));
      await verifier.verify({ tree });
      verifier.commit(Array.from({ length: n + 1 }, (_, i) => i));
      const plan = await model.planStep(1, n + 1, { pickRows: true, qkvPerLayer: true });
      const times = await verifier.profileStep({ trees: [tree] });
      const step = `tree step, chain of ${n}, commit of ${n + 1}${fold ? ' folded' : ' in a launch of its own'}`;
      out.push({
        ...stepProfile(step, n + 1, times, matmulReads(treeStepMatmuls(plan), layers)), streamMs: await verifier.streamStep({ trees: [tree] }),
        ...(leaveOut && fold && { leaveOut: await timeLeavingOut(gpu, await verifier.recordStep({ trees: [tree] })) }),
      });
    }
  }
  verifier.foldUpTo = foldUpTo;
  // A Medusa step: the chain of 4 with every head's top-4 at the accepted node (gpu-heads.ts: the heads' dispatches).
  if (verifier.medusaHeads > 0) {
    const n = 4;
    await verifier.start(ids, { temperature: 0 }, 0);
    const tree = treeFromParents(Array.from({ length: n + 1 }, (_, i) => (ids[i % ids.length] + i) % V), Array.from({ length: n + 1 }, (_, i) => i - 1));
    const req = { trees: [tree], medusaTopK: 4 };
    await verifier.verify({ tree, medusaTopK: 4 });
    verifier.commit(Array.from({ length: n + 1 }, (_, i) => i));
    const plan = await model.planStep(1, n + 1, { pickRows: true, qkvPerLayer: true });
    const times = await verifier.profileStep(req);
    out.push({ ...stepProfile(`Medusa tree step, chain of ${n}, ${verifier.medusaHeads} heads' top-4`, n + 1, times, matmulReads(treeStepMatmuls(plan), layers)), streamMs: await verifier.streamStep(req) });
  }
  return out;
}

const fmt = (x: number | undefined, d = 3) => (x === undefined || Number.isNaN(x) ? '—' : x.toFixed(d));

function table(lines: string[], title: string, rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  lines.push(title);
  for (const row of rows) lines.push('  ' + row.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
}

export function formatReport(r: SpeculativeBenchReport): string[] {
  const m = r.model;
  const lines = [
    `model: ${m.layers} layers, hidden ${m.hidden}, ${m.heads} heads, intermediate ${m.intermediate}, vocab ${m.vocab}, K ${m.K}, ${m.medusaHeads} Medusa heads (random weights); draft model ${r.draftModel.layers} layers, hidden ${r.draftModel.hidden}`,
    `adapter: ${r.adapter}; GPU time by ${r.timing}; prompt ${r.promptTokens} tokens, ${r.newTokens} new tokens, greedy`,
    `plain decoding (generateGpu, what linattn generate runs): ${fmt(r.plain.tokensPerS, 1)} tokens/s; GPU ${fmt(r.plain.gpuMsPerDecodeStep)} ms per decode step`,
  ];
  const figRows = (figs: readonly SpeculativeFigure[]) => [
    ['source', 'tree', 'nodes', 'accepted/step', 'tokens/s', 'speed-up', 'draft ms/step', 'GPU ms/tree step', 'tree/decode step', 'same as plain'],
    ...figs.map((f) => [f.source, f.tree, String(f.maxNodes), fmt(f.meanAccepted, 2), fmt(f.tokensPerS, 1), `${fmt(f.speedup, 2)}×`, fmt(f.draftMsPerStep, 2), fmt(f.gpuMsPerTreeStep), f.treeStepOverDecodeStep === undefined ? '—' : `${fmt(f.treeStepOverDecodeStep, 2)}×`, f.identicalToPlain ? 'yes' : 'no']),
  ];
  if (r.sources.length) table(lines, 'draft sources (speed-up against plain generateGpu in the same run):', figRows(r.sources));
  table(lines, `oracle draft by tree size (chains; every proposal accepted: the verification ceiling; decode step ${fmt(r.plain.gpuMsPerDecodeStep)} ms):`, figRows(r.oracleBySize));
  if (r.batch.figures.length) table(lines, `batch ${r.batch.sequences} (plain generateGpu: ${fmt(r.batch.plainTokensPerS, 1)} tokens/s):`, [
    ['source', 'tree', 'nodes', 'commits', 'steps', 'tokens/step/seq', 'accepted/step', 'tokens/s', 'speed-up', 'GPU ms/step', 'same as plain'],
    ...r.batch.figures.map((f) => [f.source, f.tree, String(f.maxNodes), f.lockstep ? 'lockstep' : 'own', String(f.steps), fmt(f.meanCommitted, 2), fmt(f.meanAccepted, 2), fmt(f.tokensPerS, 1), `${fmt(f.speedup, 2)}×`, fmt(f.gpuMsPerStep), f.identicalToPlain ? 'yes' : 'no']),
  ]);
  for (const ro of r.batch.rootOnly ?? []) {
    lines.push(
      `batch ${r.batch.sequences} by root-only steps through the verifier (auto's plain option), ${ro.chained ? `chained, ${ro.runsInFlight ?? 2} run(s) in flight` : 'a readback a step'}, decisions of ${ro.stepsADecision ?? 16} steps: ${ro.steps} steps, ${fmt(ro.wallMsPerStep)} ms a step (host to the submits ` +
        `${fmt(ro.encodeMsPerStep)}, waiting for the readbacks ${fmt(ro.waitMsPerStep)}, GPU ${fmt(ro.gpuMsPerStep)}), ${fmt(ro.tokensPerS, 1)} tokens/s, ${fmt(ro.speedup, 2)}×, same as plain ${ro.identicalToPlain ? 'yes' : 'no'}`,
    );
  }
  const rg = r.batch.ragged;
  if (rg) {
    lines.push(
      `batch ${r.batch.sequences}, prompts of ${rg.promptTokens.join(', ')} tokens: plain prefill ${fmt(rg.plainPrefillMs, 1)} ms (equal ${rg.promptTokens[0]}-token prompts: ${fmt(rg.equalPrefillMs, 1)}), ` +
        `decode ${fmt(rg.plainTokensPerS, 1)} tokens/s; the speculative batch's start ${fmt(rg.oracle.prefillMs, 1)} ms; oracle chain:4 ${fmt(rg.oracle.tokensPerS, 1)} tokens/s, ${fmt(rg.oracle.speedup, 2)}×, ${fmt(rg.oracle.meanCommitted, 2)} tokens/step per sequence, same as plain ${rg.oracle.identicalToPlain ? 'yes' : 'no'}`,
    );
  }
  if (r.profile.length) {
    const column = (p: StepProfile) => (p.rows === 1 ? 'decode' : `tree ${p.rows - 1}${p.step.startsWith('Medusa') ? ' + heads' : ''}${p.step.endsWith('own') ? ' +commit' : ''}`);
    lines.push(...formatTable('where the GPU time goes: ms (dispatches) per kernel, each dispatch timed in a pass of its own', profileTable(r.profile, column)));
    if (r.profile.some((p) => p.leaveOut)) {
      lines.push(...formatTable("what each kernel adds to a step run back to back: the step's ms less its ms without that kernel's dispatches (--leave-out)", leaveOutTable(r.profile, column)));
    }
  }
  return lines;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const valueOf = (flag: string) => flagValue(args, flag);
  const tokens = valueOf('--tokens');
  if (tokens !== undefined && !(Number.isInteger(Number(tokens)) && Number(tokens) >= 2)) throw new Error(`--tokens must be an integer ≥ 2, got ${tokens}`);
  const report = await runSpeculativeBench({
    small: args.includes('--small') || undefined,
    ...(tokens !== undefined && { tokens: Number(tokens) }),
    profile: !args.includes('--no-profile'),
    leaveOut: args.includes('--leave-out'),
    oracleOnly: args.includes('--oracle-only'),
  });
  for (const line of formatReport(report)) console.log(line);
  writeReport(valueOf('--out') ?? process.env.OUT ?? 'out', 'speculative.json', report);
}

runIfMain(import.meta.url, main, { stack: true });
