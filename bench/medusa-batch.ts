// Batch speculation on a trained model (issue 14: batch 8 with per-sequence acceptance): B held-out prompts of the
// data decoded together, plain batched `generateGpu` (what a batch of `linattn generate` runs) against
// speculativeGenerateBatch with the checkpoint's Medusa heads per sequence, each sequence committing its own
// accepted path (the default) and, beside it, in lockstep (the batch's shortest path; the mode softmax attention
// runs in), plus the oracle (plain decoding's own output replayed: the ceiling of a tree shape). With --chain-steps R,
// each static tree also runs chained (GpuTreeVerifier.beginChainBatch: R steps a submit and a readback, acceptance and
// the next trees on the GPU), each run continued before the last is read (continueChainBatch) and, with
// --chain-overlap both, also each run read before the next is encoded.
//
//   npx tsx bench/medusa-batch.ts --model DIR --data FILE… [--batch 8] [--prompt-tokens 32] [--tokens 128]
//                                 [--trees "chain:3;SPEC;…;auto"] [--chain-steps 4,8] [--chain-overlap on|off|both] [--rounds 3] [--out DIR]
//
// Prompts: B windows of P tokens (after BOS) spread evenly over the held-out part of the data (the last 10 % of the
// tokens, or the run's own --val-fraction when DIR holds trainer_state.json). Each row runs, per round, plain
// batched decoding of the prompts and then its speculative run; its speed-up is the median over the rounds of each
// round's ratio (both measured back to back, so clock and host drift cancel). Every speculative output is compared
// with plain batched decoding's, sequence by sequence. Each figure follows a sustained warm-up on a hardware GPU.
// Writes medusa-batch.json to --out, else $OUT, else out/.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/model/config.ts';
import { generateGpu, type GenerateResult } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { loadTokenizer } from '../src/model/tokenizer.ts';
import { readState, STATE_FILE } from '../src/model/train/checkpoint.ts';
import { loadCorpus, splitCorpus } from '../src/model/train/data.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { loadWeights } from '../src/model/weights.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerateBatch, type BatchSpeculativeResult } from '../src/speculative/generate-batch.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { medusaSparseTree, parseTreeSpec, type TreeShape } from '../src/speculative/tree-spec.ts';
import { autoChainSteps, autoTrees, batchController, batchWarmUpSchedule } from '../src/speculative/auto-trees.ts';
import type { TreeOption } from '../src/speculative/generate.ts';
import { formatPolicySummary, type OptionSummary } from '../src/speculative/speculation-controller.ts';

const WARM_MS = 300;

export interface BatchRow {
  readonly source: 'medusa' | 'oracle';
  readonly tree: string;
  readonly nodes: number;
  readonly lockstep: boolean;
  /** Steps a chained run (speculativeGenerateBatch's chainSteps); absent: a readback every step. */
  readonly chainSteps?: number;
  /** Chained: whether each run was continued before the last was read (chainOverlap). */
  readonly chainOverlap?: boolean;
  readonly steps: number;
  /** Tokens a live sequence emitted per step (BatchSpeculativeResult.meanCommitted) and gained before any cut. */
  readonly tokensPerStep: number;
  readonly accepted: number;
  readonly tokensPerS: number;
  readonly plainTokensPerS: number;
  /** Median over the rounds of each round's speculative over plain tokens/s, with the extremes. */
  readonly speedup: number;
  readonly speedupMin: number;
  readonly speedupMax: number;
  readonly gpuMsPerStep: number | undefined;
  /** Sequences whose output equals plain batched decoding's. */
  readonly identical: number;
  /**
   * Where a step's wall time went, ms per step over the timed runs: the verifier's host work up to its submit, its wait
   * for the readback (GpuTreeVerifier.stepTimes; chained: chainBatchTimes, with the ordinary first step's), the drafts'
   * (BatchSpeculativeResult.draftMs), and the rest of the loop.
   */
  readonly msPerStep: { readonly wall: number; readonly encode: number; readonly wait: number; readonly draft: number; readonly rest: number };
  /** tree 'auto': per option (plain first) its decisions, tokens and wall ms in the last run. */
  readonly modes?: readonly OptionSummary[];
}

