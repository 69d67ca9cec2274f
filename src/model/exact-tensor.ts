// Buffers of exactly a tensor's size for the model's weights and activations (not pool buckets): the variant's
// kernels may size their loops by arrayLength, and nothing here is ever released to be reused.
import type { Gpu } from '../runtime/device.ts';
import { checkTensorFits, TENSOR_USAGE, type GpuTensor } from '../runtime/gpu-tensor.ts';
import { numel, type Tensor } from '../tensor.ts';

export function createExactTensor(gpu: Gpu, name: string, shape: readonly number[]): GpuTensor {
  const bytes = numel(shape) * 4;
  checkTensorFits(gpu, name, shape, bytes);
  const buffer = gpu.device.createBuffer({ label: name, size: Math.max(4, bytes), usage: TENSOR_USAGE });
  return { name, shape: [...shape], bytes, buffer };
}

export function uploadExactTensor(gpu: Gpu, name: string, t: Tensor): GpuTensor {
  if (t.data.length !== numel(t.shape)) throw new Error(`tensor '${name}': ${t.data.length} elements for shape [${t.shape.join(', ')}]`);
  const g = createExactTensor(gpu, name, t.shape);
  const f32 = t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
  gpu.device.queue.writeBuffer(g.buffer, 0, f32.buffer, f32.byteOffset, f32.byteLength);
  return g;
}
