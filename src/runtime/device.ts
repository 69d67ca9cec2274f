// The one place that talks to Dawn's adapter and device. Everything GPU-side in the runtime gets its
// device here, so adapter choice, requested limits, features and error reporting are decided once:
// a kernel that overflows a default limit, or a validation error nobody listened for, would otherwise
// fail far from its cause (or not at all).
import { create, globals } from 'webgpu';

export interface DeviceOptions {
  /** Dawn backend: 'vulkan' (default), 'metal', 'd3d12', 'opengl', 'null', … Env: LINATTN_BACKEND. */
  backend?: string;
  /** Dawn adapter name, as listed when a wrong one is given. Env: LINATTN_ADAPTER. (Env LINATTN_DAWN_FLAGS adds raw Dawn flags.) */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
}

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
}

/** What to install when Dawn finds no adapter; the message users see, so it names commands. */
export const NO_ADAPTER_HELP = [
  'Install a Vulkan driver. With no GPU, use Mesa\'s lavapipe (software Vulkan).',
  'On Debian bookworm, bookworm\'s own Mesa 22.3 is rejected by Dawn; take Mesa from backports:',
  '  echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/backports.list',
  '  apt-get update && apt-get install -t bookworm-backports mesa-vulkan-drivers',
  'Or run on the float64 CPU backend instead: --device cpu',
  'If a driver is installed, check that `vulkaninfo --summary` lists it (VK_DRIVER_FILES selects ICD files).',
].join('\n');

/** GPUBufferUsage bits, fixed by the WebGPU spec; usable before Dawn's globals are installed. */
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

const OPTIONAL_FEATURES: GPUFeatureName[] = ['timestamp-query', 'shader-f16'];

// Keep Dawn's GPU object alive for the process: dropping it tears down every device made from it.
const dawnInstances = new Map<string, GPU>();
const devices = new Map<string, Promise<Gpu>>();
let globalsInstalled = false;

function resolveOptions(opts: DeviceOptions): Required<Pick<DeviceOptions, 'backend'>> & DeviceOptions {
  return {
    backend: opts.backend ?? process.env.LINATTN_BACKEND ?? 'vulkan',
    adapter: opts.adapter ?? process.env.LINATTN_ADAPTER,
    powerPreference: opts.powerPreference ?? 'high-performance',
  };
}

/** The cached device for these options (one per backend/adapter/preference per process). */
export function getDevice(opts: DeviceOptions = {}): Promise<Gpu> {
  const resolved = resolveOptions(opts);
  const key = JSON.stringify([resolved.backend, resolved.adapter ?? '', resolved.powerPreference]);
  const cached = devices.get(key);
  if (cached) return cached;
  const made = openDevice(resolved, key);
  devices.set(key, made);
  // A failed open must not poison the cache: the next call retries (e.g. after installing a driver).
  made.catch(() => devices.delete(key));
  return made;
}

async function openDevice(opts: ReturnType<typeof resolveOptions>, key: string): Promise<Gpu> {
  if (!globalsInstalled) {
    Object.assign(globalThis, globals);
    globalsInstalled = true;
  }
  const dawnFlags = [`backend=${opts.backend}`];
  if (opts.adapter) dawnFlags.push(`adapter=${opts.adapter}`);
  // Dawn rounds timestamps to 100 µs by default (a browser fingerprinting guard); kernels here take µs.
  dawnFlags.push('disable-dawn-features=timestamp_quantization');
  // Extra Dawn flags for debugging, e.g. LINATTN_DAWN_FLAGS='enable-dawn-features=dump_shaders'.
  for (const flag of (process.env.LINATTN_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean)) dawnFlags.push(flag);

  let adapter: GPUAdapter | null;
  try {
    let dawn = dawnInstances.get(dawnFlags.join(' '));
    if (!dawn) {
      dawn = create(dawnFlags);
      dawnInstances.set(dawnFlags.join(' '), dawn);
    }
    adapter = await dawn.requestAdapter({ powerPreference: opts.powerPreference });
  } catch (e) {
    throw new Error(
      `Dawn could not open a WebGPU adapter (flags: ${dawnFlags.join(' ')}): ${(e as Error).message}\n${NO_ADAPTER_HELP}`,
    );
  }
  if (!adapter) {
    throw new Error(`No WebGPU adapter found on Dawn's '${opts.backend}' backend.\n${NO_ADAPTER_HELP}`);
  }

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
  const adapterName =
    [info.description || info.device || 'unknown adapter', info.vendor && `(${info.vendor}, ${opts.backend})`]
      .filter(Boolean)
      .join(' ') || `unknown (${opts.backend})`;
  const isSoftware =
    info.isFallbackAdapter === true ||
    info.architecture === 'software' ||
    /llvmpipe|lavapipe|swiftshader/i.test(`${info.description} ${info.device}`) ||
    opts.backend === 'null';

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
  };

  // Errors outside an error scope arrive here. A listener throwing inside Dawn's event dispatch would
  // be lost or kill the process mid-submit, so print now (loud) and fail at the next sync point.
  device.addEventListener('uncapturederror', (event) => {
    const error = (event as GPUUncapturedErrorEvent).error;
    const text = `GPU ${error.constructor.name} on ${adapterName}: ${error.message}`;
    gpu.pendingErrors.push(text);
    process.stderr.write(`linattn: ${text}\n`);
  });
  void device.lost.then((lostInfo) => {
    devices.delete(key);
    if (lostInfo.reason === 'destroyed') return;
    gpu.lost = `GPU device '${device.label}' on ${adapterName} was lost (${lostInfo.reason}): ${lostInfo.message}`;
    process.stderr.write(`linattn: ${gpu.lost}\n`);
  });
  return gpu;
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
