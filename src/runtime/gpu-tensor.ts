// Tensors on the GPU: f32 storage buffers with a shape and a name, the host↔device copies, and a
// pool that recycles buffers across steps. The name travels with the buffer so that a limit error
// or a bad readback says which tensor, not just "buffer too large".
import { numel, type TensorData } from '../tensor.ts';
import { BufferUsage, MapMode, throwIfDeviceErrors, type Gpu } from './device.ts';

export interface GpuTensor {
  readonly name: string;
  readonly shape: readonly number[];
  /** Logical size: numel · 4. The buffer itself may be larger (pool bucket, minimum size). */
  readonly bytes: number;
  readonly buffer: GPUBuffer;
}

/** Usage of every tensor buffer: bound as storage, and copyable both ways for upload and readback. */
export const TENSOR_USAGE = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
const READBACK_USAGE = BufferUsage.MAP_READ | BufferUsage.COPY_DST;

/** Buffers are sized in 256-byte steps (and never empty) so near-equal sizes share a pool bucket. */
const SIZE_STEP = 256;

function bucketSize(bytes: number): number {
  return Math.max(SIZE_STEP, Math.ceil(bytes / SIZE_STEP) * SIZE_STEP);
}

function formatBytes(bytes: number): string {
  if (bytes >= 1 << 20) return `${bytes} bytes (${(bytes / (1 << 20)).toFixed(1)} MiB)`;
  return `${bytes} bytes`;
}

/**
 * Throws unless a tensor of `bytes` can live in one storage binding on this adapter. WebGPU cannot
 * bind more than maxStorageBufferBindingSize at once, so a larger tensor must be split by its caller.
 */
export function checkTensorFits(gpu: Gpu, name: string, shape: readonly number[], bytes: number): void {
  const bindLimit = gpu.limits.maxStorageBufferBindingSize;
  const bufferLimit = gpu.limits.maxBufferSize;
  const limit = Math.min(bindLimit, bufferLimit);
  if (bytes > limit) {
    const which = bindLimit <= bufferLimit ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
    throw new Error(
      `tensor '${name}' [${shape.join(', ')}] needs ${formatBytes(bytes)} as f32, over this adapter's ` +
        `${which} of ${formatBytes(limit)} (${gpu.adapterName}); split it along an axis or shrink the shape`,
    );
  }
}

/**
 * Free buffers by (size bucket, usage). `release` hands a buffer back; `acquire` reuses one of the
 * same bucket and usage, else creates it. Contents of a reused buffer are whatever was left in it.
 */
export class BufferPool {
  private readonly free = new Map<string, GPUBuffer[]>();
  private readonly owned = new WeakSet<GPUBuffer>();
  created = 0;
  reused = 0;

  constructor(private readonly gpu: Gpu) {}

  acquire(bytes: number, usage: number, label: string): GPUBuffer {
    const size = bucketSize(bytes);
    const list = this.free.get(`${size}:${usage}`);
    const buffer = list?.pop();
    if (buffer) {
      this.reused++;
      buffer.label = label;
      return buffer;
    }
    this.created++;
    const made = this.gpu.device.createBuffer({ label, size, usage });
    this.owned.add(made);
    return made;
  }

  release(buffer: GPUBuffer): void {
    if (!this.owned.has(buffer)) {
      throw new Error(`buffer '${buffer.label}' was not made by this pool; destroy it instead`);
    }
    const key = `${buffer.size}:${buffer.usage}`;
    const list = this.free.get(key) ?? [];
    if (list.includes(buffer)) throw new Error(`buffer '${buffer.label}' released twice`);
    list.push(buffer);
    this.free.set(key, list);
  }

  /** Destroys every free buffer (buffers still held by callers are theirs to release). */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
  }
}

const pools = new WeakMap<Gpu, BufferPool>();

/** The device's shared pool. */
export function poolFor(gpu: Gpu): BufferPool {
  let pool = pools.get(gpu);
  if (!pool) {
    pool = new BufferPool(gpu);
    pools.set(gpu, pool);
  }
  return pool;
}

/** An f32 tensor buffer of `shape` from the pool, contents undefined (a kernel's output). */
export function allocTensor(gpu: Gpu, name: string, shape: readonly number[]): GpuTensor {
  const bytes = numel(shape) * 4;
  checkTensorFits(gpu, name, shape, bytes);
  return { name, shape: [...shape], bytes, buffer: poolFor(gpu).acquire(bytes, TENSOR_USAGE, name) };
}

/** Copies a host tensor to a new GPU tensor, converting Float64 to f32. */
export function uploadTensor(
  gpu: Gpu,
  name: string,
  host: { readonly shape: readonly number[]; readonly data: TensorData },
): GpuTensor {
  const n = numel(host.shape);
  if (host.data.length !== n) {
    throw new Error(`tensor '${name}': data has ${host.data.length} elements but shape [${host.shape.join(', ')}] needs ${n}`);
  }
  const t = allocTensor(gpu, name, host.shape);
  writeTensor(gpu, t, host.data);
  return t;
}

/** Overwrites a GPU tensor's contents from host data of the same length. */
export function writeTensor(gpu: Gpu, t: GpuTensor, data: TensorData): void {
  if (data.length * 4 !== t.bytes) {
    throw new Error(`tensor '${t.name}': writing ${data.length} elements into [${t.shape.join(', ')}]`);
  }
  if (data.length === 0) return;
  const f32 = data instanceof Float32Array ? data : Float32Array.from(data);
  gpu.device.queue.writeBuffer(t.buffer, 0, f32.buffer, f32.byteOffset, f32.byteLength);
}

/** Reads a GPU tensor back (waits for all submitted work); throws any GPU error seen meanwhile. */
export async function downloadTensor(gpu: Gpu, t: GpuTensor): Promise<Float32Array> {
  if (t.bytes === 0) return new Float32Array(0);
  const pool = poolFor(gpu);
  const staging = pool.acquire(t.bytes, READBACK_USAGE, `readback of ${t.name}`);
  try {
    const encoder = gpu.device.createCommandEncoder({ label: `readback of ${t.name}` });
    encoder.copyBufferToBuffer(t.buffer, 0, staging, 0, t.bytes);
    gpu.device.queue.submit([encoder.finish()]);
    try {
      await staging.mapAsync(MapMode.READ, 0, t.bytes);
    } catch (e) {
      throwIfDeviceErrors(gpu, `reading back tensor '${t.name}'`);
      throw new Error(`reading back tensor '${t.name}': ${(e as Error).message}`);
    }
    const out = new Float32Array(staging.getMappedRange(0, t.bytes).slice(0));
    staging.unmap();
    throwIfDeviceErrors(gpu, `reading back tensor '${t.name}'`);
    return out;
  } finally {
    if (staging.mapState === 'unmapped') pool.release(staging);
    else staging.destroy();
  }
}

/** Returns a tensor's buffer to the device pool; the tensor must not be used afterwards. */
export function releaseTensor(gpu: Gpu, t: GpuTensor): void {
  poolFor(gpu).release(t.buffer);
}
