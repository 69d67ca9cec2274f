// Shared GPU access for tests: one Dawn device per vitest worker (getDevice caches it), and the
// check that turns a float32 GPU result into a readable failure naming the seed and shape.
import { expect } from 'vitest';
import type { Gpu } from '../../src/runtime/device.ts';
import { getDevice } from '../../src/runtime/dawn.ts';
import { downloadTensor, releaseTensor, uploadTensor, type GpuTensor } from '../../src/runtime/gpu-tensor.ts';
import { relativeError, type Tensor, type TensorData } from '../../src/tensor.ts';

/** The worker's device (lavapipe on CI). Throws with install instructions when there is none. */
export function gpu(): Promise<Gpu> {
  return getDevice();
}

/** Uploads host tensors, runs `body`, downloads its result and frees every tensor it was given. */
export async function withTensors(
  g: Gpu,
  inputs: Record<string, Tensor>,
  body: (t: Record<string, GpuTensor>) => Promise<GpuTensor>,
): Promise<Float32Array> {
  const onGpu: Record<string, GpuTensor> = {};
  for (const [name, t] of Object.entries(inputs)) onGpu[name] = uploadTensor(g, name, t);
  const out = await body(onGpu);
  try {
    return await downloadTensor(g, out);
  } finally {
    for (const t of Object.values(onGpu)) releaseTensor(g, t);
    releaseTensor(g, out);
  }
}

/** ‖actual − expected‖/‖expected‖ ≤ tol, with the case (seed, shape) in the failure message. */
export function expectRelClose(actual: TensorData, expected: TensorData, tol: number, what: string): void {
  const err = relativeError(actual, expected);
  expect(err, `${what}: relative error ${err.toExponential(2)} > ${tol}`).toBeLessThanOrEqual(tol);
}
