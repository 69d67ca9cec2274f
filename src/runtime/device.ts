// A WebGPU device as the runtime uses it (`Gpu`): limits, features, adapter name, and error reporting decided
// once, so a kernel that overflows a default limit, or a validation error nobody listened for, fails at its
// cause. Any WebGPU adapter works (`gpuFromAdapter`); opening Dawn's, in Node, is src/runtime/dawn.ts.
export interface Gpu {
  readonly device: GPUDevice;
  readonly adapter: GPUAdapter;
  readonly limits: GPUSupportedLimits;
  readonly features: ReadonlySet<string>;
  /** Human-readable adapter, e.g. 'llvmpipe: Mesa 25.0.7 (vulkan)'; every benchmark figure names it. */
  readonly adapterName: string;
  readonly hasTimestamps: boolean;
  /** A CPU rasteriser (lavapipe / llvmpipe / SwiftShader): benches and tests shrink their shapes. */
  readonly isSoftware: boolean;
  /** Uncaptured GPU errors not yet reported by `throwIfDeviceErrors`. */
  readonly pendingErrors: string[];
  /** Set once the device is lost for any reason other than our own destroy(). */
  lost: string | undefined;
  /** Dawn toggles the adapter was opened with (dawn-flags.ts); empty on a page's WebGPU. */
  readonly toggles: readonly string[];
  /**
   * The subgroup size every kernel runs with, where the device has 'subgroups' and the adapter's minimum and maximum
   * agree (lavapipe 8, NVIDIA 32); undefined where it may vary. A kernel generated for one size (the chunk kernel with
   * its state in subgroup lanes' registers, chunked/resident.ts) needs it known when it is lowered.
   */
  readonly subgroupSize?: number;
}

/** GPUBufferUsage bits, fixed by the WebGPU spec; usable where WebGPU's globals are not installed (Dawn in Node). */
export const BufferUsage = {
  MAP_READ: 0x1,
  MAP_WRITE: 0x2,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;

/** GPUMapMode bits, likewise. */
export const MapMode = { READ: 0x1, WRITE: 0x2 } as const;

/** Limits we ask at the adapter's maximum rather than WebGPU's conservative defaults. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxStorageBuffersPerShaderStage',
] as const;

const OPTIONAL_FEATURES: GPUFeatureName[] = ['timestamp-query', 'shader-f16', 'subgroups' as GPUFeatureName];

export interface GpuOptions {
  /** The backend under the adapter, named in `adapterName` ('vulkan', … under Dawn; a page: 'webgpu'). */
  readonly backend?: string;
  /** Where uncaptured errors and a device loss are reported when they happen. Default: console.error. */
  readonly report?: (line: string) => void;
  /** Called once the device is lost, for whatever reason (our own destroy() included). */
  readonly onLost?: (info: GPUDeviceLostInfo) => void;
  /** Dawn toggles the adapter was opened with (dawn-flags.ts), shown by benches beside the adapter's name. */
  readonly toggles?: readonly string[];
}

