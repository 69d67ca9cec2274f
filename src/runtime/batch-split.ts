// Batch slicing: a run whose buffers would not fit one storage binding (maxStorageBufferBindingSize, or
// maxBufferSize) or whose launches would exceed maxComputeWorkgroupsPerDimension runs as several launches over
// slices of the batch b, and the slices' outputs are concatenated along b. Sequences never read each other in any
// plan form (every buffer and launch is per sequence along b), so slicing changes the number of submits, not the
// result. When one sequence (b = 1) is already too large, the error names the buffer, its size, the limit, and the
// longest t that would fit, instead of a validation error from Dawn.
import type { Plan, PlanBuffer } from '../../backends/wgsl/plan.ts';
import { numel, type Tensor } from '../tensor.ts';
import type { Gpu } from './device.ts';
import type { PlanRunner } from './executor.ts';

export interface RunLimits {
  readonly maxStorageBufferBindingSize: number;
  readonly maxBufferSize: number;
  readonly maxComputeWorkgroupsPerDimension: number;
}

/** The device's limits, with `overrides` (tests force splitting at small shapes with a small binding size). */
export function runLimits(gpu: Gpu, overrides: Partial<RunLimits> = {}): RunLimits {
  return {
    maxStorageBufferBindingSize: overrides.maxStorageBufferBindingSize ?? gpu.limits.maxStorageBufferBindingSize,
    maxBufferSize: overrides.maxBufferSize ?? gpu.limits.maxBufferSize,
    maxComputeWorkgroupsPerDimension: overrides.maxComputeWorkgroupsPerDimension ?? gpu.limits.maxComputeWorkgroupsPerDimension,
  };
}

export class BatchSplitError extends Error {
  override name = 'BatchSplitError';
}

type Misfit =
  | { kind: 'buffer'; buffer: PlanBuffer; bytes: number; limit: number; limitName: string }
  | { kind: 'launch'; label: string; groups: readonly number[]; limit: number };

/** The first buffer or launch of the plan at (b, t) that exceeds the limits, or null when all fit. */
function misfit(plan: Plan, b: number, t: number, limits: RunLimits): Misfit | null {
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const limitName = limits.maxStorageBufferBindingSize <= limits.maxBufferSize ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
  for (const buffer of plan.buffers) {
    const bytes = buffer.floats(b, t) * 4;
    if (bytes > limit) return { kind: 'buffer', buffer, bytes, limit, limitName };
  }
  for (const k of plan.kernels) {
    const groups = k.workgroups(b, t);
    if (groups.some((n) => n > limits.maxComputeWorkgroupsPerDimension)) return { kind: 'launch', label: k.label, groups, limit: limits.maxComputeWorkgroupsPerDimension };
  }
  return null;
}

/** The largest n in [lo, hi] with ok(n), given ok(lo) and ok monotone decreasing. */
function largest(lo: number, hi: number, ok: (n: number) => boolean): number {
  if (ok(hi)) return hi;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (ok(mid)) lo = mid;
    else hi = mid;
  }
  return lo;
}

function formatBytes(bytes: number): string {
  return bytes >= 1 << 20 ? `${bytes} bytes (${(bytes / (1 << 20)).toFixed(1)} MiB)` : `${bytes} bytes`;
}

function describeBuffer(buf: PlanBuffer, b: number, t: number): string {
  const name = buf.name.slice(buf.name.indexOf(':') + 1);
  const what = { input: 'input', param: 'parameter', output: 'output', scratch: 'scratch buffer', state: 'state' }[buf.role];
  return `${what} '${buf.role === 'scratch' ? buf.name : name}' [${buf.shape(b, t).join(', ')}]`;
}

/**
 * The number of sequences per launch: b when the whole batch fits, else the largest slice that does. Throws a
 * BatchSplitError that says what to change when a single sequence does not fit.
 */
