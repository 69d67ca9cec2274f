// Continuous batching against static batches (src/model/generate-continuous.ts), on requests that ask for different
// lengths: P prompts of 16–128 tokens, each with a budget of 16–256 new tokens (seeded), through S sequences.
//   static:      waves of S prompts in order, each wave `generateGpu` (linattn generate's loop) to the longest budget
//                in it; a sequence whose budget ran out decodes on, its tokens discarded (a static server's tail)
//   continuous:  generateContinuousGpu with a budget a prompt, a finished sequence's place prefilled with the next
//   speculative: (--speculate) continuous batch speculation (speculativeGenerateBatch with slots S), each sequence a
//                tree of --tree (default chain:8) from the oracle draft (each prompt's plain tokens: random weights accept
//                nothing else), fixed or --tree auto's controller, refills as the continuous run's
// All count only the tokens the requests asked for (the sum of the budgets), over the wall time from the first
// prefill to the last token. Rounds alternate them after a warm-up round; the figures are the rounds' medians.
// Greedy: each prompt's continuous (and speculative) tokens are compared with its static ones (random weights: no EOS
// stops).
//
// --refill-ahead N[,M…]: waiting prompts prefilled ahead (BatchOptions.refillAhead; default REFILL_AHEAD), each value a
// speculative run of its own in every round, alternating.
//
//   npx tsx bench/continuous.ts [--small] [--prompts P] [--slots S] [--rounds R] [--seed N] [--speculate] [--tree SPEC|auto] [--refill-ahead N,…]
// The 12-layer hidden-768 model of bench/decode.ts (random weights, elu_dwconv); --small (and any software adapter):
// its small shape and 8 prompts of shorter lengths. Writes continuous.json to $OUT if set, else out/.
import { generateGpu } from '../src/model/generate.ts';
import { generateContinuousGpu } from '../src/model/generate-continuous.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import { benchConfig, FULL, SMALL, silentTokenizer } from './decode.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import { autoTrees, batchController } from '../src/speculative/auto-trees.ts';
import { GpuBatchPlainDecoder } from '../src/speculative/batch-plain-runs.ts';
import { REFILL_AHEAD, speculativeGenerateBatch } from '../src/speculative/generate-batch.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { OracleDraft } from '../src/speculative/oracle-draft.ts';
import { parseTreeSpec, shapeSize } from '../src/speculative/tree-spec.ts';

