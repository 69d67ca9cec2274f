// The decode step's runners, one per split a batch needs. recurrentPlan chooses its split for the batch it runs at
// (backends/wgsl/recurrent-split.ts: the launch is [NW, b, 1], so a wider batch wants wider column blocks), so a model
// decoding at batches 1 and 8 keeps two step kernels. Batches whose plans coincide — every batch on a software
// adapter, every batch of softmax attention, batches past the widest block — share one runner, keyed by the kernels'
// source. Every split computes the same state and output, so a batch not yet prepared runs batch 1's. A batch whose
// sequences sit at positions of their own (RecurrentOptions.perSequence: a speculative batch continued by plain
// decoding) runs a step of its own, compiled on request; it has no stand-in (batch 1's reads one position).
import type { Plan } from '../../backends/wgsl/plan.ts';
import { recurrentPlan, type RecurrentSplit } from '../../backends/wgsl/recurrent.ts';
import type { Program } from '../ir/types.ts';
import type { Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';

export class DecodeSteps {
  /** Keyed by batch, negated for the per-sequence step. */
  private readonly ready = new Map<number, PlanRunner>();
  private readonly pending = new Map<number, Promise<PlanRunner>>();
  private readonly bySource = new Map<string, Promise<PlanRunner>>();

  private constructor(
    private readonly gpu: Gpu,
    private readonly program: Program,
    private readonly sizes: Readonly<Record<string, number>>,
    private readonly maxLength: number | undefined,
    private readonly hardware: boolean,
    private readonly split?: (b: number) => RecurrentSplit | undefined,
    private readonly loadsFirst?: boolean,
  ) {}

  /**
   * Compiles batch 1's step (what a state's buffers and the cache's capacity are read from). `hardware`: split for
   * a hardware adapter (default: unless the adapter is software; tests force it to exercise the hardware splits).
   * `split`: the split for batch b instead of recurrentSplit's (a bench sweeping them), undefined to keep its.
   * `loadsFirst`: false builds the step without RecurrentOptions.loadsFirst (a bench comparing the two).
   */
  static async create(
    gpu: Gpu,
    program: Program,
    sizes: Readonly<Record<string, number>>,
    maxLength: number | undefined,
    hardware = !gpu.isSoftware,
    split?: (b: number) => RecurrentSplit | undefined,
    loadsFirst?: boolean,
  ): Promise<DecodeSteps> {
    const steps = new DecodeSteps(gpu, program, sizes, maxLength, hardware, split, loadsFirst);
    await steps.prepare(1);
    return steps;
  }

  /** Batch 1's runner: its plan's state buffers and capacity are every batch's. */
  get first(): PlanRunner {
    return this.ready.get(1)!;
  }

  /**
   * The runner chosen for batch b once prepare(b) has resolved; until then batch 1's. `perSequence`: the step that
   * reads each sequence's position (prepare(b, true) must have resolved).
   */
  runner(b: number, perSequence = false): PlanRunner {
    if (!perSequence) return this.ready.get(b) ?? this.first;
    const r = this.ready.get(-b);
    if (!r) throw new Error(`the decode step with a position per sequence at batch ${b} is not compiled yet (prepare(${b}, true))`);
    return r;
  }

  /** Compiles (once) the step whose split is chosen for batch b; `perSequence`: its form that reads each sequence's position. */
  prepare(b: number, perSequence = false): Promise<PlanRunner> {
    const at = perSequence ? -b : b;
    let made = this.pending.get(at);
    if (!made) {
      const plan = this.planFor(b, perSequence);
      const key = plan.kernels.map((k) => k.code).join('\u0000');
      let runner = this.bySource.get(key);
      if (!runner) this.bySource.set(key, (runner = PlanRunner.create(this.gpu, plan)));
      made = runner.then((r) => (this.ready.set(at, r), r));
      this.pending.set(at, made);
      made.catch(() => this.pending.delete(at));
    }
    return made;
  }

  private planFor(b: number, perSequence: boolean): Plan {
    const split = this.split?.(b);
    return recurrentPlan(this.program, this.sizes, this.maxLength, {
      hardware: this.hardware, batch: b, ...(split && { split }), ...(this.loadsFirst !== undefined && { loadsFirst: this.loadsFirst }), ...(perSequence && { perSequence }),
    });
  }
}