export function batchSliceSize(plan: Plan, b: number, t: number, limits: RunLimits, device = 'this device'): number {
  if (!misfit(plan, b, t, limits)) return b;
  const one = misfit(plan, 1, t, limits);
  if (!one) return largest(1, b, (n) => !misfit(plan, n, t, limits));
  const perSequence = one.kind === 'launch' || one.buffer.floats(2, t) !== one.buffer.floats(1, t);
  const fitsAtT1 = !misfit(plan, 1, 1, limits);
  const shorter = fitsAtT1 ? ` Run sequences of at most t = ${largest(1, t, (n) => !misfit(plan, 1, n, limits))} (split the sequence)` : '';
  const larger =
    `or use an adapter with a larger ${one.kind === 'buffer' ? one.limitName : 'maxComputeWorkgroupsPerDimension'} ` +
    '(linattn already requests the adapter\'s maximum)';
  if (one.kind === 'launch') {
    throw new BatchSplitError(
      `${plan.variant} (${plan.form} plan) at t = ${t}: kernel ${one.label} needs [${one.groups.join(', ')}] workgroups for one sequence, ` +
        `over the limit of ${one.limit} per dimension (maxComputeWorkgroupsPerDimension on ${device}).${shorter || ' Shorten t'}, ${larger}.`,
    );
  }
  const what = describeBuffer(one.buffer, 1, t);
  throw new BatchSplitError(
    `${plan.variant} (${plan.form} plan) at t = ${t}: ${what} needs ${formatBytes(one.bytes)} ${perSequence ? 'for one sequence' : 'whatever the batch'}, ` +
      `over the limit of ${formatBytes(one.limit)} for one storage binding (${one.limitName} on ${device}); ` +
      `splitting the batch cannot help.${shorter ? `${shorter},` : ' Use smaller axes,'} ${larger}.`,
  );
}

/** Sequences [b0, b0 + n) of a [b, t, …] tensor, as a view. */
function batchSlice(x: Tensor, b0: number, n: number): Tensor {
  const per = numel(x.shape.slice(1));
  return { shape: [n, ...x.shape.slice(1)], data: x.data.subarray(b0 * per, (b0 + n) * per) };
}

/** The slices [b0, n] that cover a batch of b in pieces of at most `size`. */
export function batchSlices(b: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let b0 = 0; b0 < b; b0 += size) out.push([b0, Math.min(size, b - b0)]);
  return out;
}

/** The plan's per-token inputs by tensor name (the buffers 'in:NAME'); parameters are passed whole to every slice. */
export function sliceInputs(plan: Plan, tensors: Readonly<Record<string, Tensor>>, b0: number, n: number): Record<string, Tensor> {
  const inputs = new Set(plan.buffers.filter((x) => x.role === 'input').map((x) => x.name.slice(x.name.indexOf(':') + 1)));
  return Object.fromEntries(Object.entries(tensors).map(([k, v]) => [k, inputs.has(k) ? batchSlice(v, b0, n) : v]));
}

export interface SlicedRun {
  readonly o: Tensor<Float32Array>;
  /** Sequences per launch (b when the batch was not split). */
  readonly sliceSize: number;
  readonly slices: number;
}

/** Runs the plan over the batch in slices that fit `limits` and concatenates the outputs along b. */
export async function runInBatchSlices(
  runner: PlanRunner,
  tensors: Readonly<Record<string, Tensor>>,
  b: number,
  t: number,
  limits: RunLimits,
): Promise<SlicedRun> {
  const size = batchSliceSize(runner.plan, b, t, limits, runner.gpu.adapterName);
  if (size === b) return { o: await runner.run(tensors, b, t), sliceSize: b, slices: 1 };
  const slices = batchSlices(b, size);
  let out: Float32Array | undefined;
  let shape: number[] = [];
  for (const [b0, n] of slices) {
    const o = await runner.run(sliceInputs(runner.plan, tensors, b0, n), n, t);
    if (!out) {
      shape = [b, ...o.shape.slice(1)];
      out = new Float32Array(numel(shape));
    }
    out.set(o.data, b0 * numel(o.shape.slice(1)));
  }
  return { o: { shape, data: out! }, sliceSize: size, slices: slices.length };
}