/** Seeded integers in [lo, hi]. */
function seeded(seed: number): (lo: number, hi: number) => number {
  let x = seed >>> 0 || 1;
  return (lo, hi) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return lo + ((x >>> 0) % (hi - lo + 1));
  };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const small = args.includes('--small') || gpu.isSoftware;
  const shape = small ? SMALL : FULL;
  const P = Number(flagValue(args, '--prompts') ?? (small ? 8 : 32));
  const S = Number(flagValue(args, '--slots') ?? (small ? 2 : 8));
  const rounds = Number(flagValue(args, '--rounds') ?? (small ? 1 : 3));
  const seed = Number(flagValue(args, '--seed') ?? 1);
  const next = seeded(seed);
  const [minPrompt, maxPrompt, minBudget, maxBudget] = small ? [4, 16, 4, 24] : [16, 128, 16, 256];
  const prompts = Array.from({ length: P }, () => Array.from({ length: next(minPrompt, maxPrompt) }, () => next(0, shape.vocab - 1)));
  const budgets = prompts.map(() => next(minBudget, maxBudget));
  const asked = budgets.reduce((a, b) => a + b, 0);

  const config = benchConfig(shape);
  const variant = loadModelVariant(config);
  const weights = randomWeights(config, 7, variant.params);
  const model = await GpuModel.create(gpu, config, weights, await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim), { timestamps: false });
  const tok = silentTokenizer(shape.vocab);

  const staticRun = async () => {
    const t0 = performance.now();
    const tokens: number[][] = [];
    for (let w = 0; w < P; w += S) {
      const wave = prompts.slice(w, w + S);
      const r = await generateGpu(model, tok, wave, { maxTokens: Math.max(...budgets.slice(w, w + S)) });
      r.tokens.forEach((t, i) => tokens.push(t.slice(0, budgets[w + i])));
    }
    return { ms: performance.now() - t0, tokens };
  };
  const continuousRun = async () => {
    const t0 = performance.now();
    const r = await generateContinuousGpu(model, tok, prompts, { slots: S, maxTokens: budgets });
    return { ms: performance.now() - t0, tokens: r.tokens, occupancy: r.occupancy, refills: r.refills };
  };
  // Continuous batch speculation with oracle drafts (each prompt's plain tokens), on the same model.
  const speculate = args.includes('--speculate');
  const treeSpec = flagValue(args, '--tree') ?? 'chain:8';
  const auto = treeSpec === 'auto';
  const fixed = auto ? undefined : parseTreeSpec(treeSpec);
  const trees = auto ? autoTrees('oracle', 16) : [{ shape: fixed!, maxNodes: shapeSize(fixed!, 16) }];
  const mostNodes = Math.max(...trees.map((t) => t.maxNodes));
  const verifier = speculate ? await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: mostNodes + 1, maxBatch: S, ownsModel: false }) : undefined;
  const plainRuns = verifier && auto ? new GpuBatchPlainDecoder(verifier, { temperature: 0 }) : undefined;
  const aheads = (flagValue(args, '--refill-ahead') ?? String(REFILL_AHEAD)).split(',').map(Number);
  if (aheads.some((a) => !(Number.isInteger(a) && a >= 0))) throw new Error(`--refill-ahead: non-negative integers, got ${flagValue(args, '--refill-ahead')}`);
  let reference: number[][] = [];
  const speculativeRun = async (refillAhead: number) => {
    const before = { ...verifier!.refillTimes };
    const t0 = performance.now();
    const drafts = prompts.map((p, i) => new OracleDraft(p, reference[i], shape.vocab));
    const opts = { maxTokens: Math.max(...budgets), shape: trees[0].shape, maxNodes: trees[0].maxNodes };
    const policy = auto ? batchController(trees) : undefined;
    const r = await speculativeGenerateBatch(verifier!, drafts, prompts, opts, { slots: S, budgets, refillAhead, ...(policy && { auto: { policy, trees, ...(plainRuns && { plain: plainRuns }) } }) });
    await verifier!.flush();
    const after = verifier!.refillTimes;
    const parts = Object.fromEntries((['flushMs', 'offsetsMs', 'placeMs', 'prefillMs', 'readMs', 'calls', 'placed', 'aheadMs'] as const).map((k) => [k, after[k] - before[k]]));
    return { ms: performance.now() - t0, tokens: r.tokens, refills: r.refills, refillsAhead: r.refillsAhead, refillMs: r.refillMs, refillParts: parts, meanCommitted: r.meanCommitted, steps: r.steps };
  };

  try {
    // A warm-up round: plans, pipelines and recordings built, clocks up.
    await staticRun();
    const first = await continuousRun();
    const staticMs: number[] = [];
    const continuousMs: number[] = [];
    const speculativeMs: number[][] = aheads.map(() => []);
    let last = first;
    reference = (await staticRun()).tokens;
    const specs = speculate ? await Promise.resolve().then(async () => { const out = []; for (const a of aheads) out.push(await speculativeRun(a)); return out; }) : [];
    for (let r = 0; r < rounds; r++) {
      const s = await staticRun();
      staticMs.push(s.ms);
      reference = s.tokens;
      last = await continuousRun();
      continuousMs.push(last.ms);
      if (speculate) {
        for (const [i, a] of aheads.entries()) {
          specs[i] = await speculativeRun(a);
          speculativeMs[i].push(specs[i].ms);
        }
      }
    }
    const same = prompts.filter((_, i) => JSON.stringify(last.tokens[i]) === JSON.stringify(reference[i])).length;
    const specSame = specs.map((spec) => prompts.filter((_, i) => JSON.stringify(spec.tokens[i]) === JSON.stringify(reference[i])).length);
    const rate = (ms: number) => asked / (ms / 1000);
    const report = {
      ...adapterHeader(gpu),
      model: shape,
      workload: { prompts: P, slots: S, promptTokens: [minPrompt, maxPrompt], budgets: [minBudget, maxBudget], askedTokens: asked, seed },
      static: { msRounds: staticMs, tokensPerS: rate(median(staticMs)) },
      continuous: { msRounds: continuousMs, tokensPerS: rate(median(continuousMs)), occupancy: last.occupancy, refills: last.refills },
      speedup: median(staticMs) / median(continuousMs),
      identicalPrompts: same,
      ...(speculate && {
        speculative: specs.map((spec, i) => ({
          draft: 'oracle', tree: treeSpec, maxNodes: mostNodes, refillAhead: aheads[i], msRounds: speculativeMs[i], tokensPerS: rate(median(speculativeMs[i])), refills: spec.refills, refillsAhead: spec.refillsAhead,
          refillMs: spec.refillMs, refillParts: spec.refillParts, steps: spec.steps, meanCommitted: spec.meanCommitted, overContinuous: median(continuousMs) / median(speculativeMs[i]), identicalPrompts: specSame[i],
        })),
      }),
    };
    console.log(`${P} prompts of ${minPrompt}–${maxPrompt} tokens asking ${minBudget}–${maxBudget} new tokens (${asked} in all), ${S} sequences, ${gpu.adapterName}:`);
    console.log(`  static batches of ${S}: ${report.static.tokensPerS.toFixed(0)} tokens/s (median of ${rounds}: ${staticMs.map((m) => m.toFixed(0)).join(' / ')} ms)`);
    console.log(`  continuous:          ${report.continuous.tokensPerS.toFixed(0)} tokens/s (${continuousMs.map((m) => m.toFixed(0)).join(' / ')} ms; ${report.continuous.refills} refills, ${(100 * last.occupancy).toFixed(0)} % of the decode steps' picks asked for)`);
    console.log(`  continuous over static: ${report.speedup.toFixed(2)}×; ${same} of ${P} prompts' tokens identical`);
    for (const x of report.speculative ?? []) {
      console.log(`  speculative (oracle, --tree ${treeSpec}, ${mostNodes} nodes, ${x.refillAhead} prompts prefilled ahead): ${x.tokensPerS.toFixed(0)} tokens/s (${x.msRounds.map((m) => m.toFixed(0)).join(' / ')} ms; ${x.refills} refills, ${x.refillsAhead} placed, in ${x.refillMs.toFixed(0)} ms of the last round, ${x.meanCommitted.toFixed(2)} tokens a sequence a step)`);
      console.log(`    over continuous: ${x.overContinuous.toFixed(2)}×; ${x.identicalPrompts} of ${P} prompts' tokens identical`);
      console.log(`    the last round's refills, host ms: ${Object.entries(x.refillParts).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
    }
    writeReport(process.env.OUT ?? 'out', 'continuous.json', report);
  } finally {
    await verifier?.destroy();
    await model.destroy();
  }
}

runIfMain(import.meta.url, main);
