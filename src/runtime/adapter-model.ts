// The schedule model's view of an adapter (backends/wgsl/schedule-model.ts). WebGPU does not say how many compute
// units a GPU has, so they come from its name: the SM counts NVIDIA publishes for the GPUs we know (an H100 or
// H200 SXM has 132), 64 for unknown hardware (a mid-sized GPU: the model then still prefers filling it), and a
// software adapter (lavapipe, SwiftShader) gets the host's cores, which its threads run workgroups on.
import { hardwareModel, softwareModel, type AdapterModel } from '../../backends/wgsl/schedule-model.ts';
import type { Gpu } from './device.ts';

/** Name patterns → compute units (SMs), most specific first. */
const KNOWN_UNITS: readonly [RegExp, number][] = [
  [/H100.*PCIe/i, 114],
  [/H200|H100|GH200/i, 132],
  [/B200/i, 148],
  [/A100/i, 108],
  [/L40S|L40/i, 142],
  [/RTX 4090/i, 128],
  [/RTX 3090/i, 82],
  [/A10\b/i, 72],
  [/L4\b/i, 58],
  [/V100/i, 80],
  [/T4\b/i, 40],
];

/** Compute units unknown hardware is assumed to have. */
export const UNKNOWN_HARDWARE_UNITS = 64;

export function computeUnits(adapterName: string, software: boolean, cores = hostCores()): number {
  if (software) return cores;
  return KNOWN_UNITS.find(([re]) => re.test(adapterName))?.[1] ?? UNKNOWN_HARDWARE_UNITS;
}

function hostCores(): number {
  const n = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency;
  return typeof n === 'number' && n > 0 ? n : 4;
}

export function adapterModel(gpu: Pick<Gpu, 'adapterName' | 'isSoftware' | 'limits'>): AdapterModel {
  const units = computeUnits(gpu.adapterName, gpu.isSoftware);
  const bytes = gpu.limits.maxComputeWorkgroupStorageSize;
  return gpu.isSoftware ? softwareModel(units, bytes) : hardwareModel(units, bytes);
}
