// The decode step with a position per sequence (RecurrentOptions.perSequence, GpuModel.setSequenceOffsets) against the
// batch's one position, at batch 8 on bench/decode.ts's 12-layer shape with random weights (or --model DIR): what plain
// decoding in the middle of a speculative batch (batch-plain-runs.ts) pays for its sequences sitting apart. Each round
// prefills the same prompts and runs --steps decode steps generate's way (runs of RUN_STEPS, RUNS_IN_FLIGHT in flight,
// one readback a run), once with no offsets and once with offsets 0…7 spread over the sequences, alternating; reported:
// the median GPU ms of a step (timestamps) and wall ms a step of each.
//   npx tsx bench/sequence-offsets.ts [--model DIR --prompts FILE] [--steps 96] [--rounds 5] [--json]
import { RUN_STEPS, RUNS_IN_FLIGHT, type StepHandle } from '../src/model/gpu-model.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { median } from '../src/runtime/timing.ts';
import { adapterHeader, flagValue, runIfMain, writeReport } from './script.ts';
import { speculationTarget, targetPrompts } from './speculation-target.ts';

const BATCH = 8;
const OFFSETS = [0, 3, 1, 7, 2, 5, 4, 6];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const gpu = await getDevice();
  const steps = Number(flagValue(args, '--steps') ?? (gpu.isSoftware ? 24 : 96));
  const rounds = Number(flagValue(args, '--rounds') ?? (gpu.isSoftware ? 1 : 5));
  const target = await speculationTarget(gpu, args, 'sequence-offsets-target');
  const { model, config } = target;
  const raw = targetPrompts(args, target, BATCH);
  const length = Math.min(...raw.map((p) => p.length));
  const prompts = raw.map((p) => p.slice(0, length));
  await model.prepareSequenceOffsets(BATCH);
  const log = (s: string) => console.log(s);
  log(`decode steps at batch ${BATCH} on ${gpu.adapterName}: ${target.source}, ${config.numLayers} layers, hidden ${config.hiddenSize}, ${steps} steps a run, ${rounds} rounds`);

  /** One run: the prompts prefilled, `steps` decode steps generate's way; GPU ms of each step, wall ms a step. */
  const run = async (offsets: readonly number[] | null) => {
    await (await model.prefill(prompts)).tokens();
    await model.setSequenceOffsets(offsets);
    const t0 = performance.now();
    const queue: StepHandle[] = [];
    const gpuMs: number[] = [];
    let submitted = 0;
    let read = 0;
    while (read < steps) {
      while (queue.length < RUNS_IN_FLIGHT && submitted < steps) {
        const k = Math.min(RUN_STEPS, steps - submitted);
        queue.push(model.decodeRun(k));
        submitted += k;
      }
      const h = queue.shift()!;
      await h.tokens();
      for (const t of h.timings) if (t.gpuMs !== undefined) gpuMs.push(t.gpuMs);
      read += h.timings.length;
    }
    return { gpuMs: median(gpuMs), wallMs: (performance.now() - t0) / steps };
  };
  for (let i = 0; i < 3; i++) await run(OFFSETS); // warm-up: compiles, recordings, clocks
  const figures: { offsets: boolean; round: number; gpuMs: number; wallMs: number }[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const offsets of [null, OFFSETS]) {
      const r = await run(offsets);
      figures.push({ offsets: offsets !== null, round, ...r });
      log(`round ${round}, ${offsets ? `offsets ${offsets.join(',')}` : 'one position'}: GPU ${r.gpuMs.toFixed(4)} ms a step (median), wall ${r.wallMs.toFixed(4)} ms a step`);
    }
  }
  const med = (o: boolean, k: 'gpuMs' | 'wallMs') => median(figures.filter((f) => f.offsets === o).map((f) => f[k]));
  log(`medians: one position GPU ${med(false, 'gpuMs').toFixed(4)} / wall ${med(false, 'wallMs').toFixed(4)} ms a step; a position per sequence GPU ${med(true, 'gpuMs').toFixed(4)} / wall ${med(true, 'wallMs').toFixed(4)}`);
  if (args.includes('--json')) log(`wrote ${writeReport('bench/results', 'sequence-offsets', { ...adapterHeader(gpu), batch: BATCH, steps, figures })}`);
}

runIfMain(import.meta.url, main);