const { values } = parseArgs({
  options: {
    model: { type: 'string' }, data: { type: 'string', multiple: true }, batch: { type: 'string' }, 'prompt-tokens': { type: 'string' },
    tokens: { type: 'string' }, trees: { type: 'string' }, rounds: { type: 'string' }, out: { type: 'string' }, 'chain-steps': { type: 'string' },
    'chain-overlap': { type: 'string' },
  },
});
if (!values.model || !values.data?.length) {
  console.error('usage: npx tsx bench/medusa-batch.ts --model DIR --data FILE… [--batch 8] [--prompt-tokens 32] [--tokens 128] [--trees "SPEC;…;auto"] [--chain-steps 4,8] [--chain-overlap on|off|both] [--rounds 3] [--out DIR]');
  process.exit(2);
}
const dir = resolve(values.model);
const config = loadConfig(join(dir, 'config.json'));
const heads = config.medusa?.numHeads ?? 0;
if (heads < 1) {
  console.error(`${dir}: no Medusa heads (config.json "medusa"); train them with linattn train-medusa`);
  process.exit(2);
}
const variant = loadModelVariant(config);
const weights = loadWeights(config, join(dir, 'model.safetensors'), variant.params);
const tokenizer = loadTokenizer(config);
const gpu = await getDevice();
const B = Number(values.batch ?? 8);
const promptTokens = Number(values['prompt-tokens'] ?? 32);
const newTokens = Number(values.tokens ?? (gpu.isSoftware ? 24 : 128));
const rounds = Number(values.rounds ?? (gpu.isSoftware ? 1 : 3));
for (const [flag, v] of [['--batch', B], ['--prompt-tokens', promptTokens], ['--tokens', newTokens], ['--rounds', rounds]] as const) {
  if (!(Number.isInteger(v) && v >= 1)) {
    console.error(`${flag} must be a positive integer, got ${v}`);
    process.exit(2);
  }
}
const chainSteps = values['chain-steps']?.split(',').map(Number) ?? [];
if (chainSteps.some((r) => !(Number.isInteger(r) && r >= 1))) {
  console.error(`--chain-steps takes positive integers, got ${values['chain-steps']}`);
  process.exit(2);
}
const overlapFlag = values['chain-overlap'] ?? 'on';
if (!['on', 'off', 'both'].includes(overlapFlag)) {
  console.error(`--chain-overlap takes on, off or both, got ${overlapFlag}`);
  process.exit(2);
}
const overlaps = overlapFlag === 'both' ? [true, false] : [overlapFlag === 'on'];
// 'auto' among --trees: the cost-aware batch `linattn generate` runs by default (batch.auto over autoTrees: chained runs
// of the heads' trees, AUTO_CHAIN_STEPS a run, beside plain steps), a fresh controller per run after the warm-up schedule.
const specs = values.trees?.split(';') ?? [`chain:${heads}`, medusaSparseTree(heads).spec];
const withAuto = specs.includes('auto');
const trees: TreeShape[] = specs.filter((t) => t !== 'auto').map(parseTreeSpec);
const autoOptions: TreeOption[] = withAuto ? autoTrees('medusa', 16, heads, autoChainSteps('medusa', 'gpu', {}, B)) : [];

const valFraction = existsSync(join(dir, STATE_FILE)) ? readState(join(dir, STATE_FILE)).options.valFraction : 0.1;
const held = splitCorpus(loadCorpus(values.data, tokenizer), valFraction, promptTokens).val;
const prompts = Array.from({ length: B }, (_, k) => {
  const start = Math.floor((k * (held.length - promptTokens)) / B);
  return [...(tokenizer.bos !== undefined ? [tokenizer.bos] : []), ...held.subarray(start, start + promptTokens)];
});

