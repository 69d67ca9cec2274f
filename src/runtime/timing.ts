// Timing GPU work. Wall-clock around submit measures the driver and the JS event loop as much as
// the kernel, so benches time compute passes with timestamp queries when the adapter offers them,
// and say so in every result; without them they fall back to submit + onSubmittedWorkDone.
import { BufferUsage, MapMode, throwIfDeviceErrors, type Gpu } from './device.ts';

export type TimingMethod = 'timestamp-query' | 'wall-clock';

export interface TimingResult {
  /** GPU time of each timed iteration, in ms. */
  readonly timesMs: readonly number[];
  readonly medianMs: number;
  readonly method: TimingMethod;
}

export interface TimingOptions {
  /** Untimed iterations first (pipeline warm-up). Default 3. */
  readonly warmup?: number;
  /**
   * Keep repeating the warm-up until this much wall time has passed (default 150 ms on a hardware GPU, 0 on a
   * software one). A GPU idling between benches drops its clocks: on the H100 a 2 ms kernel timed straight
   * after a pause ran up to 5× slower than the same kernel timed under sustained load.
   */
  readonly warmupMs?: number;
  /** Timed iterations. Default 20. */
  readonly iters?: number;
  readonly label?: string;
  /** Force a method; default: timestamps when the device has them. */
  readonly method?: TimingMethod;
}

/** Records one iteration's work into a compute pass (which the timer opens and closes). */
export type EncodeFn = (pass: GPUComputePassEncoder, iteration: number) => void;

export function median(xs: readonly number[]): number {
  if (xs.length === 0) throw new Error('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** WebGPU caps a query set at 4096 queries: two per timed pass. */
const MAX_PASSES_PER_QUERY_SET = 2048;

/**
 * Runs `encode` in `warmup + iters` compute passes and returns the time of each timed pass.
 * With timestamps: the interval between the pass's begin and end timestamps (GPU time only).
 * Without: submit one pass, wait for the queue, per iteration (includes submit latency).
 */
export async function timeDispatches(gpu: Gpu, encode: EncodeFn, opts: TimingOptions = {}): Promise<TimingResult> {
  const warmup = opts.warmup ?? 3;
  const iters = opts.iters ?? 20;
  const label = opts.label ?? 'timed dispatch';
  if (!Number.isInteger(iters) || iters < 1) throw new Error(`timeDispatches(${label}): iters must be ≥ 1, got ${iters}`);
  const method = opts.method ?? (gpu.hasTimestamps ? 'timestamp-query' : 'wall-clock');
  if (method === 'timestamp-query' && !gpu.hasTimestamps) {
    throw new Error(`timeDispatches(${label}): timestamp queries requested but ${gpu.adapterName} lacks 'timestamp-query'`);
  }

  if (warmup > 0) {
    const warmupMs = opts.warmupMs ?? (gpu.isSoftware ? 0 : 150);
    const submitWarmup = (n: number) => {
      const encoder = gpu.device.createCommandEncoder({ label: `${label} warm-up` });
      for (let i = 0; i < n; i++) {
        const pass = encoder.beginComputePass({ label: `${label} warm-up ${i}` });
        encode(pass, i % warmup);
        pass.end();
      }
      gpu.device.queue.submit([encoder.finish()]);
    };
    const t0 = performance.now();
    submitWarmup(warmup);
    await gpu.device.queue.onSubmittedWorkDone();
    throwIfDeviceErrors(gpu, `${label} (warm-up)`);
    // Sustained load until the clocks have ramped (batches grow while they are short), then one more batch
    // left queued right ahead of the timed passes so that the GPU does not idle in between.
    if (warmupMs > 0) {
      for (let n = warmup; performance.now() - t0 < warmupMs; ) {
        const b0 = performance.now();
        submitWarmup(n);
        await gpu.device.queue.onSubmittedWorkDone();
        if (performance.now() - b0 < warmupMs / 8) n = Math.min(2 * n, 256);
      }
      submitWarmup(warmup);
    }
  }

  const timesMs: number[] = [];
  if (method === 'wall-clock') {
    for (let i = 0; i < iters; i++) {
      const t0 = performance.now();
      const encoder = gpu.device.createCommandEncoder({ label });
      const pass = encoder.beginComputePass({ label: `${label} ${i}` });
      encode(pass, warmup + i);
      pass.end();
      gpu.device.queue.submit([encoder.finish()]);
      await gpu.device.queue.onSubmittedWorkDone();
      timesMs.push(performance.now() - t0);
    }
    throwIfDeviceErrors(gpu, label);
  } else {
    for (let done = 0; done < iters; done += MAX_PASSES_PER_QUERY_SET) {
      const n = Math.min(MAX_PASSES_PER_QUERY_SET, iters - done);
      timesMs.push(...(await timestampBatch(gpu, encode, label, warmup + done, n)));
    }
  }
  return { timesMs, medianMs: median(timesMs), method };
}

async function timestampBatch(gpu: Gpu, encode: EncodeFn, label: string, first: number, n: number): Promise<number[]> {
  const { device } = gpu;
  const querySet = device.createQuerySet({ label: `${label} timestamps`, type: 'timestamp', count: 2 * n });
  const bytes = 2 * n * 8;
  const resolved = device.createBuffer({
    label: `${label} resolved timestamps`,
    size: bytes,
    usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC,
  });
  const readback = device.createBuffer({
    label: `${label} timestamp readback`,
    size: bytes,
    usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST,
  });
  try {
    const encoder = device.createCommandEncoder({ label });
    for (let i = 0; i < n; i++) {
      const pass = encoder.beginComputePass({
        label: `${label} ${first + i}`,
        timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
      });
      encode(pass, first + i);
      pass.end();
    }
    encoder.resolveQuerySet(querySet, 0, 2 * n, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readback, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(MapMode.READ);
    const stamps = new BigUint64Array(readback.getMappedRange().slice(0));
    readback.unmap();
    throwIfDeviceErrors(gpu, label);
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      const begin = stamps[2 * i];
      const end = stamps[2 * i + 1];
      if (end < begin || begin === 0n) {
        throw new Error(`${label}: timestamp pair ${i} is invalid (begin ${begin} ns, end ${end} ns) on ${gpu.adapterName}`);
      }
      out.push(Number(end - begin) / 1e6);
    }
    return out;
  } finally {
    querySet.destroy();
    resolved.destroy();
    readback.destroy();
  }
}
