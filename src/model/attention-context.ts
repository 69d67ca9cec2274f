// How a caller supplies the model's GPU attention layers: a function that makes the layers' factory once the
// device, the config and the compiled variant are known (the CLI: the compiled variant itself; tests and the
// decode bench: a hand-written reference kernel).
import type { Program } from '../ir/types.ts';
import type { Gpu } from '../runtime/device.ts';
import type { GpuAttentionFactory } from '../runtime/gpu-attention.ts';
import type { ModelConfig } from './config.ts';

export interface AttentionContext {
  readonly gpu: Gpu;
  readonly config: ModelConfig;
  /** The variant compiled with the config's options, after the pass pipeline (terms classified). */
  readonly program: Program;
  /** The same variant as written, before any pass. */
  readonly source: Program;
  /**
   * Told the prefill's plan decision in words (plan-choice.ts's choosePrefill: schedule, prologue and estimates),
   * once per factory; `generate --verbose` prints it. A hand-written attention that makes no choice ignores it.
   */
  readonly onPlanChoice?: (reason: string) => void;
  /** Sequences per call the layers will mostly run at, when known (training's micro-batch): plans may be sized for it. */
  readonly batch?: number;
}

export type PrepareAttention = (ctx: AttentionContext) => GpuAttentionFactory | Promise<GpuAttentionFactory>;
