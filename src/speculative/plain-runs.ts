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

export interface PlainDecoder {
  /** n ≥ 1 tokens after `root`; `draw(i)` is the uniform of the i-th (0-based) of them when sampling. */
  run(root: number, n: number, draw: (i: number) => number): Promise<number[]>;
}

const RUNS_KEPT = 64;

/**
 * On the GPU: generate's own loop (src/model/generate.ts) — the verifier's pending commit applied, the root
 * uploaded by one decode step, then runs of RUN_STEPS steps that read each token on the GPU, RUNS_IN_FLIGHT submits in
 * flight and one readback per run.
 */
export class GpuPlainDecoder implements PlainDecoder {
  private readonly sampled: boolean;
  /** Host ms of the last RUNS_KEPT runs: applying the verifier's pending commit, and the whole run (bench/plain-in-speculation.ts). */
  readonly runs: { flushMs: number; ms: number; tokens: number }[] = [];

  constructor(private readonly verifier: GpuTreeVerifier, private readonly sampling: SamplingOptions) {
    this.sampled = (sampling.temperature ?? 0) > 0;
  }

  async run(root: number, n: number, draw: (i: number) => number): Promise<number[]> {
    const t0 = performance.now();
    await this.verifier.flush({ drain: false });
    const flushMs = performance.now() - t0;
    const model = this.verifier.model;
    let drawn = 0;
    // The model draws one uniform per step at its submit, in step order.
    if (this.sampled) model.setSampling({ ...this.sampling, random: () => draw(drawn++) });
    const out: number[] = [];
    const queue: Promise<number[]>[] = [];
    let submitted = 0;
    const submit = () => {
      const k = submitted === 0 ? 1 : Math.min(RUN_STEPS, n - submitted);
      const step: StepHandle = submitted === 0 ? model.decodeStep({ tokens: [root] }) : model.decodeRun(k);
      const ids = step.tokens();
      ids.catch(() => undefined); // awaited below
      queue.push(ids);
      submitted += k;
    };
    let first = true;
    while (out.length < n) {
      while (queue.length < RUNS_IN_FLIGHT && submitted < n) submit();
      // While the GPU runs the first runs, the tree step that may follow them is encoded (gpu-verifier.ts encodeReentry).
      if (first) this.verifier.encodeReentry();
      first = false;
      out.push(...(await queue.shift()!));
    }
    this.runs.push({ flushMs, ms: performance.now() - t0, tokens: n });
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

  async run(root: number, n: number, draw: (i: number) => number): Promise<number[]> {
    const out: number[] = [];
    let token = root;
    for (let i = 0; i < n; i++) {
      const tree = treeFromParents([token], [-1]);
      const r = await this.verifier.verify({ tree, ...(this.sampled && { uniforms: Float64Array.of(draw(i)) }) });
      this.verifier.commit([0]);
      token = r.picks[0];
      out.push(token);
    }
    return out;
  }
}
