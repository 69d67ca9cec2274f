// Where a step's GPU time goes, dispatch by dispatch. A step is recorded into a ProfilingPass (what the
// model's encoders take as their compute pass) instead of a real one; timeDispatchesOf then replays every
// recorded dispatch in a compute pass of its own with timestamp queries, so each gets its own GPU time.
// Replaying runs the step's effects again (state updates included), once per repetition: profile on a
// state that no longer matters and start the sequence afresh afterwards. Pass boundaries add a little per
// dispatch, so the sum exceeds the step's own time somewhat; the shares are what to read.
import { BufferUsage, MapMode, throwIfDeviceErrors, type Gpu } from './device.ts';
import { median } from './timing.ts';

export interface RecordedDispatch {
  readonly pipeline: GPUComputePipeline;
  readonly groups: readonly (GPUBindGroup | null)[];
  readonly workgroups: readonly [number, number, number];
}

export class ProfilingPass {
  readonly dispatches: RecordedDispatch[] = [];
  private pipeline: GPUComputePipeline | undefined;
  private readonly groups: (GPUBindGroup | null)[] = [];

  constructor(readonly label = 'profiled step') {}

  /** The object handed to encoders, typed as the pass it stands in for. */
  asPass(): GPUComputePassEncoder {
    return this as unknown as GPUComputePassEncoder;
  }

  setPipeline(pipeline: GPUComputePipeline): void {
    this.pipeline = pipeline;
  }

  setBindGroup(index: number, group: GPUBindGroup | null, ...offsets: unknown[]): void {
    if (offsets.length > 0) throw new Error('ProfilingPass: dynamic offsets are not recorded');
    this.groups[index] = group;
  }

  dispatchWorkgroups(x: number, y = 1, z = 1): void {
    if (!this.pipeline) throw new Error('ProfilingPass: dispatch before setPipeline');
    this.dispatches.push({ pipeline: this.pipeline, groups: [...this.groups], workgroups: [x, y, z] });
  }

  dispatchWorkgroupsIndirect(): void {
    throw new Error('ProfilingPass: indirect dispatches are not recorded');
  }

  pushDebugGroup(): void {}
  popDebugGroup(): void {}
  insertDebugMarker(): void {}
  end(): void {}
}

export interface DispatchTime {
  /** What ran, from the bind group's label (else the pipeline's) without layer, shape and operands: 'q|k|v proj'. */
  readonly kernel: string;
  /** The bind group's label, else the pipeline's (pipelines are shared by every plan with the same code). */
  readonly label: string;
  readonly workgroups: readonly [number, number, number];
  /** Median over the repetitions, in ms. */
  readonly ms: number;
}

const MAX_QUERIES = 4096;

