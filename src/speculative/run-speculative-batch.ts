// Speculative generation of several prompts in one batch, as `linattn generate --prompt A --prompt B … --speculate`
// runs it: the prompts decoded plainly in one batch first (the baseline, and the oracle's trajectories), then
// speculatively in one batch (generate-batch.ts: one draft and one tree per sequence, every tree verified in one
// forward, each sequence accepting and committing its own path); prompts may differ in length. The report gives the
// mean accepted length, tokens/s of both batches over all sequences, the speed-up and how many sequences' output
// equals plain decoding's. Without --tree (or with --tree auto) the batch is cost-aware (generate-batch.ts
// batch.auto): a controller picks, step by step, plain steps (on the GPU the model's decode loop, each sequence at its
// own position: batch-plain-runs.ts; root-only tree steps in float64) or one of autoTrees() for every sequence, by
// the batch's measured tokens/s; a fixed --tree runs that tree (chained runs, --chain-steps, need one).
import type { ModelConfig } from '../model/config.ts';
import { cpuAttentionSessionFromVariant } from '../model/cpu-attention.ts';
import { cpuModel } from '../model/cpu-forward.ts';
import { generateCpu, generateGpu } from '../model/generate.ts';
import { generateContinuousGpu } from '../model/generate-continuous.ts';
import { GpuModel } from '../model/gpu-model.ts';
import { CpuTreeVerifier } from './cpu-verifier.ts';
import type { DraftSource } from './draft.ts';
import { speculativeGenerateBatch, type BatchCredit, type BatchSpeculativeResult } from './generate-batch.ts';
import { DEFAULT_BATCH_CREDIT } from './batch-credit.ts';
import { GpuBatchPlainDecoder } from './batch-plain-runs.ts';
import { GpuTreeVerifier } from './gpu-verifier.ts';
import { checkSpeculatable, draftFor, modelFiles, type SpeculativeRunContext } from './run-speculative.ts';
import { candidatesPerNode } from './tree-spec.ts';
import { autoChainSteps, autoTrees, batchController, batchWarmUpSchedule, treeLabel } from './auto-trees.ts';
import type { TreeOption } from './generate.ts';
import { formatPolicySummary } from './speculation-controller.ts';
import { autoStatePath, keptController, keptLine, writeAutoState } from './auto-state-cache.ts';
import { VerifierBatch } from './verifier-batch.ts';
import type { BatchTreeVerifier } from './verifier.ts';
import { median } from '../runtime/timing.ts';

/**
 * The trees a batch runs: --tree's when given, else (auto) the cost-aware options beside plain steps, autoTrees() —
 * chained runs for greedy Medusa on the GPU (autoChainSteps), single steps otherwise.
 */
export function batchTrees(c: Pick<SpeculativeRunContext, 'args' | 'device' | 'sampling'>, config: ModelConfig, batch: number): { trees: TreeOption[]; auto: boolean } {
  const { args } = c;
  if (!args.auto) return { trees: [{ shape: args.shape, maxNodes: args.maxNodes }], auto: false };
  const heads = args.source === 'medusa' ? config.medusa!.numHeads : Infinity;
  return { trees: autoTrees(args.source, args.maxNodes, heads, autoChainSteps(args.source, c.device, c.sampling, batch)), auto: true };
}

/**
 * Plain, then speculative generation of the prompts in one batch; each prompt's speculative text goes to stdout. With
 * `slots` below the prompts' count, continuous batching (GPU): both runs put each finished prompt's sequence to the
 * next prompt (plain: generateContinuousGpu; speculative: BatchOptions.slots), and the speed-up is over every new token
 * from the first prefill to the last token, refills' prefills included. `budgets`: a budget a prompt.
 */
