// Plain decoding of a speculative batch between its tree decisions (generate-batch.ts under `--tree auto`), by the
// model's own decode loop rather than root-only tree steps: the verifier's pending commit applied, each sequence's
// position handed to the model (its sequences committed paths of their own lengths, so the decode step reads a
// position per sequence: GpuModel.setSequenceOffsets), then generate's loop — the roots uploaded by one decode step,
// runs of RUN_STEPS steps that read each token on the GPU, RUNS_IN_FLIGHT submits in flight, one readback a run.
// After n steps the state holds each sequence's root and its first n − 1 new tokens, the n-th its next root: where n
// root-only tree steps leave it, so the batch goes on with either. Sampling: step k's token of sequence s takes
// draw(k, s), which the model draws b a step, sequence 0 first.
import { RUN_STEPS, RUNS_IN_FLIGHT, type StepHandle } from '../model/gpu-model.ts';
import type { SamplingOptions } from '../model/sampling.ts';
import type { GpuTreeVerifier } from './gpu-verifier.ts';

export interface BatchPlainRun {
  /** Steps to run (≥ 1). */
  readonly steps: number;
  /**
   * Asked when every step so far is submitted, with how many of them are not read yet: further steps (the next
   * decision, taken ahead, is plain again), 0 for not yet (asked again after the next read), or undefined to end the
   * run (not asked again).
   */
  readonly more?: (unread: number) => number | undefined;
  /** Each step's tokens, one per sequence, in order; false: the batch is done (the steps in flight are read, not passed on). */
  readonly onStep: (tokens: readonly number[]) => boolean;
  /** Sampling: the uniform of step k's token of sequence s. */
  readonly draw?: (k: number, s: number) => number;
}

export interface BatchPlainDecoder {
  /** Runs plain steps after `roots` (each sequence's last chosen token, not yet in the state); returns the steps submitted. */
  run(roots: readonly number[], run: BatchPlainRun): Promise<number>;
}

/** Runs kept for benches. */
const RUNS_KEPT = 64;

export class GpuBatchPlainDecoder implements BatchPlainDecoder {
  private readonly sampled: boolean;
  /** Per run: host ms to flush the verifier and to set the offsets, until the first tokens were read, the whole run; its steps, and their GPU ms (timestamps; 0 without). */
  readonly runs: { flushMs: number; offsetsMs: number; firstMs: number; ms: number; steps: number; gpuMs: number }[] = [];
  /** Runs since creation (runs keeps the last RUNS_KEPT). */
  ran = 0;

  /** `stepTimes`: the steps write GPU timestamps (runs[].gpuMs, for benches); by default not, as `linattn generate`'s. */
  constructor(private readonly verifier: GpuTreeVerifier, private readonly sampling: SamplingOptions, private readonly opts: { readonly stepTimes?: boolean } = {}) {
    if (!verifier.perSequence) throw new Error('plain batch runs on the model need a verifier whose sequences keep positions of their own (not softmax attention)');
    this.sampled = (sampling.temperature ?? 0) > 0;
  }

  /** Compiles the model's decode step with a position per sequence at batch b ahead of a timed run. */
  prepare(b: number): Promise<void> {
    return this.verifier.model.prepareSequenceOffsets(b);
  }

  async run(roots: readonly number[], run: BatchPlainRun): Promise<number> {
    if (!(Number.isInteger(run.steps) && run.steps >= 1)) throw new Error(`plain batch run: steps must be a positive integer, got ${run.steps}`);
    return this.verifier.model.withStepTimes(this.opts.stepTimes ?? false, () => this.decode(roots, run));
  }

  private async decode(roots: readonly number[], run: BatchPlainRun): Promise<number> {
    const t0 = performance.now();
    const verifier = this.verifier;
    await verifier.flush({ drain: false });
    const flushMs = performance.now() - t0;
    const model = verifier.model;
    if (roots.length !== model.batchSize) throw new Error(`plain batch run: ${roots.length} roots for a batch of ${model.batchSize}`);
    await model.setSequenceOffsets(verifier.sequenceOffsets);
    const offsetsMs = performance.now() - t0 - flushMs;
    let firstMs = NaN;
    const b = roots.length;
    if (this.sampled) {
      if (!run.draw) throw new Error('plain batch run: sampling needs the draws');
      let d = 0;
      model.setSampling({ ...this.sampling, random: () => run.draw!(Math.floor(d / b), d++ % b) });
    }
    let budget = run.steps;
    let submitted = 0;
    let read = 0;
    let asking = run.more !== undefined;
    const queue: { ids: Promise<number[]>; steps: number; handle: StepHandle }[] = [];
    let gpuMs = 0;
    const submit = (k: number) => {
      const step: StepHandle = submitted === 0 ? model.decodeStep({ tokens: roots }) : model.decodeRun(k);
      const ids = step.tokens();
      ids.catch(() => undefined); // awaited below
      queue.push({ ids, steps: k, handle: step });
      submitted += k;
    };
    let wanted = true;
    let first = true;
    for (;;) {
      while (wanted && queue.length < RUNS_IN_FLIGHT) {
        if (submitted >= budget && asking) {
          const more = run.more!(submitted - read);
          if (more === undefined) asking = false;
          else budget += Math.max(0, more);
        }
        if (submitted >= budget) break;
        submit(submitted === 0 ? 1 : Math.min(RUN_STEPS, budget - submitted));
      }
      // While the GPU runs the first runs, the tree step that may follow them is encoded (gpu-verifier.ts encodeReentry).
      if (first) verifier.encodeReentry();
      first = false;
      const next = queue.shift();
      if (!next) break;
      const ids = await next.ids;
      if (Number.isNaN(firstMs)) firstMs = performance.now() - t0;
      for (const t of next.handle.timings) gpuMs += t.gpuMs ?? 0;
      for (let k = 0; k < next.steps; k++) {
        read++;
        if (wanted) wanted = run.onStep(ids.slice(k * b, (k + 1) * b));
      }
    }
    this.ran++;
    this.runs.push({ flushMs, offsetsMs, firstMs, ms: performance.now() - t0, steps: submitted, gpuMs });
    if (this.runs.length > RUNS_KEPT) this.runs.shift();
    return submitted;
  }
}