const model = await GpuModel.create(gpu, config, weights, await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim));
const nodesOf = (shape: TreeShape) => (shape.kind === 'static' ? shape.paths.length : 16);
const maxNodes = Math.max(...trees.map(nodesOf), ...autoOptions.map((t) => t.maxNodes));
const sizes = [...trees.map((s) => nodesOf(s) + 1), ...autoOptions.map((t) => t.maxNodes + 1), ...(withAuto ? [1] : [])];
const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: maxNodes + 1, maxBatch: B, sizes });
await verifier.prepare({ medusaTopK: 4, batch: B });
const candidates = (shape: TreeShape) => (shape.kind === 'static' ? Math.max(...shape.paths.map((p) => p[p.length - 1])) + 1 : shape.width);
const autoCandidates = Math.max(1, ...autoOptions.map((t) => candidates(t.shape)));

const warm = async <T>(work: () => Promise<T>): Promise<T> => {
  const until = performance.now() + (gpu.isSoftware ? 0 : WARM_MS);
  let r = await work();
  while (performance.now() < until) r = await work();
  return r;
};
const plainRun = () => generateGpu(model, tokenizer, prompts, { maxTokens: newTokens, stepTimes: false });
const plain: GenerateResult = await warm(plainRun);
console.log(`medusa batch bench on ${gpu.adapterName}: ${config.numLayers} layers, hidden ${config.hiddenSize}, ${heads} heads; batch ${B}, prompts of ${promptTokens} held-out tokens, ${newTokens} new tokens`);
console.log(`plain batched decoding: ${plain.decodeTokensPerS?.toFixed(1)} tokens/s`);