export async function runSpeculativeBatch(c: SpeculativeRunContext & { readonly prompts: readonly (readonly number[])[]; readonly slots?: number; readonly budgets?: readonly number[] }): Promise<void> {
  const { args, config, prompts } = c;
  const continuous = c.slots !== undefined && c.slots < prompts.length;
  /** Sequences in the batch. */
  const b = continuous ? c.slots! : prompts.length;
  const budgets = c.budgets ?? prompts.map(() => c.maxTokens);
  checkSpeculatable(args.source, c.variant, config);
  if (continuous && c.device !== 'gpu') throw new Error(`${prompts.length} prompts through ${b} sequences (continuous batching) run on the GPU: not with --device cpu`);
  if (args.source.startsWith('draft:')) throw new Error('--speculate draft:DIR takes one --prompt: a batch runs the ngram, lookup, adaptive, medusa and oracle drafts (a draft model would keep a state of its own per sequence)');
  if (args.chainSteps !== undefined && args.source !== 'medusa') throw new Error(`--chain-steps with several --prompt takes --speculate medusa (a chained batch drafts with the heads on the GPU), not ${args.source}`);
  const { trees, auto } = batchTrees(c, config, b);
  const tree = trees[0];
  const k = Math.max(...trees.map((t) => candidatesPerNode(t.shape)));
  const mostNodes = Math.max(...trees.map((t) => t.maxNodes));
  const nodes = mostNodes + 1;
  const sizes = [...new Set([...(auto ? [1] : []), ...trees.map((t) => (t.shape.kind === 'static' ? t.shape.paths.length : t.maxNodes) + 1)])];
  const warmUp = c.warmUp ?? (c.device === 'gpu' && !c.gpu!.isSoftware);
  const eos = c.tokenizer.eos;

  let verifier: BatchTreeVerifier | undefined;
  try {
    let plain: Baseline;
    let where: string;
    if (c.device === 'gpu') {
      const gpu = c.gpu!;
      const model = await GpuModel.create(gpu, config, c.weights, await c.prepareAttention!({ gpu, config, program: c.variant.compiled, source: c.variant.program }), { withMedusa: true });
      verifier = await GpuTreeVerifier.create(model, c.variant.compiled, c.weights, { maxNodes: nodes, maxBatch: b, ownsModel: true, sizes });
      // The baseline is what `linattn generate` runs: no step timestamps (this model keeps them for the tree steps);
      // with budgets of their own or continuous batching, generateContinuousGpu (each prompt to its own budget).
      const baseline = async (most: number) => {
        if (!continuous && c.budgets === undefined) return await generateGpu(model, c.tokenizer, prompts, { maxTokens: Math.min(c.maxTokens, most), sampling: c.sampling, seed: c.seed, stepTimes: false });
        const r = await model.withStepTimes(false, () => generateContinuousGpu(model, c.tokenizer, prompts, { slots: b, maxTokens: budgets.map((n) => Math.min(n, most)), sampling: c.sampling, seed: c.seed }));
        return { tokens: r.tokens, endToEndTokensPerS: r.tokensPerS };
      };
      if (warmUp) await baseline(32);
      plain = await baseline(Infinity);
      where = gpu.adapterName;
    } else {
      const cpu = cpuModel(config, c.weights);
      verifier = new VerifierBatch(prompts.map(() => new CpuTreeVerifier(cpu, c.variant.compiled, nodes)));
      const attention = cpuAttentionSessionFromVariant(c.variant.program, cpu.weights.layers.map((l) => l.attention));
      const all = generateCpu(cpu, attention, c.tokenizer, prompts, { maxTokens: Math.max(...budgets), sampling: c.sampling, seed: c.seed });
      plain = c.budgets === undefined ? all : { tokens: all.tokens.map((t, i) => t.slice(0, budgets[i])) };
      where = 'CPU float64';
    }
    const drafts = (): DraftSource[] =>
      prompts.map((p, s) => draftFor(args.source, { config, candidates: k, maxNodes: mostNodes, seed: c.seed + s, prompt: p, plain: plain.tokens[s], sampling: c.sampling }));
    await verifier.prepare?.({ ...(args.source === 'medusa' && { medusaTopK: k }), batch: b });
    const opts = {
      maxTokens: c.maxTokens, shape: tree.shape, maxNodes: tree.maxNodes, sampling: c.sampling, seed: c.seed,
      ...(eos !== undefined && { eos }),
      ...(config.maxPositionEmbeddings !== undefined && { maxPosition: config.maxPositionEmbeddings }),
      ...(args.chainSteps !== undefined && { chainSteps: args.chainSteps }),
    };
    const labels = trees.map(treeLabel);
    const slotting = continuous ? { slots: b, ...continuousKnobs() } : {};
    // Auto's plain decisions by the model's own decode loop, each sequence at its own position (batch-plain-runs.ts).
    const plainRuns = auto && verifier instanceof GpuTreeVerifier && verifier.perSequence ? new GpuBatchPlainDecoder(verifier, c.sampling) : undefined;
    await plainRuns?.prepare(b);
    // Untimed first: the batch's tree kernels and recordings are built at their first use (under auto every option's,
    // in a fixed schedule, so that none is charged its build in the controller's first decisions).
    // What a step of each tree cost in the warm-up: for the estimates, a tree not measured yet costs that at least.
    let stepCosts: (number | undefined)[] | undefined;
    if (warmUp) {
      // Under auto, room for the whole schedule however many tokens its trees emit (each at most its nodes + 1 a step).
      const tokens = auto ? 6 + 2 * trees.reduce((n, t) => n + t.maxNodes + 1, 0) : 32;
      const warmSchedule = batchWarmUpSchedule(trees);
      const schedule = auto ? { auto: { policy: warmSchedule, trees, ...(plainRuns && { plain: plainRuns }) } } : {};
      await speculativeGenerateBatch(verifier, drafts(), prompts, { ...opts, maxTokens: Math.min(c.maxTokens, tokens) }, { ...schedule, ...slotting, budgets: budgets.map((n) => Math.min(n, tokens)) });
      if (auto) stepCosts = trees.map((_, i) => warmSchedule.fastestMsPerStep(i + 1));
    }
    // auto keeps its measurements between runs as one sequence's does (--auto-state FILE, or the cache on a hardware GPU),
    // keyed by the batch size too: a batch's rates are all its sequences' tokens over its time.
    const statePath = !auto || args.autoState === 'none'
      ? undefined
      : args.autoState ?? (c.device === 'gpu' && !c.gpu!.isSoftware ? autoStatePath({ files: modelFiles(config), source: args.source, adapter: c.gpu!.adapterName, labels: ['plain', ...labels], batch: b, credit: args.batchCredit ?? DEFAULT_BATCH_CREDIT, continuous }) : undefined);
    const kept = auto ? keptController(statePath, args.autoState !== undefined, (from) => batchController(trees, { ...(from && { from }), ...(args.exploreShare !== undefined && { exploreShare: args.exploreShare }), ...(stepCosts && { stepCosts }) })) : undefined;
    const policy = kept?.controller;
    const t0 = performance.now();
    const r = await speculativeGenerateBatch(verifier, drafts(), prompts, opts, { ...slotting, ...(c.budgets && { budgets }), ...(policy && { auto: { policy, trees, ...(args.batchCredit && { credit: args.batchCredit }), ...(plainRuns && { plain: plainRuns }) } }) });
    const ms = performance.now() - t0;
    if (policy && statePath !== undefined) writeAutoState(statePath, policy.state());
    for (const [s, tokens] of r.tokens.entries()) {
      c.stdout(`--- ${s + 1} of ${prompts.length} ---\n${c.tokenizer.decode(tokens.filter((t) => t !== eos))}\n`);
    }
    const endToEnd = plain.endToEndTokensPerS === undefined ? undefined : { tokensPerS: r.tokens.reduce((n, t) => n + t.length, 0) / (ms / 1000), plainTokensPerS: plain.endToEndTokensPerS };
    c.stderr(formatBatchReport(r, plain, { draft: args.source, tree: auto ? 'auto' : tree.shape.spec, maxNodes: mostNodes, where, chainSteps: args.chainSteps, ...(args.batchCredit && { credit: args.batchCredit }), ...(continuous && { slots: b }), ...(endToEnd && { endToEnd }) }));
    if (statePath !== undefined) c.stderr(keptLine(statePath, kept!.started));
  } finally {
    await verifier?.destroy();
  }
}