/** Replays each recorded dispatch in its own timestamped pass, `repeats` times; the median per dispatch. */
export async function timeDispatchesOf(gpu: Gpu, recorded: readonly RecordedDispatch[], repeats = 3): Promise<DispatchTime[]> {
  if (!gpu.hasTimestamps) throw new Error(`timeDispatchesOf: ${gpu.adapterName} has no timestamp queries`);
  const n = recorded.length;
  if (2 * n > MAX_QUERIES) throw new Error(`timeDispatchesOf: ${n} dispatches; at most ${MAX_QUERIES / 2} per profile`);
  const { device } = gpu;
  const querySet = device.createQuerySet({ label: 'dispatch profile', type: 'timestamp', count: Math.max(2, 2 * n) });
  const resolve = device.createBuffer({ label: 'dispatch profile', size: 16 * Math.max(1, n), usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
  const staging = device.createBuffer({ label: 'dispatch profile readback', size: 16 * Math.max(1, n), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const times: number[][] = recorded.map(() => []);
  try {
    for (let r = 0; r < repeats; r++) {
      const encoder = device.createCommandEncoder({ label: 'dispatch profile' });
      recorded.forEach((d, i) => {
        const pass = encoder.beginComputePass({ label: d.pipeline.label, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        pass.setPipeline(d.pipeline);
        d.groups.forEach((g, index) => pass.setBindGroup(index, g));
        pass.dispatchWorkgroups(...d.workgroups);
        pass.end();
      });
      if (n > 0) {
        encoder.resolveQuerySet(querySet, 0, 2 * n, resolve, 0);
        encoder.copyBufferToBuffer(resolve, 0, staging, 0, 16 * n);
      }
      device.queue.submit([encoder.finish()]);
      await staging.mapAsync(MapMode.READ);
      const stamps = new BigUint64Array(staging.getMappedRange().slice(0));
      staging.unmap();
      for (let i = 0; i < n; i++) {
        const [b, e] = [stamps[2 * i], stamps[2 * i + 1]];
        times[i].push(e >= b ? Number(e - b) / 1e6 : NaN);
      }
    }
    throwIfDeviceErrors(gpu, 'dispatch profile');
  } finally {
    querySet.destroy();
    resolve.destroy();
    staging.destroy();
  }
  return recorded.map((d, i) => {
    const label = d.groups[0]?.label || d.pipeline.label;
    return { kernel: kernelName(label), label, workgroups: d.workgroups, ms: median(times[i]) };
  });
}

/**
 * The step's own GPU time when steps run back to back: every recorded dispatch in one timestamped pass, as the
 * step runs, and `repeats` such passes in one submit after a warm-up submit of the same. No host gap precedes a
 * pass but the first, so this is what a step costs in a pipelined stream of steps; the median pass, in ms.
 * Comparing two steps this way (a decode step and a tree step) compares them under the same conditions.
 */
export async function timeStepStream(gpu: Gpu, recorded: readonly RecordedDispatch[], repeats = 16): Promise<number> {
  if (!gpu.hasTimestamps) throw new Error(`timeStepStream: ${gpu.adapterName} has no timestamp queries`);
  if (2 * repeats > MAX_QUERIES) throw new Error(`timeStepStream: ${repeats} repeats; at most ${MAX_QUERIES / 2}`);
  const { device } = gpu;
  const querySet = device.createQuerySet({ label: 'step stream', type: 'timestamp', count: 2 * repeats });
  const resolve = device.createBuffer({ label: 'step stream', size: 16 * repeats, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
  const staging = device.createBuffer({ label: 'step stream readback', size: 16 * repeats, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
  const replay = (pass: GPUComputePassEncoder) => {
    for (const d of recorded) {
      pass.setPipeline(d.pipeline);
      d.groups.forEach((g, index) => pass.setBindGroup(index, g));
      pass.dispatchWorkgroups(...d.workgroups);
    }
    pass.end();
  };
  try {
    const run = async (timed: boolean) => {
      const encoder = device.createCommandEncoder({ label: 'step stream' });
      for (let r = 0; r < repeats; r++) {
        replay(encoder.beginComputePass(timed ? { label: `step ${r}`, timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * r, endOfPassWriteIndex: 2 * r + 1 } } : { label: `warm-up ${r}` }));
      }
      if (timed) {
        encoder.resolveQuerySet(querySet, 0, 2 * repeats, resolve, 0);
        encoder.copyBufferToBuffer(resolve, 0, staging, 0, 16 * repeats);
      }
      device.queue.submit([encoder.finish()]);
      await device.queue.onSubmittedWorkDone();
    };
    await run(false);
    await run(true);
    await staging.mapAsync(MapMode.READ);
    const stamps = new BigUint64Array(staging.getMappedRange().slice(0));
    staging.unmap();
    throwIfDeviceErrors(gpu, 'step stream');
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) if (stamps[2 * r + 1] >= stamps[2 * r]) times.push(Number(stamps[2 * r + 1] - stamps[2 * r]) / 1e6);
    return median(times);
  } finally {
    querySet.destroy();
    resolve.destroy();
    staging.destroy();
  }
}

/** 'layer 3 q|k|v proj [b=1 t=17] [M=17 …] (x, W → q, k, v)' → 'q|k|v proj'. */
export function kernelName(label: string): string {
  const name = label.replace(/\s*\[[^\]]*\]/g, '').replace(/\s*\([^)]*\)\s*$/, '').replace(/^layer \d+ /, '').trim();
  return name || label;
}

/**
 * Per kernel name: dispatches and total ms, most expensive first, with the grid of its first dispatch (whether a
 * kernel fills the GPU: a chunk kernel's grid does not grow with t).
 */
export function summarizeDispatches(times: readonly DispatchTime[]): { kernel: string; dispatches: number; ms: number; workgroups: readonly [number, number, number] }[] {
  const by = new Map<string, { kernel: string; dispatches: number; ms: number; workgroups: readonly [number, number, number] }>();
  for (const t of times) {
    const e = by.get(t.kernel) ?? { kernel: t.kernel, dispatches: 0, ms: 0, workgroups: t.workgroups };
    e.dispatches++;
    e.ms += t.ms;
    by.set(t.kernel, e);
  }
  return [...by.values()].sort((a, b) => b.ms - a.ms);
}

/** What a kernel's dispatches add to a step run back to back: the step's stream time with and without them. */
export interface LeftOut {
  readonly kernel: string;
  readonly dispatches: number;
  /** timeStepStream of the step without this kernel's dispatches, ms. */
  readonly withoutMs: number;
  /** The step's stream time (the median of the full step's timings around these) minus withoutMs. */
  readonly addsMs: number;
}

/**
 * Each kernel's share of a step run back to back, by leaving its dispatches out (the kernels named by
 * kernelName, as timeDispatchesOf's rows): a dispatch timed in a pass of its own also pays a pass's start and
 * end and its own ramp and drain, which neighbours in one pass overlap, so its own time overstates what it adds
 * to the step. The step without a kernel computes nonsense (its inputs are stale); only its time is read. The
 * full step is timed before and after the kernels are left out, its median taken as the step's time.
 */
export async function timeLeavingOut(gpu: Gpu, recorded: readonly RecordedDispatch[], repeats = 16): Promise<{ readonly fullMs: number; readonly rows: readonly LeftOut[] }> {
  const nameOf = (d: RecordedDispatch) => kernelName(d.groups[0]?.label || d.pipeline.label);
  const names = [...new Set(recorded.map(nameOf))];
  const full = [await timeStepStream(gpu, recorded, repeats)];
  const without: number[] = [];
  for (const name of names) without.push(await timeStepStream(gpu, recorded.filter((d) => nameOf(d) !== name), repeats));
  full.push(await timeStepStream(gpu, recorded, repeats));
  const fullMs = median(full);
  const rows = names.map((kernel, i) => ({ kernel, dispatches: recorded.filter((d) => nameOf(d) === kernel).length, withoutMs: without[i], addsMs: fullMs - without[i] }));
  return { fullMs, rows: rows.sort((a, b) => b.addsMs - a.addsMs) };
}
