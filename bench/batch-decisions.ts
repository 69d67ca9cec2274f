// Where a batch's auto loses its time, decision by decision (issue 14): batch 8 on the 12-layer random-weight model of
// bench/speculative.ts, greedy, every decision of the controller (or of a fixed schedule) timed as the controller times
// it (from its choice to its record), with the tokens and sequence-steps it produced. Runs, each against plain batched
// `generate` in the same call:
//   plain      FixedSchedule [plain] in decisions of 16 steps: auto's plain option alone (the model's decode loop, each
//              sequence at its own position: batch-plain-runs.ts);
//   plain-verifier     the same as root-only tree steps, chained (auto's plain option before batch-plain-runs.ts);
//   alternate  plain (16 steps) then one tree step, in turn: what a plain decision costs right after a tree;
//   auto       a fresh batchController over autoTrees(source, 15), as `linattn generate` makes one per batch, each
//              decision credited as generate's default (batch-credit.ts: what its steps took off the mean remaining
//              budget of the slower half of the sequences);
//              Auto takes what a step of each tree cost in the warm-up (ControllerOptions.stepCosts), as `linattn
//              generate` does;
//   auto-no-costs      the same without them (a tree not measured costs at least plain's ms a token);
//   auto-before        without them, and a tree not waiting for plain's first rate (ControllerOptions.waitForPlain);
//   auto-verifier-plain  the same with its plain decisions as chained root-only tree steps;
//   auto-makespan      the same, credited with what its steps took off the longest remaining budget (BatchCredit 'makespan');
//   auto-tokens        the same, credited with every token it emitted (BatchCredit 'tokens');
//   auto-no-estimates  the same without the draft's estimates of what each tree would emit (draft-hits.ts);
//   auto-defer         the same with ControllerOptions.deferPlainAt --defer-at X (default 2): the tokens a step of a
//                      chained tree (Medusa) at which plain decoding is left to the re-probes;
//   auto-share         the same with exploration's share of the run bounded (ControllerOptions.exploreShare, --share,
//                      default 0.1);
//   auto-no-ahead      the same with tree steps encoded at their submit.
// Sources: adaptive and ngram (table drafts), medusa (a --model whose config has Medusa heads: greedy, chained trees as
// `linattn generate` offers them at batch 8). Every output is checked against plain batched `generate`'s. Each run
// reports its tail: the ms after its first sequence ended, where the sequences left decode in steps that cost about a
// full batch's.
//   npx tsx bench/batch-decisions.ts [--tokens 128] [--source adaptive,ngram] [--runs plain,plain-verifier,alternate,auto,auto-no-costs,auto-before,auto-verifier-plain,auto-makespan,auto-tokens,auto-no-estimates,auto-defer,auto-share,auto-no-ahead] [--share 0.1] [--defer-at 2] [--rounds 1] [--json]
//   npx tsx bench/batch-decisions.ts --model DIR --prompts FILE [--source medusa,adaptive]   (a trained model; FILE: one prompt a line, 8 lines)
import { getDevice } from '../src/runtime/dawn.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { autoChainSteps, autoTrees, batchController, batchWarmUpSchedule, treeLabel } from '../src/speculative/auto-trees.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerateBatch, type BatchCredit } from '../src/speculative/generate-batch.ts';
import { DEFAULT_BATCH_CREDIT } from '../src/speculative/batch-credit.ts';
import type { TreeOption } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { GpuBatchPlainDecoder } from '../src/speculative/batch-plain-runs.ts';
import { MedusaDraft } from '../src/speculative/medusa-draft.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { FixedSchedule, formatPolicySummary, withoutEstimates, type SpeculationPolicy } from '../src/speculative/speculation-controller.ts';
import { candidatesPerNode, parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import { plainBaseline, speculationTarget, targetPrompts, warmer } from './speculation-target.ts';

const BATCH = 8;
const NODES = 15;
const PLAIN_STEPS = 16;
const WARM_MS = 300;

/** One decision as the controller saw it: its option, what it produced, the ms from its choice to its record. */
export interface TracedDecision {
  readonly label: string;
  readonly tokens: number;
  readonly sequenceSteps?: number;
  readonly ms: number;
  /** Taken ahead (SpeculationPolicy.ahead): timed from the record of the one before. */
  readonly ahead: boolean;
  /** What `probe` counted between the record before and this one (the chain's runs, its host and GPU ms). */
  readonly counted?: Record<string, number>;
}

/** A policy that passes every call to `inner` and keeps each decision's times. */
export class TracedPolicy implements SpeculationPolicy {
  readonly decisions: TracedDecision[] = [];
  private readonly open: { option: number; t0: number; ahead: boolean }[] = [];
  readonly ahead?: () => number;
  readonly plainRun?: () => number;
  readonly aheadPlainRun?: () => number;
  readonly treeRun?: () => number;
  readonly useEstimates?: (estimate: (option: number) => number | undefined) => void;

  private last: Record<string, number> | undefined;

  constructor(private readonly inner: SpeculationPolicy, private readonly probe?: () => Record<string, number>) {
    this.last = probe?.();
    if (inner.ahead) {
      this.ahead = () => {
        const o = inner.ahead!();
        this.open.push({ option: o, t0: NaN, ahead: true });
        return o;
      };
    }
    if (inner.plainRun) this.plainRun = () => inner.plainRun!();
    if (inner.useEstimates) this.useEstimates = (e) => inner.useEstimates!(e);
    if (inner.aheadPlainRun) this.aheadPlainRun = () => inner.aheadPlainRun!();
    if (inner.treeRun) this.treeRun = () => inner.treeRun!();
  }

  get labels() {
    return this.inner.labels;
  }

  get plainTokens() {
    return this.inner.plainTokens;
  }

  next(): number {
    const o = this.inner.next();
    this.open.push({ option: o, t0: performance.now(), ahead: false });
    return o;
  }

  record(tokens: number, steps?: number): void {
    const now = performance.now();
    const d = this.open.shift()!;
    this.inner.record(tokens, steps);
    const seen = this.probe?.();
    const counted = seen && Object.fromEntries(Object.entries(seen).map(([k, v]) => [k, v - (this.last?.[k] ?? 0)]));
    this.last = seen;
    this.decisions.push({ label: this.labels[d.option], tokens, ...(steps !== undefined && { sequenceSteps: steps }), ms: now - d.t0, ahead: d.ahead, ...(counted && { counted }) });
    if (this.open[0] && Number.isNaN(this.open[0].t0)) this.open[0].t0 = now;
  }

  summary() {
    return this.inner.summary();
  }
}

interface RunFigure {
  readonly name: string;
  readonly tokensPerS: number;
  readonly speedup: number;
  readonly identical: boolean;
  readonly draftMs: number;
  readonly decodeMs: number;
  /** Of decodeMs, the ms after the first sequence ended (BatchSpeculativeResult.tailMs). */
  readonly tailMs: number;
  readonly auto: string;
  /** Per label: decisions, tokens, ms, tokens/s. */
  readonly byLabel: Record<string, { decisions: number; tokens: number; ms: number; tokensPerS: number }>;
  /** Plain decisions right after a tree decision, and after a plain one: ms a step each (batch steps). */
  readonly plainAfterTree?: { decisions: number; msAStep: number };
  readonly plainAfterPlain?: { decisions: number; msAStep: number };
  readonly decisions: readonly TracedDecision[];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const tokens = Number(flagValue(args, '--tokens') ?? (gpu.isSoftware ? 24 : 128));
  const sources = (flagValue(args, '--source') ?? 'adaptive,ngram').split(',');
  const target = await speculationTarget(gpu, args, 'batch-decisions-target');
  const { config, variant, weights, model } = target;
  const heads = config.medusa?.numHeads;
  if (sources.includes('medusa') && heads === undefined) throw new Error(`--source medusa needs a --model with Medusa heads (${target.source} has none)`);
  // Medusa: the options `linattn generate --speculate medusa` offers a batch (chained runs of static trees); every tree
  // at most NODES draft nodes (as --max-nodes 16 gives: its static trees stay below).
  const trees = (source: string) => (source === 'medusa' ? autoTrees(source, NODES, heads!, autoChainSteps(source, 'gpu', {}, BATCH)) : autoTrees(source, NODES));
  const mostNodes = Math.max(...sources.flatMap((s) => trees(s).map((t) => t.maxNodes)));
  const sizes = [...new Set([1, ...sources.flatMap((s) => trees(s).map((t) => (t.shape.kind === 'static' ? t.shape.paths.length : t.maxNodes) + 1))])];
  const medusaK = sources.includes('medusa') ? Math.max(...trees('medusa').map((t) => candidatesPerNode(t.shape))) : 0;
  const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: mostNodes + 1, maxBatch: BATCH, ownsModel: true, sizes });
  const log = (s: string) => console.log(s);
  log(`batch decisions on ${gpu.adapterName}: ${target.source}, ${config.numLayers} layers, hidden ${config.hiddenSize}, batch ${BATCH}, ${tokens} new tokens, ≤ ${NODES} nodes`);
  try {
    const prompts = targetPrompts(args, target, BATCH);
    const warm = warmer(gpu, WARM_MS);
    const { tokensPerS: plainTps, runs: plainRuns, tokens: plain } = await plainBaseline(gpu, target, prompts, tokens, warm);
    log(`plain batched generate: ${plainTps.toFixed(1)} tokens/s (median of ${plainRuns.length}: ${plainRuns.map((r) => r.toFixed(0)).join(', ')})`);
    await verifier.prepare({ batch: BATCH, ...(medusaK > 0 && { medusaTopK: medusaK }) });

    const figures: RunFigure[] = [];
    const modelPlain = new GpuBatchPlainDecoder(verifier, {});
    await modelPlain.prepare(BATCH);
    /** `onModel`: auto's plain decisions by the model's decode loop (BatchAuto.plain), else root-only tree steps. */
    /** `policy(stepCosts)`: its trees' step costs in the warm-up, which auto takes as `linattn generate` does (ControllerOptions.stepCosts). */
    const run = async (name: string, source: string, policy: (stepCosts: (number | undefined)[]) => SpeculationPolicy, options: readonly TreeOption[], credit: BatchCredit = DEFAULT_BATCH_CREDIT, onModel = true) => {
      const plainOption = onModel ? { plain: modelPlain } : {};
      const drafts = (): DraftSource[] => prompts.map((_, s) => (source === 'adaptive' ? new AdaptiveDraft(s) : source === 'medusa' ? new MedusaDraft(heads!, medusaK) : new NgramDraft()));
      const opts = { maxTokens: tokens, shape: parseTreeSpec(source === 'adaptive' ? 'best:4' : 'top:4'), maxNodes: Math.max(...options.map((t) => t.maxNodes)) };
      const warmSchedule = batchWarmUpSchedule(options);
      await speculativeGenerateBatch(verifier, drafts(), prompts, opts, { auto: { policy: warmSchedule, trees: options, ...plainOption } });
      const stepCosts = options.map((_, i) => warmSchedule.fastestMsPerStep(i + 1));
      await warm(() => speculativeGenerateBatch(verifier, drafts(), prompts, opts, { auto: { policy: policy(stepCosts), trees: options, credit, ...plainOption } }));
      const traced = new TracedPolicy(policy(stepCosts), () => {
        const c = verifier.chainBatchTimes;
        const t = verifier.stepTimes;
        return { runs: c.runs, chainSteps: c.steps, encodeMs: c.encodeMs, waitMs: c.waitMs, gpuMs: c.gpuMs, steps: t.steps, stepEncodeMs: t.encodeMs, stepWaitMs: t.waitMs };
      });
      const ranBefore = modelPlain.ran;
      const recorded = { ...model.recordings };
      const r = await speculativeGenerateBatch(verifier, drafts(), prompts, opts, { auto: { policy: traced, trees: options, credit, ...plainOption } });
      const modelRuns = modelPlain.runs.slice(modelPlain.runs.length - Math.min(modelPlain.runs.length, modelPlain.ran - ranBefore));
      const tps = r.decodeTokensPerS ?? NaN;
      const byLabel: RunFigure['byLabel'] = {};
      for (const d of traced.decisions) {
        const b = (byLabel[d.label] ??= { decisions: 0, tokens: 0, ms: 0, tokensPerS: 0 });
        b.decisions++;
        b.tokens += d.tokens;
        b.ms += d.ms;
        b.tokensPerS = (1000 * b.tokens) / b.ms;
      }
      // A plain decision's batch steps: its tokens over the live sequences (all BATCH until the end).
      const plainAfter = (tree: boolean) => {
        const ds = traced.decisions.filter((d, i) => d.label === 'plain' && i > 0 && (traced.decisions[i - 1].label !== 'plain') === tree);
        const steps = ds.reduce((n, d) => n + d.tokens / BATCH, 0);
        return ds.length ? { decisions: ds.length, msAStep: ds.reduce((n, d) => n + d.ms, 0) / steps } : undefined;
      };
      const fig: RunFigure = {
        name, tokensPerS: tps, speedup: tps / plainTps, identical: r.tokens.every((t, s) => t.join(',') === plain[s].join(',')),
        draftMs: r.draftMs, decodeMs: r.decodeMs, tailMs: r.tailMs, auto: formatPolicySummary(r.policy ?? []), byLabel,
        ...(plainAfter(true) && { plainAfterTree: plainAfter(true) }), ...(plainAfter(false) && { plainAfterPlain: plainAfter(false) }),
        decisions: traced.decisions,
      };
      figures.push(fig);
      const fmt = (x?: { decisions: number; msAStep: number }) => (x ? `${x.msAStep.toFixed(3)} ms a step (${x.decisions} decisions)` : '—');
      log(`${name}: ${tps.toFixed(1)} tokens/s, ${fig.speedup.toFixed(2)}× plain, identical ${fig.identical}, decode ${r.decodeMs.toFixed(1)} ms (drafting ${r.draftMs.toFixed(1)}; the tail after the first sequence ended ${r.tailMs.toFixed(1)})`);
      log(`  plain decisions after a tree: ${fmt(fig.plainAfterTree)}; after plain: ${fmt(fig.plainAfterPlain)}`);
      if (modelRuns.length) {
        log(`  plain runs on the model (flush / offsets / first read / whole ms, GPU ms, steps): ${modelRuns.map((x) => `${x.flushMs.toFixed(2)}/${x.offsetsMs.toFixed(2)}/${x.firstMs.toFixed(2)}/${x.ms.toFixed(2)} ${x.gpuMs > 0 ? x.gpuMs.toFixed(2) : '—'} ${x.steps}`).join('; ')}`);
        log(`  decode steps recorded in the run: ${model.recordings.count - recorded.count} (${(model.recordings.ms - recorded.ms).toFixed(2)} ms)`);
      }
      log(`  ${fig.auto}`);
      const counts = (c?: Record<string, number>) =>
        c ? ` [chain ${c.runs}r/${c.chainSteps}s enc ${c.encodeMs.toFixed(2)} wait ${c.waitMs.toFixed(2)} gpu ${c.gpuMs.toFixed(2)}; steps ${c.steps} enc ${c.stepEncodeMs.toFixed(2)} wait ${c.stepWaitMs.toFixed(2)}]` : '';
      log(`  decisions:\n${traced.decisions.map((d) => `    ${d.label}${d.ahead ? '^' : ''} ${d.tokens}t/${d.sequenceSteps ?? '-'}s ${d.ms.toFixed(2)}ms${counts(d.counted)}`).join('\n')}`);
    };

    const runs = (flagValue(args, '--runs') ?? 'plain,alternate,auto,auto-no-estimates').split(',');
    const rounds = Number(flagValue(args, '--rounds') ?? 1);
    const share = Number(flagValue(args, '--share') ?? 0.1);
    const deferAt = Number(flagValue(args, '--defer-at') ?? 2);
    for (const source of sources) {
      const options = trees(source);
      const labels = options.map(treeLabel);
      if (runs.includes('plain')) await run(`${source}: plain alone, decisions of ${PLAIN_STEPS}`, source, () => new FixedSchedule(labels, [0], PLAIN_STEPS), options);
      if (runs.includes('plain-verifier')) await run(`${source}: plain alone as root-only tree steps, decisions of ${PLAIN_STEPS}`, source, () => new FixedSchedule(labels, [0], PLAIN_STEPS), options, DEFAULT_BATCH_CREDIT, false);
      if (runs.includes('alternate')) {
        for (const i of [0, options.length - 1]) {
          await run(`${source}: plain ${PLAIN_STEPS} then ${labels[i]} once, in turn`, source, () => new FixedSchedule(labels, [0, i + 1], PLAIN_STEPS), options);
        }
      }
      // Rounds alternate the two controllers, so that a drift of the clocks falls on both.
      for (let round = 1; round <= rounds; round++) {
        const tag = rounds > 1 ? ` (round ${round})` : '';
        if (runs.includes('auto')) await run(`${source}: auto, fresh${tag}`, source, (c) => batchController(options, { stepCosts: c }), options);
        if (runs.includes('auto-no-costs')) await run(`${source}: auto, fresh, no warm-up step costs${tag}`, source, () => batchController(options), options);
        if (runs.includes('auto-before')) await run(`${source}: auto, fresh, neither step costs nor the wait for plain${tag}`, source, () => batchController(options, { waitForPlain: false }), options);
        if (runs.includes('auto-verifier-plain')) await run(`${source}: auto, fresh, plain as root-only tree steps${tag}`, source, (c) => batchController(options, { stepCosts: c }), options, DEFAULT_BATCH_CREDIT, false);
        if (runs.includes('auto-makespan')) await run(`${source}: auto, fresh, credited by makespan${tag}`, source, (c) => batchController(options, { stepCosts: c }), options, 'makespan');
        if (runs.includes('auto-tokens')) await run(`${source}: auto, fresh, credited by tokens${tag}`, source, (c) => batchController(options, { stepCosts: c }), options, 'tokens');
        // The controller without the draft's estimates (draft-hits.ts): what auto did before them.
        if (runs.includes('auto-no-estimates')) await run(`${source}: auto, fresh, no estimates${tag}`, source, (c) => withoutEstimates(batchController(options, { stepCosts: c })), options);
        if (runs.includes('auto-defer')) await run(`${source}: auto, fresh, deferPlainAt ${deferAt}${tag}`, source, (c) => batchController(options, { deferPlainAt: deferAt, stepCosts: c }), options);
        if (runs.includes('auto-share')) await run(`${source}: auto, fresh, exploration's share ${share}${tag}`, source, (c) => batchController(options, { exploreShare: share, stepCosts: c }), options);
        // Tree steps encoded at their submit (step-ahead.ts off), warm-up included.
        if (runs.includes('auto-no-ahead')) {
          verifier.encodesAhead = false;
          await run(`${source}: auto, fresh, steps encoded at the submit${tag}`, source, (c) => batchController(options, { stepCosts: c }), options);
          verifier.encodesAhead = true;
        }
      }
    }
    if (args.includes('--json')) log(`wrote ${writeReport('bench/results', 'batch-decisions', { ...adapterHeader(gpu), tokens, batch: BATCH, plainTokensPerS: plainTps, figures })}`);
  } finally {
    await verifier.destroy();
  }
}

runIfMain(import.meta.url, main);
