// Draft sources on a trained model (Medusa heads from linattn train-medusa, prompt lookup, the adaptive draft)
// against plain decoding on held-out and quoting prompts: same model, same run.
//
//   npx tsx bench/medusa.ts --model DIR --data FILE… [--prompts N] [--prompt-tokens P] [--tokens N]
//                           [--trees "SPEC;SPEC;…" | auto] [--sources medusa,oracle,adaptive,ngram,lookup] [--chain-steps R]
//                           [--prompt-kind heldout|quote|both] [--rounds N] [--no-profile] [--out DIR]
// --chain-steps R[,R2…] adds, for each static Medusa tree and each lookup chain, a row with R tree steps chained
// per submit on the GPU (GpuTreeVerifier.runChain; its tree reads "SPEC ×R"), one per R; the chained runs overlap
// (each submitted before the last is read: GpuChain.continue). --chain-serial R[,R2…] adds, for those R, a row
// whose runs are each read before the next is encoded ("SPEC ×R serial", chainOverlap false): the loop before the
// overlap, timed in the same call.
//
// Prompts (--prompt-kind, default both; every figure is per kind, each against plain decoding of the same prompts):
//   heldout  N windows of P tokens (after BOS) spread evenly over the held-out part of the data — the last 10% of
//            the tokens (the run's own --val-fraction when DIR holds trainer_state.json), text the heads never
//            trained on;
//   quote    the same windows, each followed by its own first Q = P/4 tokens again: a prompt that starts to quote
//            its context, so greedy continuation tends to repeat the passage — where prompt lookup can draft long
//            chains (as when a model quotes a document or code it was given). Whether the model does quote is
//            its own: the report gives, per kind, how many tokens plain decoding copied from the passage before
//            its first departure (`quoted`, mean over the prompts; the passage has P − Q tokens left to copy).
// The lookup source (lookup-chain.ts: the most recent earlier occurrence of the longest suffix of 2…8 tokens, its
// continuation copied as one chain) runs chain:7 and chain:15 on the host and, with --chain-steps, chained on the
// GPU, drafting from the token history kept there (chainLookupWgsl): R steps per submit and one readback.
// Each prompt is decoded greedily by plain `generateGpu` (what `linattn generate` runs, steps in flight: the
// baseline), then speculatively by each source and tree. Every row runs plain decoding of each prompt again right
// before its speculative run, for 3 rounds on a hardware GPU (--rounds), and its speed-up is the median over the rounds
// of each round's ratio (speculative over plain tokens/s of the same prompts in that round; min and max beside it,
// and the rounds' median plain tokens/s): a single plain figure per kind swung 2.5× between the kinds on the H200's
// host (call 17), and a ratio pooled over all rounds still moved with one slow stretch of plain runs (call 30). Every figure
// sums over the prompts: mean accepted length (tokens per verification step), tokens/s and the speed-up, the median GPU time of a tree step
// against a decode step's, and how many outputs equal plain decoding's; a chained row adds the host's ms encoding and
// submitting its runs per chained step (hostMsPerChainedStep). The oracle (plain decoding's own output
// replayed: every proposal accepted) runs the Medusa chains: the ceiling of those shapes, and — its tree steps
// being the same size without the heads — what the heads cost. Everything runs once on the first prompt
// before timing (a pipeline compiles at its first dispatch on lavapipe), and each timed figure follows a sustained
// warm-up on a hardware GPU (an idle GPU drops its clocks). With timestamp queries (unless --no-profile) one tree
// step of a chain of M nodes is profiled dispatch by dispatch (runtime/dispatch-profile.ts) with the heads and
// without: what the heads add, kernel by kernel. Each source also runs `auto` (linattn generate's default
// --tree: plain runs and a few trees, chosen step by step by measured speed; speculation-controller.ts), whose
// row adds each mode's share of the tokens and its tokens/s. Writes medusa.json to --out, else $OUT, else out/.
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
import { summarizeDispatches } from '../src/runtime/dispatch-profile.ts';
import { median } from '../src/runtime/timing.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { autoChainSteps, autoSpeculation, autoTrees } from '../src/speculative/auto-trees.ts';
import { speculativeGenerate, type TreeOption } from '../src/speculative/generate.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { addSummaries, formatPolicySummary, type OptionSummary } from '../src/speculative/speculation-controller.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { LookupChainDraft } from '../src/speculative/lookup-chain.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { treeFromParents } from '../src/speculative/token-tree.ts';
import { medusaSparseTree, parseTreeSpec, type TreeShape } from '../src/speculative/tree-spec.ts';

