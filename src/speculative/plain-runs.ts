// Plain decoding in the middle of a speculative run (`--tree auto` switches to it when speculation does not
// pay): n tokens decoded one per step from the verifier's committed state, the last chosen token (the root a
// tree would have had) as the first input. Afterwards the state holds root and the first n − 1 new tokens,
// and the n-th is the next root — exactly where a speculative step that accepted n − 1 tokens leaves it, so
// the loop goes on with either. Token j of the output uses the draw u(j), as plain sampling does.
import { RUN_STEPS, RUNS_IN_FLIGHT, type StepHandle } from '../model/gpu-model.ts';
import type { SamplingOptions } from '../model/sampling.ts';
import type { GpuTreeVerifier } from './gpu-verifier.ts';
import { treeFromParents } from './token-tree.ts';
import type { TreeVerifier } from './verifier.ts';

/**
 * What a plain run may do besides its n tokens: go on (the next decision, taken ahead while the run's steps are in
 * flight, is plain again) and hand each token on as it is read, so that the caller can end one decision and start the
 * next without the stream draining between them.
 */
export interface PlainStream {
  /**
   * Asked when every token so far is submitted, with how many of them are not read yet: further tokens, 0 for not yet
   * (asked again after the next read; with nothing in flight the run ends), or undefined to end the run (not asked again).
   */
  readonly more?: (unread: number) => number | undefined;
  /** The tokens of each read, in order; false: the output is done (tokens in flight are read, not passed on). */
  readonly onTokens?: (tokens: readonly number[]) => boolean;
}

export interface PlainDecoder {
  /**
   * n ≥ 1 tokens after `root` (and what `stream.more` adds); `draw(i)` is the uniform of the i-th (0-based) of them
   * when sampling. Returns every token decoded, those read after onTokens said done included.
   */
  run(root: number, n: number, draw: (i: number) => number, stream?: PlainStream): Promise<number[]>;
}

const RUNS_KEPT = 64;

/**
 * On the GPU: generate's own loop (src/model/generate.ts) — the verifier's pending commit applied, the root
 * uploaded by one decode step, then runs that read each token on the GPU, ramping up as generate's do (2, 4, then
 * RUN_STEPS steps: the GPU starts on a short run while the host encodes the next), RUNS_IN_FLIGHT submits in flight
 * and one readback per run. Plain decisions in a row (stream.more) go on in the same loop.
 */
export class GpuPlainDecoder implements PlainDecoder {
  private readonly sampled: boolean;
  /**
   * The last RUNS_KEPT runs (bench/plain-in-speculation.ts, bench/sequence-decisions.ts): host ms applying the verifier's
   * pending commit, until the first tokens were read, the whole run; its tokens, their GPU ms (timestamps; 0 without) and
   * the model's step recordings it made.
   */
  readonly runs: { flushMs: number; firstMs: number; ms: number; tokens: number; gpuMs: number; recordings: number }[] = [];

  /**
   * `stepTimes`: the runs' steps write GPU timestamps (runs[].gpuMs, for benches); by default they do not, as
   * `linattn generate`'s do not (on the H200 a step's query writes, resolve and copy cost batch 1 5 %, call 48).
   */
  constructor(private readonly verifier: GpuTreeVerifier, private readonly sampling: SamplingOptions, private readonly opts: { readonly stepTimes?: boolean } = {}) {
    this.sampled = (sampling.temperature ?? 0) > 0;
  }

  async run(root: number, n: number, draw: (i: number) => number, stream: PlainStream = {}): Promise<number[]> {
    if (!(Number.isInteger(n) && n >= 1)) throw new Error(`plain run: n must be a positive integer, got ${n}`);
    return this.verifier.model.withStepTimes(this.opts.stepTimes ?? false, () => this.stream(root, n, draw, stream));
  }

  private async stream(root: number, n: number, draw: (i: number) => number, stream: PlainStream): Promise<number[]> {
    const t0 = performance.now();
    await this.verifier.flush({ drain: false });
    const flushMs = performance.now() - t0;
    const model = this.verifier.model;
    const recordings = model.recordings.count;
    let firstMs = NaN;
    let gpuMs = 0;
    let drawn = 0;
    // The model draws one uniform per step at its submit, in step order.
    if (this.sampled) model.setSampling({ ...this.sampling, random: () => draw(drawn++) });
    const out: number[] = [];
    const queue: StepHandle[] = [];
    let budget = n;
    let submitted = 0;
    let runs = 0;
    let asking = stream.more !== undefined;
    let wanted = true;
    const submit = () => {
      const k = submitted === 0 ? 1 : Math.min(RUN_STEPS, budget - submitted, 2 ** Math.min(runs, 4));
      const step: StepHandle = submitted === 0 ? model.decodeStep({ tokens: [root] }) : model.decodeRun(k);
      step.tokens().catch(() => undefined); // awaited below
      queue.push(step);
      submitted += k;
      runs++;
    };
    let first = true;
    for (;;) {
      while (wanted && queue.length < RUNS_IN_FLIGHT) {
        if (submitted >= budget && asking) {
          const more = stream.more!(submitted - out.length);
          if (more === undefined) asking = false;
          else budget += Math.max(0, more);
        }
        if (submitted >= budget) break;
        submit();
      }
      // While the GPU runs the first runs, the tree step that may follow them is encoded (gpu-verifier.ts encodeReentry).
      if (first) this.verifier.encodeReentry();
      first = false;
      const next = queue.shift();
      if (!next) break;
      const ids = await next.tokens();
      if (Number.isNaN(firstMs)) firstMs = performance.now() - t0;
      for (const t of next.timings) gpuMs += t.gpuMs ?? 0;
      out.push(...ids);
      if (wanted && stream.onTokens) wanted = stream.onTokens(ids);
    }
    this.runs.push({ flushMs, firstMs, ms: performance.now() - t0, tokens: submitted, gpuMs, recordings: model.recordings.count - recordings });
    if (this.runs.length > RUNS_KEPT) this.runs.shift();
    return out;
  }
}

/** Anywhere (the CPU verifier): each step a tree of the root alone, verified and committed. */
export class VerifierPlainDecoder implements PlainDecoder {
  private readonly sampled: boolean;

  constructor(private readonly verifier: TreeVerifier, sampling: SamplingOptions) {
    this.sampled = (sampling.temperature ?? 0) > 0;
  }

  async run(root: number, n: number, draw: (i: number) => number, stream: PlainStream = {}): Promise<number[]> {
    if (!(Number.isInteger(n) && n >= 1)) throw new Error(`plain run: n must be a positive integer, got ${n}`);
    const out: number[] = [];
    let token = root;
    let budget = n;
    let asking = stream.more !== undefined;
    for (let i = 0; ; i++) {
      // Nothing is ever in flight here: "not yet" (0) ends the run as "no more" does.
      if (i >= budget && asking) {
        const more = stream.more!(0);
        if (more === undefined) asking = false;
        else budget += Math.max(0, more);
      }
      if (i >= budget) break;
      const tree = treeFromParents([token], [-1]);
      const r = await this.verifier.verify({ tree, ...(this.sampled && { uniforms: Float64Array.of(draw(i)) }) });
      this.verifier.commit([0]);
      token = r.picks[0];
      out.push(token);
      if (stream.onTokens && !stream.onTokens([token])) break;
    }
    return out;
  }
}