/** Whether an adapter is a CPU implementation (lavapipe, SwiftShader, Dawn's null backend) rather than a GPU. */
export function isSoftwareAdapter(info: GPUAdapterInfo, backend: string): boolean {
  return (
    (info as { isFallbackAdapter?: boolean }).isFallbackAdapter === true ||
    info.architecture === 'software' ||
    /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.device}`) ||
    backend === 'null'
  );
}

/**
 * A device on `adapter` with the adapter's maximum limits and optional features, wrapped as a Gpu. Works with
 * any WebGPU adapter: Dawn's (src/runtime/dawn.ts) or a page's (`navigator.gpu.requestAdapter()`).
 */
export async function gpuFromAdapter(adapter: GPUAdapter, opts: GpuOptions = {}): Promise<Gpu> {
  const backend = opts.backend ?? 'webgpu';
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const max = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof max === 'number') requiredLimits[name] = max;
  }
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const device = await adapter.requestDevice({
    label: 'linattn',
    requiredLimits,
    requiredFeatures,
  });

  const info = adapter.info;
  const isSoftware = isSoftwareAdapter(info, backend);
  // A browser may leave description and device empty (Chromium's SwiftShader names only vendor and architecture).
  // On NVIDIA's Vulkan driver Dawn's description is the driver's version ("NVIDIA: 580.159.04 …") and the GPU's
  // name is in `device` ("NVIDIA H200"): hardware adapters lead with it, so that the schedule model (which knows
  // GPUs by name: adapter-model.ts) and every log see which GPU it is.
  const gpuName = !isSoftware && info.device && !/^(0x)?[0-9a-f]+$/i.test(info.device) && !(info.description ?? '').includes(info.device) ? info.device : '';
  const adapterName =
    [gpuName && info.description ? `${gpuName} —` : gpuName, info.description || info.device || info.architecture || 'unknown adapter', info.vendor && `(${info.vendor}, ${backend})`]
      .filter(Boolean)
      .join(' ') || `unknown (${backend})`;

  const subgroupSize = fixedSubgroupSize(device, info);
  const gpu: Gpu = {
    device,
    adapter,
    limits: device.limits,
    features: new Set(device.features),
    adapterName,
    hasTimestamps: device.features.has('timestamp-query'),
    isSoftware,
    pendingErrors: [],
    lost: undefined,
    toggles: opts.toggles ?? [],
    ...(subgroupSize && { subgroupSize }),
  };

  // Errors outside an error scope arrive here. A listener throwing inside the event dispatch would be
  // lost or kill the process mid-submit, so report now (loud) and fail at the next sync point.
  const report = opts.report ?? ((line: string) => console.error(`linattn: ${line}`));
  device.addEventListener('uncapturederror', (event) => {
    const error = (event as GPUUncapturedErrorEvent).error;
    const text = `GPU ${error.constructor.name} on ${adapterName}: ${error.message}`;
    gpu.pendingErrors.push(text);
    report(text);
  });
  void device.lost.then((lostInfo) => {
    opts.onLost?.(lostInfo);
    if (lostInfo.reason === 'destroyed') return;
    gpu.lost = `GPU device '${device.label}' on ${adapterName} was lost (${lostInfo.reason}): ${lostInfo.message}`;
    report(gpu.lost);
  });
  return gpu;
}

/** The adapter's subgroup size where the device has subgroups and it cannot vary (min = max), else undefined. */
function fixedSubgroupSize(device: GPUDevice, info: GPUAdapterInfo): number | undefined {
  const { subgroupMinSize: min, subgroupMaxSize: max } = info as { subgroupMinSize?: number; subgroupMaxSize?: number };
  return device.features.has('subgroups') && typeof min === 'number' && min > 0 && min === max ? min : undefined;
}

/**
 * Throws every uncaptured error (and device loss) seen since the last call. Called at each sync
 * point (readback, timing), so a bad dispatch fails the operation that waited on it.
 */
export function throwIfDeviceErrors(gpu: Gpu, during: string): void {
  if (gpu.lost) throw new Error(`${during}: ${gpu.lost}`);
  if (gpu.pendingErrors.length === 0) return;
  const errors = gpu.pendingErrors.splice(0);
  throw new Error(`${during}: ${errors.length} GPU error(s):\n${errors.join('\n')}`);
}

/**
 * Runs `body` inside validation and out-of-memory error scopes and throws what they caught, naming
 * `what`. For operations whose failure we want as an exception here rather than an uncaptured error.
 */
export async function withErrorScope<T>(gpu: Gpu, what: string, body: () => T): Promise<T> {
  gpu.device.pushErrorScope('out-of-memory');
  gpu.device.pushErrorScope('validation');
  let result: T | undefined;
  let thrown: unknown;
  try {
    result = body();
  } catch (e) {
    thrown = e;
  }
  const validation = await gpu.device.popErrorScope();
  const oom = await gpu.device.popErrorScope();
  if (thrown !== undefined) throw thrown;
  const err = validation ?? oom;
  if (err) throw new Error(`${what}: ${err.message}`);
  return result as T;
}
