// A decode step recorded once and replayed every token. Recording a step through the encoders (encodeStep,
// the attention's encodeForward) costs host time in JavaScript on every token — closures, checks, map
// lookups, grid formulas — for a list of commands that is the same each step of a session: the plan's bind
// groups, the attention state's bind groups and the grids do not change while decoding. So the first step of
// a session records that list into plain arrays, and each later step is one loop of setPipeline /
// setBindGroup / dispatchWorkgroups, with a pipeline or bind group that is already current not set again
// (bindings stay across setPipeline in a compute pass, so skipping a repeated one changes nothing).
//
// What the list cannot hold is per-step data written from the host: the attention layers' position uniform.
// Layers that can be replayed say so with GpuAttention.prepareReplay (checks and that write, nothing recorded);
// a step with any layer that cannot is recorded afresh every time.

/** Commands of one step: dispatch i runs pipelines[i] with groups[i] (bind group 0) over grid[3i … 3i+2]. */
export class RecordedStep {
  private constructor(
    private readonly pipelines: readonly GPUComputePipeline[],
    private readonly groups: readonly GPUBindGroup[],
    private readonly grid: Uint32Array,
    /** What was recorded ('step', or the recorder's word: the tree verifier's own 'tree step'). */
    readonly label: string,
  ) {}

  /** Runs `encode` against a pass that keeps what it is given; throws on what a replay could not repeat. */
  static record(encode: (pass: GPUComputePassEncoder) => void, label = 'step'): RecordedStep {
    const recorder = new StepRecorder();
    encode(recorder as unknown as GPUComputePassEncoder);
    return new RecordedStep(recorder.pipelines, recorder.groups, Uint32Array.from(recorder.grid), label);
  }

  /** As record, for an encoder that awaits (compiling a pipeline at its first use) before it records. */
  static async recordAsync(encode: (pass: GPUComputePassEncoder) => Promise<void>, label = 'step'): Promise<RecordedStep> {
    const recorder = new StepRecorder();
    await encode(recorder as unknown as GPUComputePassEncoder);
    return new RecordedStep(recorder.pipelines, recorder.groups, Uint32Array.from(recorder.grid), label);
  }

  get dispatches(): number {
    return this.pipelines.length;
  }

  /** Records the step into `pass`: the native calls only, repeats skipped. */
  replay(pass: GPUComputePassEncoder): void {
    const { pipelines, groups, grid } = this;
    let pipeline: GPUComputePipeline | undefined;
    let group: GPUBindGroup | undefined;
    for (let i = 0; i < pipelines.length; i++) {
      if (pipelines[i] !== pipeline) pass.setPipeline((pipeline = pipelines[i]));
      if (groups[i] !== group) pass.setBindGroup(0, (group = groups[i]));
      // Only the dimensions that are not 1: each argument crosses into Dawn at a cost.
      const x = grid[3 * i];
      const y = grid[3 * i + 1];
      const z = grid[3 * i + 2];
      if (z !== 1) pass.dispatchWorkgroups(x, y, z);
      else if (y !== 1) pass.dispatchWorkgroups(x, y);
      else pass.dispatchWorkgroups(x);
    }
  }
}

/** Stands in for a compute pass while a step is recorded: one bind group at index 0, direct dispatches. */
class StepRecorder {
  readonly pipelines: GPUComputePipeline[] = [];
  readonly groups: GPUBindGroup[] = [];
  readonly grid: number[] = [];
  private pipeline: GPUComputePipeline | undefined;
  private group: GPUBindGroup | undefined;

  setPipeline(pipeline: GPUComputePipeline): void {
    this.pipeline = pipeline;
  }

  setBindGroup(index: number, group: GPUBindGroup | null, ...offsets: unknown[]): void {
    if (index !== 0 || offsets.length > 0 || !group) throw new Error('RecordedStep: only bind group 0, without dynamic offsets, is replayed');
    this.group = group;
  }

  dispatchWorkgroups(x: number, y = 1, z = 1): void {
    if (!this.pipeline || !this.group) throw new Error('RecordedStep: a dispatch before its pipeline and bind group');
    this.pipelines.push(this.pipeline);
    this.groups.push(this.group);
    this.grid.push(x, y, z);
  }

  dispatchWorkgroupsIndirect(): void {
    throw new Error('RecordedStep: indirect dispatches are not replayed');
  }

  pushDebugGroup(): void {}
  popDebugGroup(): void {}
  insertDebugMarker(): void {}
  end(): void {}
}
