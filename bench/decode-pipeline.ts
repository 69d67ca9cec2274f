// How `linattn generate` keeps the GPU busy at batch 1 and 8: its loop (generateGpu) submits runs of decode steps
// that read each token on the GPU, reads each run back with one map, and keeps `inFlight` runs submitted. A run
// too short, or too few in flight, leaves the GPU idle while the host learns that a run has finished and encodes
// the next; bench/decode.ts's call 30 read 2,237 tokens/s at batch 1 against a GPU step of 0.395 ms (2,532 if the
// GPU never idled). This sweeps run length × runs in flight (and chained or not) on the 12-layer model, rounds
// alternating, and prints each setting's median tokens/s beside the GPU's busy share (its timestamped step time ×
// tokens/s): the default is generate's (RUN_STEPS, RUNS_IN_FLIGHT). With --timestamps both, the same sweep also runs on
// a second model that writes no timestamps (each step's pass then has no query writes, resolve or copy of them).
//
//   npx tsx bench/decode-pipeline.ts [--small] [--tokens N] [--rounds N] [--batches 1,8] [--runs 1,2,4,8,16] [--in-flight 2,3,4]
//                                    [--timestamps on|both] [--ramp on|off|both] [--ahead on|off|both]
// --ramp: the first runs growing 1, 2, 4, … steps (generate's default, on) or a full run from the first (off); both
// sweeps the settings both ways. --ahead: the first runs submitted before the prefill's token is read (generate's
// default, on) or once it is on the host (off).
import type { AttentionContext } from '../src/model/attention-context.ts';
import { generateGpu } from '../src/model/generate.ts';
import { GpuModel, MAX_RUN_STEPS, READBACK_RING, RUN_STEPS, RUNS_IN_FLIGHT } from '../src/model/gpu-model.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import { benchConfig, FULL, promptTokens, silentTokenizer, SMALL } from './decode.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';

interface Setting {
  readonly stepsPerReadback: number;
  readonly inFlight: number;
  readonly chainSteps: boolean;
  readonly rampRuns: boolean;
  readonly aheadOfPrefill: boolean;
}

interface Row extends Setting {
  readonly batch: number;
  readonly timestamps: boolean;
  readonly default: boolean;
  readonly tokensPerS: number;
  readonly rounds: readonly number[];
  /** Median timestamped GPU ms of a decode step in these runs (each step its own pass). */
  readonly gpuMsPerStep: number | undefined;
  /** GPU ms per step × steps per second: 1 when the GPU never idles. */
  readonly gpuBusy: number | undefined;
  /** Median ms from the call to the first token on the host (the prefill's), and to the last: what a user waits. */
  readonly firstTokenMs: number;
  readonly totalMs: number;
}