const WARM_MS = 300;
/** Rounds of (plain, speculative) per prompt and row on a hardware GPU; the first also checks acceptance and output. */
const ROUNDS_HW = 3;

export interface MedusaFigure {
  /** The prompts: held-out windows, or the same windows quoting their start (the header's comment). */
  readonly kind: 'heldout' | 'quote';
  readonly source: string;
  readonly tree: string;
  readonly maxNodes: number;
  readonly meanAccepted: number;
  readonly meanTreeNodes: number;
  readonly tokensPerS: number;
  /** Plain decoding of the same prompts, run alternately with this row's (prompt by prompt, every round). */
  readonly plainTokensPerS: number;
  /** tokensPerS over plainTokensPerS: both measured in the same alternating loop, so clock and host drift cancel. */
  readonly speedup: number;
  /**
   * Per round (every prompt's plain run, then its speculative run): the round's speculative tokens/s over its plain
   * tokens/s. speedup pools all rounds, so one slow stretch of the host under the plain runs of one round can make
   * the row; the median of the rounds' ratios (with their min and max) cannot, and the rounds' median plain tokens/s
   * says which baseline it stood on.
   */
  readonly rounds?: readonly { readonly plainTokensPerS: number; readonly tokensPerS: number; readonly speedup: number }[];
  readonly speedupMedian?: number;
  readonly speedupMin?: number;
  readonly speedupMax?: number;
  readonly plainTokensPerSMedian?: number;
  readonly gpuMsPerTreeStep: number | undefined;
  readonly treeStepOverDecodeStep: number | undefined;
  readonly identical: number;
  readonly prompts: number;
  /**
   * Chained rows (and `auto`, when it chains): the host's ms encoding and submitting a chained run, per chained step
   * (GpuTreeVerifier.chainEncoding over the row's runs): what must stay well below a step's GPU time for the chained
   * run to be GPU-bound.
   */
  readonly hostMsPerChainedStep?: number;
  /** Of hostMsPerChainedStep, the ms in queue.submit (finish + submit of the run's pieces). */
  readonly submitMsPerChainedStep?: number;
  readonly chainedSteps?: number;
  /** Chained rows (Medusa, lookup): whether each run was submitted before the last was read (false: a --chain-serial row). */
  readonly chainOverlap?: boolean;
  /** `auto`: per mode (plain, then each tree) decisions, tokens and ms, summed over the prompts. */
  readonly modes?: readonly OptionSummary[];
}