const rows: BatchRow[] = [];
const cases: { source: 'medusa' | 'oracle'; shape: TreeShape; lockstep: boolean; chainSteps?: number; chainOverlap?: boolean; auto?: boolean }[] = [];
if (withAuto) cases.push({ source: 'medusa', shape: parseTreeSpec(`chain:${heads}`), lockstep: false, auto: true });
for (const shape of trees) {
  cases.push({ source: 'medusa', shape, lockstep: false }, { source: 'medusa', shape, lockstep: true });
  if (shape.kind === 'static') for (const R of chainSteps) for (const chainOverlap of overlaps) cases.push({ source: 'medusa', shape, lockstep: false, chainSteps: R, chainOverlap });
  if (shape.kind === 'static' && shape.paths.every((p) => p.every((r) => r === 0))) cases.push({ source: 'oracle', shape, lockstep: false });
}
for (const c of cases) {
  const drafts = (): DraftSource[] => prompts.map((p, s) => (c.source === 'oracle' ? new OracleDraft(p, plain.tokens[s], config.vocabSize) : new MedusaDraft(heads, c.auto ? autoCandidates : candidates(c.shape))));
  const opts = { maxTokens: newTokens, shape: c.shape, maxNodes: nodesOf(c.shape), ...(c.chainSteps && { chainSteps: c.chainSteps, chainOverlap: c.chainOverlap }) };
  const policy = () => batchController(autoOptions);
  const run = () => speculativeGenerateBatch(verifier, drafts(), prompts, opts, c.auto ? { auto: { policy: policy(), trees: autoOptions } } : { lockstep: c.lockstep });
  // auto: every option at both folded state sets first (batchWarmUpSchedule), as `linattn generate` warms up.
  if (c.auto) await speculativeGenerateBatch(verifier, drafts(), prompts, opts, { auto: { policy: batchWarmUpSchedule(autoOptions), trees: autoOptions } });
  let last: BatchSpeculativeResult = await warm(run);
  const per: { plain: number; spec: number }[] = [];
  const split = { steps: 0, wall: 0, encode: 0, wait: 0, draft: 0 };
  for (let r = 0; r < rounds; r++) {
    const p = await plainRun();
    const before = verifier.stepTimes;
    const chainBefore = verifier.chainBatchTimes;
    last = await run();
    const after = verifier.stepTimes;
    const chainAfter = verifier.chainBatchTimes;
    // A chained run's steps are not the verifier's ordinary steps (stepTimes counts those: one a generation here).
    split.steps += c.chainSteps || c.auto ? last.steps : after.steps - before.steps;
    split.encode += after.encodeMs - before.encodeMs + chainAfter.encodeMs - chainBefore.encodeMs;
    split.wait += after.waitMs - before.waitMs + chainAfter.waitMs - chainBefore.waitMs;
    split.wall += last.decodeMs;
    split.draft += last.draftMs;
    per.push({ plain: p.decodeTokensPerS ?? NaN, spec: last.decodeTokensPerS ?? NaN });
  }
  const msPer = (x: number) => x / Math.max(1, split.steps);
  const ratios = per.map((x) => x.spec / x.plain);
  const row: BatchRow = {
    source: c.source, tree: c.auto ? 'auto' : c.shape.spec, nodes: c.auto ? maxNodes : nodesOf(c.shape), ...(last.policy && { modes: last.policy }), lockstep: c.lockstep, ...(c.chainSteps && { chainSteps: c.chainSteps, chainOverlap: c.chainOverlap }), steps: last.steps,
    tokensPerStep: last.meanCommitted, accepted: last.meanAccepted,
    tokensPerS: median(per.map((x) => x.spec)), plainTokensPerS: median(per.map((x) => x.plain)),
    speedup: median(ratios), speedupMin: Math.min(...ratios), speedupMax: Math.max(...ratios),
    gpuMsPerStep: last.gpuMsPerStep.length ? median(last.gpuMsPerStep) : undefined,
    identical: last.tokens.filter((t, s) => t.join(',') === plain.tokens[s].join(',')).length,
    msPerStep: {
      wall: msPer(split.wall), encode: msPer(split.encode), wait: msPer(split.wait), draft: msPer(split.draft),
      rest: msPer(split.wall - split.encode - split.wait - split.draft),
    },
  };
  rows.push(row);
  console.log(
    `  ${row.source} ${row.tree} (${row.nodes} nodes)${row.lockstep ? ' lockstep' : ''}${row.chainSteps ? ` chained ×${row.chainSteps}${row.chainOverlap ? ' overlapped' : ''}` : ''}: ${row.steps} steps, ${row.tokensPerStep.toFixed(2)} tokens/step per sequence, ` +
    `${row.tokensPerS.toFixed(1)} tokens/s, ${row.speedup.toFixed(2)}× (${row.speedupMin.toFixed(2)}–${row.speedupMax.toFixed(2)}) against plain ${row.plainTokensPerS.toFixed(1)}, ` +
    `GPU ${row.gpuMsPerStep?.toFixed(3) ?? '—'} ms/step, ${row.identical}/${B} identical; a step's wall ${row.msPerStep.wall.toFixed(3)} ms: ` +
    `to submit ${row.msPerStep.encode.toFixed(3)}, readback ${row.msPerStep.wait.toFixed(3)}, drafts ${row.msPerStep.draft.toFixed(3)}, the rest ${row.msPerStep.rest.toFixed(3)}`,
  );
  if (row.modes) console.log(`    auto: ${formatPolicySummary(row.modes)}`);
}
const outDir = values.out ?? process.env.OUT ?? 'out';
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'medusa-batch.json'), JSON.stringify({
  adapter: gpu.adapterName, date: new Date().toISOString(), model: dir, batch: B, promptTokens, newTokens, rounds,
  plainTokensPerS: plain.decodeTokensPerS, rows,
}, null, 1));
await verifier.destroy();
await model.destroy();
process.exit(rows.every((r) => r.identical === B) ? 0 : 1);
