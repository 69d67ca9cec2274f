// bench/small-m.ts's correctness gate: before a kernel is timed, one dispatch of it on the bench's own operands (x, the
// norm's gain, the first weight copy) is compared with the float64 formula (matmul-fusion.ts's fusedMatmulReference),
// so that a register block the H200's compiler mangles, or a knob set the lavapipe tests never ran, cannot post a time.
// The float64 products are computed once per projection and row count (about 2 G multiply-adds in all at 17 and 65
// rows of the bench model, a few seconds) and shared by every kernel checked against them.
import type { MatmulOptions, MatmulProblem } from '../backends/wgsl/matmul.ts';
import { fusedMatmulReference, outputColumns, outputCount, type MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import type { Gpu } from '../src/runtime/device.ts';
import { allocTensor, downloadTensor, releaseTensor, writeTensor, type GpuTensor } from '../src/runtime/gpu-tensor.ts';
import { bindMatmul, encodeMatmul, planMatmul, type MatmulPlan } from '../src/runtime/matmul.ts';
import { bindArgmaxPartials, destroyDispatch, encodeDispatch } from '../src/runtime/model-kernels.ts';

/** Largest |got − want| over the largest |want| of an output: float32 sums of 768–2048 products sit near 1e-6. */
const TOLERANCE = 1e-3;

export interface CheckOperands {
  readonly a: GpuTensor;
  readonly gain: GpuTensor;
  readonly w: GpuTensor;
}

/** The float64 outputs of one projection at one row count (the 'argmax' epilogue: the logits), made on first use. */
export class Float64Check {
  private want?: Float64Array[];
  /** The verdict per kernel (its WGSL): each is run once however often it is timed. */
  private readonly seen = new Map<string, string | undefined>();

  constructor(
    private readonly gpu: Gpu,
    private readonly p: { readonly N: number; readonly K: number; readonly fusion?: MatmulFusion },
    private readonly M: number,
    private readonly o: CheckOperands,
  ) {}

  private async reference(): Promise<Float64Array[]> {
    if (this.want) return this.want;
    const { M } = this;
    const { N, K, fusion } = this.p;
    const [a, w, gain] = [await downloadTensor(this.gpu, this.o.a), await downloadTensor(this.gpu, this.o.w), await downloadTensor(this.gpu, this.o.gain)];
    // 'accumulate' from a zero C0; 'argmax' checked on its logits (the epilogue's pairs name a column and its value).
    const f: MatmulFusion | undefined = fusion?.epilogue === 'argmax' ? { ...(fusion.rmsnorm && { rmsnorm: fusion.rmsnorm }) } : fusion;
    this.want = fusedMatmulReference(a, w, { M, N, K }, f, { gain, c0: new Float64Array(M * outputColumns(f, N)) });
    return this.want;
  }

  /** Runs the kernel `opts` picks once and returns why it is wrong, or undefined when every output is within TOLERANCE. */
  async wrong(opts: MatmulOptions): Promise<string | undefined> {
    const { gpu, M } = this;
    const { N, K, fusion } = this.p;
    const problem: MatmulProblem = { M, N, K, transposeB: true, ...(fusion && { fusion }) };
    const plan = await planMatmul(gpu, problem, { label: 'float64 check', ...opts });
    if (this.seen.has(plan.code)) {
      plan.params.destroy();
      return this.seen.get(plan.code);
    }
    const verdict = await this.run(plan);
    this.seen.set(plan.code, verdict);
    return verdict;
  }

  private async run(plan: MatmulPlan): Promise<string | undefined> {
    const { gpu, M } = this;
    const { N, fusion } = this.p;
    const argmax = fusion?.epilogue === 'argmax';
    const width = argmax ? 2 * plan.workgroups[0] : outputColumns(fusion, N);
    const outs = Array.from({ length: argmax ? 1 : outputCount(fusion) }, (_, i) => {
      const t = allocTensor(gpu, `check C${i}`, [M, width]);
      // Zero for 'accumulate' (the reference adds to zeros), NaN elsewhere: an output never written fails.
      writeTensor(gpu, t, new Float32Array(M * width).fill(fusion?.epilogue === 'accumulate' ? 0 : Number.NaN));
      return t;
    });
    const tokens = argmax ? allocTensor(gpu, 'check tokens', [M]) : undefined;
    const pick = tokens ? await bindArgmaxPartials(gpu, { partials: outs[0].buffer, tokens: tokens.buffer }, M, plan.workgroups[0]) : undefined;
    const encoder = gpu.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    encodeMatmul(pass, plan, bindMatmul(gpu, plan, this.o.a, this.o.w, outs, fusion?.rmsnorm ? { gain: this.o.gain } : {}));
    if (pick) encodeDispatch(pass, pick);
    pass.end();
    gpu.device.queue.submit([encoder.finish()]);
    const got = await Promise.all((tokens ? [tokens] : outs).map((t) => downloadTensor(gpu, t)));
    if (pick) destroyDispatch(pick);
    for (const t of [...outs, ...(tokens ? [tokens] : [])]) releaseTensor(gpu, t);
    plan.params.destroy();
    const want = await this.reference();
    if (argmax) {
      // Each row's token must be a largest logit (within TOLERANCE of the row's scale: float32 ties).
      const ids = new Uint32Array(got[0].buffer, got[0].byteOffset, M);
      for (let m = 0; m < M; m++) {
        const row = want[0].subarray(m * N, (m + 1) * N);
        let best = -Infinity;
        let scale = 0;
        for (const x of row) {
          best = Math.max(best, x);
          scale = Math.max(scale, Math.abs(x));
        }
        if (!(ids[m] < N && row[ids[m]] >= best - TOLERANCE * scale)) return `${plan.kernel}: row ${m} picked ${ids[m]} (logit ${row[ids[m]]}), the largest is ${best}`;
      }
      return undefined;
    }
    for (const [i, g] of got.entries()) {
      let err = 0;
      let scale = 0;
      for (let e = 0; e < g.length; e++) {
        const d = Math.abs(g[e] - want[i][e]);
        err = Number.isNaN(d) ? Infinity : Math.max(err, d);
        scale = Math.max(scale, Math.abs(want[i][e]));
      }
      if (!(err <= TOLERANCE * scale)) return `${plan.kernel}: output ${i} off by ${err} (largest |float64| ${scale})`;
    }
    return undefined;
  }
}
