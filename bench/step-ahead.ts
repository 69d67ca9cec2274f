// Tree steps whose commands are encoded while the step before runs (src/speculative/step-ahead.ts) against steps
// encoded at their submit, side by side in one process, rounds alternating, the same prompts and drafts.
//
//   npx tsx bench/step-ahead.ts [--tokens 128] [--rounds 3] [--json]                (random weights, bench/decode.ts's model)
//   npx tsx bench/step-ahead.ts --model DIR --prompts FILE                           (a trained model; FILE: one prompt a line, 8 lines)
//
// For batch 1 (the first prompt) and batch 8, per host-drafted source and fixed tree — adaptive `chain:1` and
// `best:4` (15 nodes), n-gram `top:4` (15 nodes) — and the cost-aware auto of both sources: tokens/s, the speed-up
// over plain `generateGpu` of the same prompts (measured in the same process), the host's ms a step from the call to
// the submit (and of it the uploads and queue.submit), its ms waiting for the readback, and how many steps were
// submitted from commands encoded ahead.
// Greedy; every output is checked against plain decoding's.
import { getDevice } from '../src/runtime/dawn.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { autoSpeculation, autoTrees, batchController } from '../src/speculative/auto-trees.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { speculativeGenerateBatch } from '../src/speculative/generate-batch.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import { plainBaseline, speculationTarget, targetPrompts, warmer } from './speculation-target.ts';

const BATCH = 8;
const NODES = 15;
const WARM_MS = 300;

/** What one run measured. */
interface Figure {
  readonly batch: number;
  readonly run: string;
  readonly ahead: boolean;
  readonly round: number;
  readonly tokensPerS: number;
  readonly speedup: number;
  readonly identical: boolean;
  /** Unchained tree steps in the run, the host's ms a step to the submit and waiting for the readback, steps submitted from commands encoded ahead. */
  readonly steps: number;
  readonly encodeMs: number;
  /** Of encodeMs: checking and uploading the trees, and queue.submit (where Dawn records the commands for the driver). */
  readonly uploadMs: number;
  readonly submitMs: number;
  readonly waitMs: number;
  readonly fromAhead: number;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const tokens = Number(flagValue(args, '--tokens') ?? (gpu.isSoftware ? 16 : 128));
  const rounds = Number(flagValue(args, '--rounds') ?? (gpu.isSoftware ? 1 : 3));
  const target = await speculationTarget(gpu, args, 'step-ahead-target');
  const { config, variant, weights, model } = target;
  const sizes = [1, 2, 4, 8, 16];
  const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: NODES + 1, maxBatch: BATCH, ownsModel: true, sizes });
  const log = (s: string) => console.log(s);
  log(`tree steps encoded ahead on ${gpu.adapterName}: ${target.source}, ${config.numLayers} layers, hidden ${config.hiddenSize}, ${tokens} new tokens, ≤ ${NODES} nodes, ${rounds} round(s)`);
  const figures: Figure[] = [];
  try {
    const all = targetPrompts(args, target, BATCH);
    const warm = warmer(gpu, WARM_MS);

    for (const batch of [1, BATCH]) {
      const prompts = all.slice(0, batch);
      const { tokensPerS: plainTps, runs: plainRuns, tokens: plain } = await plainBaseline(gpu, target, prompts, tokens, warm);
      log(`batch ${batch}: plain generate ${plainTps.toFixed(1)} tokens/s (median of ${plainRuns.length})`);
      await verifier.prepare({ batch });

      const draftOf = (source: string, s: number): DraftSource => (source === 'adaptive' ? new AdaptiveDraft(s) : new NgramDraft());
      /** One generation of `run` ('adaptive chain:1', 'ngram top:4', 'adaptive auto', …): its tokens and tokens/s. */
      const generate = async (run: string): Promise<{ tokens: number[][]; tps: number }> => {
        const [source, spec] = run.split(' ');
        const trees = autoTrees(source, NODES);
        const fixed = { maxTokens: tokens, shape: parseTreeSpec(spec === 'auto' ? 'chain:1' : spec), maxNodes: spec === 'chain:1' ? 1 : NODES };
        if (batch === 1) {
          const auto = spec === 'auto' ? { auto: autoSpeculation(trees, new GpuPlainDecoder(verifier, { temperature: 0 })) } : {};
          const r = await speculativeGenerate(verifier, draftOf(source, 0), prompts[0], { ...fixed, ...auto });
          return { tokens: [r.tokens], tps: r.decodeTokensPerS ?? NaN };
        }
        const auto = spec === 'auto' ? { auto: { policy: batchController(trees), trees } } : {};
        const r = await speculativeGenerateBatch(verifier, prompts.map((_, s) => draftOf(source, s)), prompts, fixed, auto);
        return { tokens: r.tokens, tps: r.decodeTokensPerS ?? NaN };
      };

      for (const run of ['adaptive chain:1', 'adaptive best:4', 'ngram top:4', 'adaptive auto', 'ngram auto']) {
        for (let round = 1; round <= rounds; round++) {
          for (const ahead of [true, false]) {
            verifier.encodesAhead = ahead;
            await warm(() => generate(run));
            const before = verifier.stepTimes;
            const r = await generate(run);
            const after = verifier.stepTimes;
            const steps = after.steps - before.steps;
            const fig: Figure = {
              batch, run, ahead, round, tokensPerS: r.tps, speedup: r.tps / plainTps,
              identical: r.tokens.every((t, s) => t.join(',') === plain[s].join(',')),
              steps, encodeMs: (after.encodeMs - before.encodeMs) / steps,
              uploadMs: (after.uploadMs - before.uploadMs) / steps, submitMs: (after.submitMs - before.submitMs) / steps, waitMs: (after.waitMs - before.waitMs) / steps,
              fromAhead: after.ahead.used - before.ahead.used,
            };
            figures.push(fig);
            log(`  ${run}${ahead ? ', encoded ahead' : ', encoded at the submit'} (round ${round}): ${fig.tokensPerS.toFixed(1)} tokens/s, ${fig.speedup.toFixed(2)}× plain, ` +
              `${steps} tree steps (${fig.fromAhead} from commands encoded ahead), host to the submit ${fig.encodeMs.toFixed(3)} ms a step (uploads ${fig.uploadMs.toFixed(3)}, submit ${fig.submitMs.toFixed(3)}), waiting ${fig.waitMs.toFixed(3)}, identical ${fig.identical}`);
          }
        }
      }
    }
    verifier.encodesAhead = true;
    if (args.includes('--json')) writeReport(flagValue(args, '--out') ?? 'bench/results', 'step-ahead.json', { ...adapterHeader(gpu), model: target.source, tokens, rounds, figures });
  } finally {
    await verifier.destroy();
  }
}

runIfMain(import.meta.url, main);