const list = (s: string | undefined, fallback: number[]) => (s === undefined ? fallback : s.split(',').map(Number));

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const small = args.includes('--small') || gpu.isSoftware;
  const tokens = Number(flagValue(args, '--tokens') ?? (small ? 24 : 256));
  const rounds = Number(flagValue(args, '--rounds') ?? (small ? 1 : 5));
  const batches = list(flagValue(args, '--batches'), [1, 8]);
  const runs = list(flagValue(args, '--runs'), [1, 2, 4, 8, 16]).filter((r) => r >= 1 && r <= MAX_RUN_STEPS);
  const inFlights = list(flagValue(args, '--in-flight'), [2, 3, 4]).filter((d) => d >= 1 && d <= READBACK_RING);
  const shape = small ? SMALL : FULL;
  const config = benchConfig(shape);
  const variant = loadModelVariant(config);
  const context: AttentionContext = { gpu, config, program: variant.compiled, source: variant.program };
  const factory = await compiledAttentionFactory(gpu, context.program, config.numHeads, config.headDim);
  const weights = randomWeights(config, 1, variant.params);
  const timestampModes = flagValue(args, '--timestamps') === 'both' ? [true, false] : [true];
  console.log(`decode pipeline sweep on ${gpu.adapterName}: ${shape.layers} layers, hidden ${shape.hidden}, ${tokens} tokens a run, ${rounds} rounds alternating`);

  const rampFlag = flagValue(args, '--ramp') ?? 'on';
  if (!['on', 'off', 'both'].includes(rampFlag)) throw new Error(`--ramp must be on, off or both, got ${rampFlag}`);
  const ramps = rampFlag === 'both' ? [true, false] : [rampFlag === 'on'];
  const aheadFlag = flagValue(args, '--ahead') ?? 'on';
  if (!['on', 'off', 'both'].includes(aheadFlag)) throw new Error(`--ahead must be on, off or both, got ${aheadFlag}`);
  const aheads = aheadFlag === 'both' ? [true, false] : [aheadFlag === 'on'];
  const settings: Setting[] = [];
  for (const aheadOfPrefill of aheads) {
    for (const rampRuns of ramps) {
      for (const inFlight of inFlights) for (const stepsPerReadback of runs) settings.push({ stepsPerReadback, inFlight, chainSteps: true, rampRuns, aheadOfPrefill });
      settings.push({ stepsPerReadback: RUN_STEPS, inFlight: RUNS_IN_FLIGHT, chainSteps: false, rampRuns, aheadOfPrefill });
    }
  }
  const rows: Row[] = [];
  for (const timestamps of timestampModes) {
    const model = await GpuModel.create(gpu, config, weights, factory, { timestamps });
    try {
      for (const batch of batches) {
        const prompts = promptTokens(batch, 16, shape.vocab, 11 + batch);
        const tokenizer = silentTokenizer(shape.vocab);
        // Warm-up: compiles the shape's pipelines and ramps the clocks.
        for (const t0 = performance.now(); performance.now() - t0 < (small ? 0 : 3000); ) await generateGpu(model, tokenizer, prompts, { maxTokens: tokens });
        const got = settings.map(() => ({ tps: [] as number[], gpu: [] as number[], first: [] as number[], total: [] as number[] }));
        for (let r = 0; r < rounds; r++) {
          for (const [i, s] of settings.entries()) {
            const run = await generateGpu(model, tokenizer, prompts, { maxTokens: tokens + 1, ...s });
            got[i].tps.push(run.decodeTokensPerS ?? NaN);
            got[i].first.push(run.prefillMs);
            got[i].total.push(run.prefillMs + run.decodeMs);
            for (const step of run.decodeSteps) if (step.gpuMs !== undefined) got[i].gpu.push(step.gpuMs);
          }
        }
        for (const [i, s] of settings.entries()) {
          const tokensPerS = median(got[i].tps);
          const gpuMsPerStep = got[i].gpu.length > 0 ? median(got[i].gpu) : undefined;
          rows.push({
            batch, timestamps, ...s, default: s.chainSteps && s.rampRuns && s.aheadOfPrefill && s.inFlight === RUNS_IN_FLIGHT && s.stepsPerReadback === RUN_STEPS, tokensPerS, rounds: got[i].tps, gpuMsPerStep,
            firstTokenMs: median(got[i].first), totalMs: median(got[i].total),
            gpuBusy: gpuMsPerStep === undefined ? undefined : (gpuMsPerStep * tokensPerS) / batch / 1000,
          });
        }
      }
    } finally {
      await model.destroy();
    }
  }
  console.log('stamps  batch  run  in flight  chained  ramp  ahead  tokens/s  (rounds)                       GPU ms/step  GPU busy  first ms  total ms');
  for (const r of rows) {
    console.log(
      `${(r.timestamps ? 'on' : 'off').padStart(6)}  ${String(r.batch).padStart(5)}  ${String(r.stepsPerReadback).padStart(3)}  ${String(r.inFlight).padStart(9)}  ${(r.chainSteps ? 'yes' : 'no').padStart(7)}  ${(r.rampRuns ? 'yes' : 'no').padStart(4)}  ${(r.aheadOfPrefill ? 'yes' : 'no').padStart(5)}  ` +
        `${r.tokensPerS.toFixed(1).padStart(8)}  (${r.rounds.map((x) => x.toFixed(0)).join(' ')})`.padEnd(44) +
        `${r.gpuMsPerStep === undefined ? '—' : r.gpuMsPerStep.toFixed(3)}`.padStart(11) +
        `${r.gpuBusy === undefined ? '—' : `${(100 * r.gpuBusy).toFixed(0)} %`}`.padStart(10) +
        `${r.firstTokenMs.toFixed(2)}`.padStart(10) + `${r.totalMs.toFixed(2)}`.padStart(10) +
        (r.default ? '  ← generate' : ''),
    );
  }
  writeReport(process.env.OUT ?? 'out', 'decode-pipeline.json', { ...adapterHeader(gpu), model: shape, tokens, rounds: rounds, rows });
}

runIfMain(import.meta.url, main, { stack: true });