const { values } = parseArgs({
  options: {
    model: { type: 'string' }, data: { type: 'string', multiple: true }, prompts: { type: 'string' }, 'prompt-tokens': { type: 'string' },
    tokens: { type: 'string' }, trees: { type: 'string' }, sources: { type: 'string' }, out: { type: 'string' }, 'no-profile': { type: 'boolean' },
    'chain-steps': { type: 'string' }, 'chain-serial': { type: 'string' }, 'prompt-kind': { type: 'string' }, rounds: { type: 'string' },
  },
});
if (!values.model || !values.data?.length) {
  console.error('usage: npx tsx bench/medusa.ts --model DIR --data FILE… [--prompts N] [--prompt-tokens P] [--tokens N] [--trees "SPEC;…"] [--sources medusa,oracle,adaptive,ngram,lookup] [--chain-steps R] [--prompt-kind heldout|quote|both] [--rounds N] [--out DIR]');
  process.exit(2);
}
const dir = resolve(values.model);
const config = loadConfig(join(dir, 'config.json'));
const heads = config.medusa?.numHeads ?? 0;
const variant = loadModelVariant(config);
const weights = loadWeights(config, join(dir, 'model.safetensors'), variant.params);
const tokenizer = loadTokenizer(config);
const gpu = await getDevice();
const nPrompts = Number(values.prompts ?? (gpu.isSoftware ? 4 : 16));
const promptTokens = Number(values['prompt-tokens'] ?? 64);
const newTokens = Number(values.tokens ?? (gpu.isSoftware ? 64 : 256));
const sources = (values.sources ?? (heads > 0 ? 'medusa,oracle,adaptive,lookup' : 'oracle,adaptive,ngram,lookup')).split(',');
const defaultMedusaTrees = ['chain:1', `chain:${heads}`, medusaSparseTree(heads).spec, 'top:4'];
/** `--trees auto`: the --tree auto row alone (no fixed tree). */
const autoOnly = values.trees === 'auto';
const trees = (autoOnly ? [] : values.trees?.split(';') ?? []).map(parseTreeSpec);
const chainSteps = (values['chain-steps'] ?? '').split(',').filter((x) => x.trim() !== '').map(Number);
const chainSerial = (values['chain-serial'] ?? '').split(',').filter((x) => x.trim() !== '').map(Number);
if ([...chainSteps, ...chainSerial].some((r) => !(Number.isInteger(r) && r >= 1))) {
  console.error(`--chain-steps and --chain-serial take positive integers, comma-separated, got ${values['chain-steps']} and ${values['chain-serial']}`);
  process.exit(2);
}

const valFraction = existsSync(join(dir, STATE_FILE)) ? readState(join(dir, STATE_FILE)).options.valFraction : 0.1;
const held = splitCorpus(loadCorpus(values.data, tokenizer), valFraction, promptTokens).val;
const kindArg = values['prompt-kind'] ?? 'both';
if (!['heldout', 'quote', 'both'].includes(kindArg)) {
  console.error(`--prompt-kind must be heldout, quote or both, got ${kindArg}`);
  process.exit(2);
}
type PromptKind = 'heldout' | 'quote';
const kinds: PromptKind[] = kindArg === 'both' ? ['heldout', 'quote'] : [kindArg as PromptKind];
const windows = Array.from({ length: nPrompts }, (_, k) => {
  const start = Math.floor((k * (held.length - promptTokens)) / Math.max(1, nPrompts));
  return [...held.subarray(start, start + promptTokens)];
});
/** Tokens of its own start a quote prompt repeats after the passage. */
const QUOTE = Math.max(1, Math.floor(promptTokens / 4));
const promptsOf = (kind: PromptKind): number[][] =>
  windows.map((w) => [...(tokenizer.bos !== undefined ? [tokenizer.bos] : []), ...w, ...(kind === 'quote' ? w.slice(0, QUOTE) : [])]);

/** Candidates per node a shape asks a draft for (as linattn generate asks the Medusa heads). */
function candidatesPerNode(shape: TreeShape): number {
  return shape.kind === 'static' ? Math.max(...shape.paths.map((p) => p[p.length - 1])) + 1 : shape.width;
}


