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
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { loadConfig } from '../src/model/config.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadTokenizer } from '../src/model/tokenizer.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { loadWeights } from '../src/model/weights.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { autoSpeculation, autoTrees, batchController } from '../src/speculative/auto-trees.ts';
import type { DraftSource } from '../src/speculative/draft.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { speculativeGenerateBatch } from '../src/speculative/generate-batch.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { NgramDraft } from '../src/speculative/ngram-draft.ts';
import { GpuPlainDecoder } from '../src/speculative/plain-runs.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { FULL, SMALL, silentTokenizer } from './decode.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import { benchConfig, benchPrompt } from './speculative.ts';

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
  const shape = gpu.isSoftware ? SMALL : FULL;
  const tokens = Number(flagValue(args, '--tokens') ?? (gpu.isSoftware ? 16 : 128));
  const rounds = Number(flagValue(args, '--rounds') ?? (gpu.isSoftware ? 1 : 3));
  const dir = flagValue(args, '--model');
  const config = dir ? loadConfig(join(resolve(dir), 'config.json')) : benchConfig(shape, 0, 'step-ahead-target');
  const variant = loadModelVariant(config);
  const weights = dir ? loadWeights(config, join(resolve(dir), 'model.safetensors'), variant.params) : randomWeights(config, 1, variant.params);
  const model = await GpuModel.create(gpu, config, weights, await compiledAttentionFactory(gpu, variant.compiled, config.numHeads, config.headDim));
  const sizes = [1, 2, 4, 8, 16];
  const verifier = await GpuTreeVerifier.create(model, variant.compiled, weights, { maxNodes: NODES + 1, maxBatch: BATCH, ownsModel: true, sizes });
  const log = (s: string) => console.log(s);
  log(`tree steps encoded ahead on ${gpu.adapterName}: ${dir ?? 'random weights'}, ${config.numLayers} layers, hidden ${config.hiddenSize}, ${tokens} new tokens, ≤ ${NODES} nodes, ${rounds} round(s)`);
  const figures: Figure[] = [];
  try {
    const tok = dir ? loadTokenizer(config) : silentTokenizer(shape.vocab);
    const promptFile = flagValue(args, '--prompts');
    const lines = promptFile ? readFileSync(promptFile, 'utf8').split('\n').filter((l) => l.trim()) : [];
    if (promptFile && lines.length !== BATCH) throw new Error(`${promptFile}: ${lines.length} prompts, the bench takes ${BATCH}`);
    const all = promptFile ? lines.map((l) => tok.encode(l)) : Array.from({ length: BATCH }, (_, s) => benchPrompt(shape.vocab, 100 + s));
    const warm = async (work: () => Promise<unknown>) => {
      const until = performance.now() + (gpu.isSoftware ? 0 : WARM_MS);
      do await work(); while (performance.now() < until);
    };

    for (const batch of [1, BATCH]) {
      const prompts = all.slice(0, batch);
      const plainOf = () => generateGpu(model, tok, prompts, { maxTokens: tokens });
      await warm(plainOf);
      const plainRuns = [];
      for (let i = 0; i < (gpu.isSoftware ? 1 : 5); i++) plainRuns.push(await plainOf());
      const plainTps = median(plainRuns.map((r) => r.decodeTokensPerS ?? NaN));
      const plain = plainRuns[0].tokens;
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
    if (args.includes('--json')) writeReport(flagValue(args, '--out') ?? 'bench/results', 'step-ahead.json', { ...adapterHeader(gpu), model: dir ?? 'random weights', tokens, rounds, figures });
  } finally {
    await verifier.destroy();
  }
}

runIfMain(import.meta.url, main);
