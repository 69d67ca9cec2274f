// A compute pass as the model records it: every dispatch counted (the model's own and the attention
// variant's), and a setPipeline that repeats the current pipeline skipped, since q, k and v (and the
// layers) run the same kernels back to back and each native call costs host time every token.

// A long prefill continues in a new pass (a new command buffer, prefill-submits.ts): `retarget` moves the
// recording there and sets the pipeline and bind groups again, since a pass starts with none.

export class RecordingPass {
  dispatches = 0;
  private current: GPUComputePipeline | undefined;
  /** The bind group set at each index, with its dynamic offsets, for retarget. */
  private readonly groups: { group: GPUBindGroup | null; offsets: unknown[] }[] = [];

  constructor(public pass: GPUComputePassEncoder) {}

  /** Continues in `pass` (the previous one ended) with the current pipeline and bind groups set in it. */
  retarget(pass: GPUComputePassEncoder): void {
    this.pass = pass;
    if (this.current) pass.setPipeline(this.current);
    this.groups.forEach((g, index) => {
      if (g) this.forwardBindGroup(index, g.group, g.offsets);
    });
  }

  /** The object handed to encoders, typed as the pass it forwards to. */
  asPass(): GPUComputePassEncoder {
    return this as unknown as GPUComputePassEncoder;
  }

  get label(): string {
    return this.pass.label;
  }

  setPipeline(pipeline: GPUComputePipeline): void {
    if (pipeline === this.current) return;
    this.current = pipeline;
    this.pass.setPipeline(pipeline);
  }

  setBindGroup(index: number, bindGroup: GPUBindGroup | null, ...offsets: unknown[]): void {
    this.groups[index] = { group: bindGroup, offsets };
    this.forwardBindGroup(index, bindGroup, offsets);
  }

  private forwardBindGroup(index: number, bindGroup: GPUBindGroup | null, offsets: unknown[]): void {
    if (offsets.length === 0) this.pass.setBindGroup(index, bindGroup);
    else (this.pass.setBindGroup as (...a: unknown[]) => void).call(this.pass, index, bindGroup, ...offsets);
  }

  /** Forwards only the dimensions that are not 1: each argument crosses into Dawn at a cost. */
  dispatchWorkgroups(x: number, y = 1, z = 1): void {
    this.dispatches++;
    if (z !== 1) this.pass.dispatchWorkgroups(x, y, z);
    else if (y !== 1) this.pass.dispatchWorkgroups(x, y);
    else this.pass.dispatchWorkgroups(x);
  }

  dispatchWorkgroupsIndirect(buffer: GPUBuffer, offset: number): void {
    this.dispatches++;
    this.pass.dispatchWorkgroupsIndirect(buffer, offset);
  }

  pushDebugGroup(label: string): void {
    this.pass.pushDebugGroup(label);
  }

  popDebugGroup(): void {
    this.pass.popDebugGroup();
  }

  insertDebugMarker(label: string): void {
    this.pass.insertDebugMarker(label);
  }

  end(): void {
    this.pass.end();
  }
}