const model = await GpuModel.create(gpu, config, weights, await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim));
/** A fixed tree, or `auto` (its trees; `shape` then only sets the candidates per node asked of the draft). */
const shapes: { source: string; shape: TreeShape; nodes: number; auto?: readonly TreeOption[]; carry?: boolean; chain?: number; serial?: boolean }[] = [];
for (const source of sources) {
  const own = autoOnly
    ? []
    : trees.length
    ? trees
    : source === 'medusa'
    ? defaultMedusaTrees.map(parseTreeSpec)
    : source === 'oracle'
    ? [...new Set(['chain:1', `chain:${Math.max(1, heads)}`])].map(parseTreeSpec)
    : source === 'lookup'
    ? ['chain:7', 'chain:15'].map(parseTreeSpec)
    : [parseTreeSpec(source === 'adaptive' ? 'best:4' : 'top:4')];
  for (const shape of own) {
    shapes.push({ source, shape, nodes: shape.kind === 'static' ? shape.paths.length : 16 });
    const depth = shape.kind === 'static' ? Math.max(...shape.paths.map((p) => p.length)) : Infinity;
    const isChain = shape.kind === 'static' && shape.paths.every((p) => p.every((r) => r === 0));
    const chains = (source === 'medusa' && depth <= heads) || (source === 'lookup' && isChain);
    if (chains) for (const R of chainSteps) shapes.push({ source, shape, nodes: shape.kind === 'static' ? shape.paths.length : 16, chain: R });
    if (chains) for (const R of chainSerial) shapes.push({ source, shape, nodes: shape.kind === 'static' ? shape.paths.length : 16, chain: R, serial: true });
  }
  // As `generate --tree auto` (greedy, GPU, batch 1): the Medusa options include the chained runs.
  const auto = autoTrees(source, 16, source === 'medusa' ? heads : Infinity, autoChainSteps(source, 'gpu', {}));
  shapes.push({ source, shape: parseTreeSpec(source === 'oracle' ? 'chain:1' : 'top:4'), nodes: 16, auto });
  // The same with one controller carried across the row's generations (fresh when the timed rounds start): what a
  // server keeping its measurements between requests gets, exploration paid once rather than per 128 tokens.
  shapes.push({ source, shape: parseTreeSpec(source === 'oracle' ? 'chain:1' : 'top:4'), nodes: 16, auto, carry: true });
}
const maxNodes = Math.max(16, ...shapes.map((s) => s.nodes));
const sizes = [...new Set([
  ...shapes.filter((s) => !s.auto && s.shape.kind === 'static').map((s) => s.nodes + 1),
  ...shapes.flatMap((s) => s.auto ?? []).map((t) => (t.shape.kind === 'static' ? t.shape.paths.length : t.maxNodes) + 1),
])];
const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: maxNodes + 1, ownsModel: true, sizes });
const log = (s: string) => console.log(s);
log(`speculation bench on ${gpu.adapterName} (Dawn toggles: ${gpu.toggles.join(', ') || 'none'}): ${dir} (${config.numLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize}, ${heads} Medusa heads); ` +
  `${nPrompts} prompts of ${promptTokens} held-out tokens per kind (${kinds.join(', ')}), ${newTokens} new tokens each`);
