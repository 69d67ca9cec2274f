// Opening a device on Dawn (npm `webgpu`), in Node: the one file that loads Dawn, reads the LINATTN_*
// environment and knows what to install when there is no adapter. Everything else in the runtime takes the
// resulting Gpu (device.ts), so the same code runs on a page's WebGPU.
import { create, globals } from 'webgpu';
import { dawnFlags, enabledToggles } from './dawn-flags.ts';
import { pacePolling } from './dawn-polling.ts';
import { gpuFromAdapter, isSoftwareAdapter, type Gpu } from './device.ts';

export interface DeviceOptions {
  /** Dawn backend: 'vulkan' (default), 'metal', 'd3d12', 'opengl', 'null', … Env: LINATTN_BACKEND. */
  backend?: string;
  /** Dawn adapter name, as listed when a wrong one is given. Env: LINATTN_ADAPTER. (Env LINATTN_DAWN_FLAGS adds raw Dawn flags; LINATTN_SAFE=1 keeps Dawn's validation and robustness: dawn-flags.ts; LINATTN_POLL=pace|spin: pollsPaced.) */
  adapter?: string;
  powerPreference?: GPUPowerPreference;
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

/**
 * Whether Dawn's polls for finished GPU work are paced (dawn-polling.ts): on a software adapter, whose GPU is the
 * host's own cores, by default; LINATTN_POLL=pace or spin decides otherwise.
 */
export function pollsPaced(env: string | undefined, software: boolean): boolean {
  if (env === undefined || env === '') return software;
  if (env === 'pace' || env === 'spin') return env === 'pace';
  throw new Error(`LINATTN_POLL=${env}: pace or spin`);
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

async function openAdapter(flags: readonly string[], powerPreference: GPUPowerPreference | undefined): Promise<GPUAdapter | null> {
  const key = flags.join(' ');
  let dawn = dawnInstances.get(key);
  if (!dawn) {
    dawn = create([...flags]);
    dawnInstances.set(key, dawn);
  }
  return dawn.requestAdapter({ powerPreference });
}

async function openDevice(opts: ReturnType<typeof resolveOptions>, key: string): Promise<Gpu> {
  if (!globalsInstalled) {
    Object.assign(globalThis, globals);
    globalsInstalled = true;
  }
  // Dawn's flags depend on whether the adapter is a GPU (dawn-flags.ts: host validation is skipped on hardware
  // only), which is known once an adapter is open: open with the software flags, and again if it is hardware.
  const flagsFor = (hardware: boolean) => dawnFlags({ backend: opts.backend, adapter: opts.adapter, hardware, env: process.env });
  let flags = flagsFor(false);
  let adapter: GPUAdapter | null;
  try {
    adapter = await openAdapter(flags, opts.powerPreference);
    const hardwareFlags = flagsFor(true);
    if (adapter && !isSoftwareAdapter(adapter.info, opts.backend) && hardwareFlags.join(' ') !== flags.join(' ')) {
      flags = hardwareFlags;
      adapter = await openAdapter(flags, opts.powerPreference);
    }
  } catch (e) {
    throw new Error(
      `Dawn could not open a WebGPU adapter (flags: ${flags.join(' ')}): ${(e as Error).message}\n${NO_ADAPTER_HELP}`,
    );
  }
  if (!adapter) {
    throw new Error(`No WebGPU adapter found on Dawn's '${opts.backend}' backend.\n${NO_ADAPTER_HELP}`);
  }
  if (pollsPaced(process.env.LINATTN_POLL, isSoftwareAdapter(adapter.info, opts.backend))) pacePolling();
  return gpuFromAdapter(adapter, {
    backend: opts.backend,
    toggles: enabledToggles(flags),
    report: (line) => void process.stderr.write(`linattn: ${line}\n`),
    onLost: () => devices.delete(key),
  });
}