/**
 * The plain run a batch's speed-up is over: a GenerateResult (its decode tokens/s), or each prompt's tokens and, from
 * generateContinuousGpu, every new token over its whole run (endToEndTokensPerS).
 */
export interface Baseline {
  readonly tokens: readonly (readonly number[])[];
  readonly decodeTokensPerS?: number;
  readonly endToEndTokensPerS?: number;
}

export function formatBatchReport(
  r: BatchSpeculativeResult, plain: Baseline,
  o: { draft: string; tree: string; maxNodes: number; where: string; chainSteps?: number; credit?: BatchCredit; slots?: number; endToEnd?: { tokensPerS: number; plainTokensPerS: number } },
): string {
  const b = r.tokens.length;
  // Over the whole runs (prefills and refills included) where the baseline was timed so: continuous batching, budgets.
  const spec = o.endToEnd ? o.endToEnd.tokensPerS : r.decodeTokensPerS;
  const base = o.endToEnd ? o.endToEnd.plainTokensPerS : plain.decodeTokensPerS;
  const measure = o.endToEnd ? 'every new token from the first prefill, refills included' : 'decode';
  const same = r.tokens.filter((t, s) => t.join(',') === plain.tokens[s].join(',')).length;
  const total = r.tokens.reduce((n, t) => n + t.length, 0);
  const batch = o.slots ? `${b} prompts through ${o.slots} sequences (continuous batching, ${r.refills} refills in ${r.refillMs.toFixed(1)} ms${r.refillsAhead > 0 ? `, ${r.refillsAhead} of them prefilled ahead` : ''})` : `batch of ${b}`;
  return (
    `speculative ${batch} (${o.draft}, --tree ${o.tree}${o.chainSteps ? `, --chain-steps ${o.chainSteps}` : ''}, --max-nodes ${o.maxNodes}; ${o.where}): ${total} tokens in ${r.steps} verification steps, ` +
    `${r.meanCommitted.toFixed(2)} tokens a sequence a step${r.gpuMsPerStep.length ? ` (GPU ${median(r.gpuMsPerStep).toFixed(3)} ms a step, median)` : ''}, ${spec === undefined ? '—' : spec.toFixed(1)} tokens/s (all sequences, ${measure})\n` +
    `plain decoding of the ${o.slots ? 'prompts, continuous batching' : 'batch'}, same run: ${plain.tokens.reduce((n, t) => n + t.length, 0)} tokens, ${base === undefined ? '—' : base.toFixed(1)} tokens/s; ` +
    `speed-up ${spec !== undefined && base !== undefined ? `${(spec / base).toFixed(2)}×` : '—'}; output identical to plain decoding in ${same} of ${b} sequences` +
    `${same === b ? '' : ' (expected only when sampling with a sampled draft, or at a float32 near-tie)'}\n` +
    `the batch's tail, after ${o.slots ? 'no prompt was left waiting and a sequence ended' : 'its first sequence ended'}: ${r.tailMs.toFixed(1)} of ${r.decodeMs.toFixed(1)} ms\n` +
    // Credited by the longest budgets, a decision's tokens are what its steps took off them, times the live sequences.
    (r.policy ? `auto (credited by ${o.credit ?? DEFAULT_BATCH_CREDIT}): ${formatPolicySummary(r.policy)}\n` : '')
  );
}

/**
 * Benches' knobs for continuous batch speculation (the defaults are the H200's): LINATTN_REFILL_AHEAD=N waiting prompts
 * prefilled ahead (BatchOptions.refillAhead), LINATTN_CUT_RUNS=1 chained runs cut at the nearest budget (cutRuns).
 */
function continuousKnobs(): { refillAhead?: number; cutRuns?: boolean } {
  const ahead = process.env.LINATTN_REFILL_AHEAD;
  const cut = process.env.LINATTN_CUT_RUNS;
  return {
    ...(ahead !== undefined && ahead !== '' && { refillAhead: Number(ahead) }),
    ...(cut !== undefined && cut !== '' && { cutRuns: !['0', 'false'].includes(cut) }),
  };
}