let prompts: number[][] = [];
let plain: GenerateResult[] = [];
try {
  if (heads > 0) await verifier.prepare({ medusaTopK: 4 });
  const draftOf = (source: string, p: number, shape: TreeShape): DraftSource => {
    if (source === 'medusa') return new MedusaDraft(heads, candidatesPerNode(shape));
    if (source === 'oracle') return new OracleDraft(prompts[p], plain[p].tokens[0], config.vocabSize);
    if (source === 'adaptive') return new AdaptiveDraft(0);
    if (source === 'ngram') return new NgramDraft();
    if (source === 'lookup') return new LookupChainDraft({ length: 16 });
    throw new Error(`unknown source ${source} (medusa, oracle, adaptive, ngram, lookup)`);
  };
  const plainOf = (ids: readonly number[], pipelined = true) => generateGpu(model, tokenizer, [ids], { maxTokens: newTokens, pipelined, stepTimes: !pipelined });
  /** The carried row's controller (shapes' carry), made when its timed rounds start. */
  let carried: ReturnType<typeof autoSpeculation> | undefined;
  const specOf = (s: (typeof shapes)[number], p: number) =>
    speculativeGenerate(verifier, draftOf(s.source, p, s.shape), prompts[p], {
      maxTokens: newTokens, shape: s.shape, maxNodes: s.nodes,
      ...(s.auto && { auto: (s.carry && carried) || autoSpeculation(s.auto, new GpuPlainDecoder(verifier, { temperature: 0 })) }),
      ...(s.chain && { chainSteps: s.chain }),
      ...(s.serial && { chainOverlap: false }),
    });
  const warm = async (work: () => Promise<unknown>) => {
    const until = performance.now() + (gpu.isSoftware ? 0 : WARM_MS);
    do await work(); while (performance.now() < until);
  };

  const ROUNDS = values.rounds !== undefined ? Number(values.rounds) : gpu.isSoftware ? 1 : ROUNDS_HW;
  if (!(Number.isInteger(ROUNDS) && ROUNDS >= 1)) throw new Error(`--rounds takes a positive integer, got ${values.rounds}`);
  const figures: MedusaFigure[] = [];
  const plainOfKind: { kind: PromptKind; tokensPerS: number; gpuMsPerDecodeStep: number | undefined; quoted?: number }[] = [];
  // Rewritten after every row, so a run stopped by its time limit keeps what it measured.
  const writeReport = (profile: unknown[]): string => {
    const report = {
      adapter: gpu.adapterName, toggles: gpu.toggles, software: gpu.isSoftware, date: new Date().toISOString(), model: dir, medusaHeads: heads,
      prompts: nPrompts, promptTokens, quoteTokens: QUOTE, chainSteps, chainSerial, newTokens, plain: plainOfKind, figures, profile,
    };
    const out = values.out ?? process.env['OUT'] ?? 'out';
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'medusa.json'), JSON.stringify(report, null, 2) + '\n');
    return join(out, 'medusa.json');
  };
  for (const kind of kinds) {
    prompts = promptsOf(kind);
    plain = [];
    await warm(() => plainOf(prompts[0]));
    for (const ids of prompts) plain.push(await plainOf(ids));
    // Every plan and pipeline once, untimed.
    for (const s of shapes) await specOf(s, 0);
    const plainTokens = plain.reduce((n, r) => n + r.tokens[0].length - 1, 0);
    const plainMs = plain.reduce((n, r) => n + r.decodeMs, 0);
    const plainTps = (1000 * plainTokens) / plainMs;
    const decodeGpu = (await plainOf(prompts[0], false)).decodeSteps.map((s) => s.gpuMs).filter((x): x is number => x !== undefined);
    const decodeGpuMs = decodeGpu.length ? median(decodeGpu) : undefined;
    // Tokens plain decoding copied from each passage before departing from it (quote prompts).
    const quoted = kind === 'quote'
      ? plain.reduce((a, r, p) => {
        let m = 0;
        while (m < r.tokens[0].length && QUOTE + m < windows[p].length && r.tokens[0][m] === windows[p][QUOTE + m]) m++;
        return a + m;
      }, 0) / prompts.length
      : undefined;
    plainOfKind.push({ kind, tokensPerS: plainTps, gpuMsPerDecodeStep: decodeGpuMs, ...(quoted !== undefined && { quoted }) });
    log(`${kind} prompts (${prompts[0].length} tokens each): plain decoding (generateGpu) ${plainTps.toFixed(1)} tokens/s; GPU ${decodeGpuMs?.toFixed(3) ?? '—'} ms per decode step` +
      (quoted !== undefined ? `; it quoted ${quoted.toFixed(1)} of the passage's ${promptTokens - QUOTE} remaining tokens on average` : ''));

    for (const s of shapes) {
      await warm(() => specOf(s, 0));
      let tokens = 0;
      let accepted = 0;
      let steps = 0;
      let ms = 0;
      let nodes = 0;
      let identical = 0;
      const gpuMs: number[] = [];
      const modes: OptionSummary[][] = [];
      // Plain decoding of the same prompt right before each speculative run: the row's own baseline. (One plain
      // figure per kind, measured before the rows, swung 2.5× between kinds on the H200's host in call 17.)
      let plainRowTokens = 0;
      let plainRowMs = 0;
      const perRound = Array.from({ length: ROUNDS }, () => ({ plainTokens: 0, plainMs: 0, tokens: 0, ms: 0 }));
      const encodingBefore = verifier.chainEncoding;
      carried = s.carry && s.auto ? autoSpeculation(s.auto, new GpuPlainDecoder(verifier, { temperature: 0 })) : undefined;
      for (let round = 0; round < ROUNDS; round++) for (let p = 0; p < prompts.length; p++) {
        const q = await plainOf(prompts[p]);
        plainRowTokens += q.tokens[0].length - 1;
        plainRowMs += q.decodeMs;
        const r = await specOf(s, p);
        const own = perRound[round];
        own.plainTokens += q.tokens[0].length - 1;
        own.plainMs += q.decodeMs;
        own.tokens += r.tokens.length - 1;
        own.ms += r.decodeMs;
        if (round > 0) {
          if (r.tokens.join(',') !== plain[p].tokens[0].join(',')) throw new Error(`${s.source} ${s.shape.spec}: round ${round} of prompt ${p} differs from plain decoding`);
          tokens += r.tokens.length - 1;
          ms += r.decodeMs;
          continue;
        }
        // A carried controller's summary is cumulative: its last one is the row's.
        if (r.policy) modes.splice(0, s.carry ? modes.length : 0, [...r.policy]);
        tokens += r.tokens.length - 1;
        accepted += r.acceptedPerStep.reduce((a, b) => a + b, 0);
        steps += r.steps;
        ms += r.decodeMs;
        nodes += r.meanTreeNodes * r.steps;
        gpuMs.push(...r.gpuMsPerStep);
        if (r.tokens.join(',') === plain[p].tokens[0].join(',')) identical++;
      }
      const tps = (1000 * tokens) / ms;
      const encoding = verifier.chainEncoding;
      const chainedSteps = encoding.steps - encodingBefore.steps;
      const hostMsPerChainedStep = chainedSteps > 0 ? (encoding.ms - encodingBefore.ms) / chainedSteps : undefined;
      const submitMsPerChainedStep = chainedSteps > 0 ? (encoding.submitMs - encodingBefore.submitMs) / chainedSteps : undefined;
      const plainRowTps = (1000 * plainRowTokens) / plainRowMs;
      const rounds = perRound.map((x) => {
        const plainTokensPerS = (1000 * x.plainTokens) / x.plainMs;
        const tokensPerS = (1000 * x.tokens) / x.ms;
        return { plainTokensPerS, tokensPerS, speedup: tokensPerS / plainTokensPerS };
      });
      const ratios = rounds.map((x) => x.speedup);
      // A chained run's steps are timed as one submit: only its unchained first step (root only) pushes a GPU time.
      const treeGpu = gpuMs.length && !s.chain ? median(gpuMs) : undefined;
      const fig: MedusaFigure = {
        kind, source: s.source, tree: s.auto ? (s.carry ? 'auto, carried' : 'auto') : s.chain ? `${s.shape.spec} ×${s.chain}${s.serial ? ' serial' : ''}` : s.shape.spec, maxNodes: s.nodes, meanAccepted: accepted / steps, meanTreeNodes: nodes / steps,
        tokensPerS: tps, plainTokensPerS: plainRowTps, speedup: tps / plainRowTps,
        rounds, speedupMedian: median(ratios), speedupMin: Math.min(...ratios), speedupMax: Math.max(...ratios),
        plainTokensPerSMedian: median(rounds.map((x) => x.plainTokensPerS)),
        gpuMsPerTreeStep: treeGpu,
        treeStepOverDecodeStep: treeGpu !== undefined && decodeGpuMs ? treeGpu / decodeGpuMs : undefined,
        identical, prompts: prompts.length,
        ...(hostMsPerChainedStep !== undefined && { hostMsPerChainedStep, submitMsPerChainedStep, chainedSteps }),
        ...(s.chain && { chainOverlap: !s.serial }),
        ...(modes.length && { modes: addSummaries(modes) }),
      };
      figures.push(fig);
      writeReport([]);
      log(`  ${kind} ${fig.source} --tree ${fig.tree}: accepted ${fig.meanAccepted.toFixed(2)}/step (tree ${fig.meanTreeNodes.toFixed(1)} nodes), ${tps.toFixed(1)} tokens/s, ` +
        `${fig.speedupMedian!.toFixed(2)}× median of ${ROUNDS} rounds (${fig.speedupMin!.toFixed(2)}–${fig.speedupMax!.toFixed(2)}×; pooled ${fig.speedup.toFixed(2)}×) over plain alongside ` +
        `${fig.plainTokensPerSMedian!.toFixed(1)} tokens/s (median round), GPU ${treeGpu?.toFixed(3) ?? '—'} ms per tree step (${fig.treeStepOverDecodeStep?.toFixed(2) ?? '—'}× a decode step), identical ${identical}/${prompts.length}` +
        (hostMsPerChainedStep !== undefined ? `, host ${hostMsPerChainedStep.toFixed(3)} ms per chained step (encode + submit, of which submit ${submitMsPerChainedStep!.toFixed(3)}; ${chainedSteps} steps)` : '') +
        (fig.modes ? `\n    auto: ${formatPolicySummary(fig.modes)}` : ''));
    }
  }
  // The table: per prompt kind, every source and tree against plain decoding of the same prompts.
  log('\nkind     source    tree                            accepted/step  tokens/s  plain tok/s  speed-up (median of rounds, min–max)  identical');
  for (const f of figures) {
    // A long list of paths is cut, its "×R" kept: the chained rows stay apart.
    const [, base, suffix = ''] = /^(.*?)( ×\d+(?: serial)?)?$/.exec(f.tree)!;
    const tree = (base.length > 20 ? `${base.slice(0, 19)}…` : base) + suffix;
    log(`${f.kind.padEnd(8)} ${f.source.padEnd(9)} ${tree.padEnd(31)} ${f.meanAccepted.toFixed(2).padStart(13)} ${f.tokensPerS.toFixed(0).padStart(9)} ${f.plainTokensPerSMedian!.toFixed(0).padStart(12)} ` +
      `${(f.speedupMedian!.toFixed(2) + '×').padStart(9)} ${`(${f.speedupMin!.toFixed(2)}–${f.speedupMax!.toFixed(2)})`.padStart(13)}  ${f.identical}/${f.prompts}`);
  }
  for (const p of plainOfKind) log(`plain ${p.kind}: ${p.tokensPerS.toFixed(0)} tokens/s (generateGpu)${p.quoted !== undefined ? `, quoting ${p.quoted.toFixed(1)} tokens of the passage` : ''}`);
  // One tree step (a chain of M draft nodes), dispatch by dispatch, with and without the heads.
  const profile: { heads: boolean; gpuMs: number; dispatches: number; kernels: ReturnType<typeof summarizeDispatches> }[] = [];
  if (heads > 0 && model.hasTimestamps && !values['no-profile']) {
    const ids = prompts[0];
    const tree = treeFromParents(Array.from({ length: heads + 1 }, (_, i) => ids[(i + 1) % ids.length]), Array.from({ length: heads + 1 }, (_, i) => i - 1));
    for (const withHeads of [false, true]) {
      await verifier.start(ids, { temperature: 0 }, 0);
      const times = await verifier.profileStep({ trees: [tree], ...(withHeads && { medusaTopK: 4 }) });
      profile.push({ heads: withHeads, gpuMs: times.reduce((a, t) => a + t.ms, 0), dispatches: times.length, kernels: summarizeDispatches(times) });
    }
    const [without, withHeads] = profile;
    log(`one tree step (chain of ${heads}), each dispatch timed in a pass of its own: ${without.gpuMs.toFixed(3)} ms in ${without.dispatches} dispatches without the heads, ` +
      `${withHeads.gpuMs.toFixed(3)} ms in ${withHeads.dispatches} with them`);
    for (const k of withHeads.kernels.filter((k) => !without.kernels.some((w) => w.kernel === k.kernel && w.dispatches === k.dispatches))) {
      log(`  ${k.kernel}: ${k.ms.toFixed(3)} ms (${k.dispatches})`);
    }
  }
  log(`wrote ${writeReport(profile)}`);
} finally {
  await verifier.destroy();
}
process.exit(0);
