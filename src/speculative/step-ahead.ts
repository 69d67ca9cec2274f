// A tree step's command buffer encoded while the GPU runs the step before it. A step drafted on the host (the
// n-gram and adaptive tables, a draft model, unchained Medusa) cannot be submitted before the previous step is read
// back, accepted and drafted from; but the replayed folded step (gpu-verifier.ts) reads everything that changes
// from step to step — the trees, the pending paths, each sequence's position — from buffers the host writes before
// the submit, so its commands do not depend on the draft. The verifier encodes the next step's commands for the
// size it just ran while it waits for the readback, and submits them when the next step turns out to be that
// size, the data written first: only the uploads and queue.submit (where Dawn records the commands for the driver)
// stay between the readback and the GPU's next step. Checking, uploading and encoding a step (63 dispatches at 12
// layers) took the host 0.5–0.9 ms before its submit at batch 8 on the H200 (call 216), against 0.6 ms of GPU time
// for a 16-row step; encoded ahead, 0.17–0.41 (calls 217–220). After plain decoding (plain-runs.ts), which leaves the
// folded sets, the verifier encodes while the plain runs go on the step that re-enters them: the copies of the state
// into set 0, then the last step's size replayed.
import type { RecordedStep } from '../model/step-recording.ts';

/** Commands encoded ahead, and the objects they were encoded with: the next step must use the same ones. */
export interface AheadCommands {
  readonly commands: GPUCommandBuffer;
  /** The recorded step the commands replay (keyed by plan, batch, heads and folded set: gpu-verifier.ts replayedStep). */
  readonly step: RecordedStep;
  /** The readback buffer the commands copy into, and how many bytes (the readback's layout). */
  readonly staging: GPUBuffer;
  readonly bytes: number;
  /** The commands first copy the layers' state into the folded sets (a step after plain decoding: FoldedSteps.recordEnter). */
  readonly reenter: boolean;
}

/**
 * Holds at most one step's commands; whatever else runs on the verifier drops them. Commands are encoded ahead only
 * for a step that followed a step: a lone tree step between plain runs (a batch's cost-aware decisions) would
 * encode commands that the next plain run drops.
 */
export class StepAhead {
  /** Encode ahead at all (the benches time both ways). */
  enabled = true;
  /** Steps encoded ahead, those submitted, and the host's ms encoding them (since creation). */
  readonly counts = { encoded: 0, used: 0, ms: 0 };
  private held: AheadCommands | undefined;
  /** Whether the last thing that ran on the verifier was a step. */
  private afterStep = false;

  /** At a step's submit: whether to encode the next step's commands (on, and this step followed a step). */
  stepped(): boolean {
    const inRow = this.afterStep;
    this.afterStep = true;
    return this.enabled && inRow;
  }

  hold(ahead: AheadCommands, ms: number): void {
    this.held = ahead;
    this.counts.encoded++;
    this.counts.ms += ms;
  }

  /** Something else runs on the verifier (a prefill, a flush, a chained run): forgets the held commands. */
  drop(): void {
    this.held = undefined;
    this.afterStep = false;
  }

  /** Forgets the held commands (they do not fit the step about to run). */
  discard(): void {
    this.held = undefined;
  }

  /**
   * The held commands if they were encoded with `step`, `staging` and `bytes` (the step about to run) and re-enter the
   * folded sets exactly when `reenter`, and nothing either way afterwards: commands are submitted once.
   */
  take(step: RecordedStep, staging: GPUBuffer, bytes: number, reenter = false): GPUCommandBuffer | undefined {
    const held = this.held;
    this.held = undefined;
    if (!held || held.step !== step || held.staging !== staging || held.bytes !== bytes || held.reenter !== reenter) return undefined;
    this.counts.used++;
    return held.commands;
  }

  /** Whether commands are held (the verifier looks up its step only then). */
  get holding(): boolean {
    return this.held !== undefined;
  }
}
