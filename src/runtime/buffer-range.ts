// A binding that is a part of a buffer: the trainer keeps every parameter (and gradient, and moment) in one
// flat buffer, and a block of rows of an activation is bound where the block starts. Offsets must respect the
// adapter's storage offset alignment (256 bytes everywhere we know), which the parameter layout guarantees.
import { BufferUsage, type Gpu } from './device.ts';

export interface BufferRange {
  readonly buffer: GPUBuffer;
  /** Bytes. */
  readonly offset: number;
  /** Bytes. */
  readonly size: number;
}

/** A whole buffer or a range of one. */
export type Binding = GPUBuffer | BufferRange;

function isRange(b: Binding): b is BufferRange {
  return (b as BufferRange).buffer !== undefined && typeof (b as BufferRange).offset === 'number';
}

/** `floats` floats of `buffer` from float `first`. */
export function floatRange(buffer: GPUBuffer, first: number, floats: number): BufferRange {
  return { buffer, offset: first * 4, size: floats * 4 };
}

/** Bytes a binding covers. */
export function bindingBytes(b: Binding): number {
  return b.size;
}

/** The buffer behind a binding. */
export function bindingBuffer(b: Binding): GPUBuffer {
  return isRange(b) ? b.buffer : b;
}

/** A bind group of `pipeline`'s group 0 with `bindings` in binding order; ranges checked first, naming `label`. */
export function bindGroupOf(gpu: Gpu, label: string, pipeline: GPUComputePipeline, bindings: readonly Binding[]): GPUBindGroup {
  const align = gpu.limits.minStorageBufferOffsetAlignment;
  const entries = bindings.map((b, binding) => {
    if (!isRange(b)) return { binding, resource: { buffer: b } };
    if (b.offset % align !== 0) throw new Error(`${label}: binding ${binding} starts at byte ${b.offset} of '${b.buffer.label}', not a multiple of ${align}`);
    if (!(b.size > 0) || b.offset + b.size > b.buffer.size) {
      throw new Error(`${label}: binding ${binding} covers bytes [${b.offset}, ${b.offset + b.size}) of '${b.buffer.label}' (${b.buffer.size} bytes)`);
    }
    return { binding, resource: { buffer: b.buffer, offset: b.offset, size: b.size } };
  });
  return gpu.device.createBindGroup({ label, layout: pipeline.getBindGroupLayout(0), entries });
}

/** A uniform buffer holding `data` (at most 256 bytes). */
export function uniformBuffer(gpu: Gpu, label: string, data: ArrayBuffer | ArrayBufferView<ArrayBuffer>): GPUBuffer {
  const bytes = data instanceof ArrayBuffer ? data.byteLength : data.byteLength;
  const buffer = gpu.device.createBuffer({ label, size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
  if (data instanceof ArrayBuffer) gpu.device.queue.writeBuffer(buffer, 0, data);
  else gpu.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}
