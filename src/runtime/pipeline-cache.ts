// Compiling WGSL into compute pipelines, once per distinct source. Generated kernels are the
// compiler's output, so a WGSL error is a compiler bug: it must surface as an exception that names
// the kernel (its label carries the IR node) and shows each error at line:col with the source line,
// never as a console warning and a pipeline that silently does nothing.
import type { BindingKind, KernelSource } from '../../backends/wgsl/kernel-source.ts';
import type { Gpu } from './device.ts';

export interface CompileMessage {
  readonly type: GPUCompilationMessageType;
  readonly line: number;
  readonly col: number;
  readonly message: string;
}

export class WgslCompileError extends Error {
  constructor(
    readonly label: string,
    readonly messages: readonly CompileMessage[],
    text: string,
  ) {
    super(text);
    this.name = 'WgslCompileError';
  }
}

/** `label:line:col: type: message`, then the offending source line and a caret under the span. */
export function formatCompileMessages(
  label: string,
  code: string,
  messages: readonly GPUCompilationMessage[],
): string {
  const lines = code.split('\n');
  const parts: string[] = [];
  for (const m of messages) {
    parts.push(`${label}:${m.lineNum}:${m.linePos}: ${m.type}: ${m.message}`);
    const src = lines[m.lineNum - 1];
    if (src !== undefined && m.lineNum > 0) {
      parts.push(`    ${src}`);
      const width = Math.max(1, Math.min(m.length, src.length - m.linePos + 1));
      parts.push(`    ${' '.repeat(Math.max(0, m.linePos - 1))}${'^'.repeat(width)}`);
    }
  }
  return parts.join('\n');
}

const caches = new WeakMap<GPUDevice, Map<string, Promise<GPUComputePipeline>>>();

/** The compute pipeline for `src`, compiled on first use and cached per device by its source text. */
export function compileKernel(gpu: Gpu, src: KernelSource): Promise<GPUComputePipeline> {
  let cache = caches.get(gpu.device);
  if (!cache) {
    cache = new Map();
    caches.set(gpu.device, cache);
  }
  const key = `${src.entryPoint ?? 'main'}\u0000${(src.bindings ?? ['auto']).join(',')}\u0000${src.code}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const made = build(gpu, src);
  cache.set(key, made);
  made.catch(() => cache.delete(key));
  return made;
}

/** Number of distinct pipelines compiled on this device (for tests of the cache). */
export function pipelineCacheSize(gpu: Gpu): number {
  return caches.get(gpu.device)?.size ?? 0;
}

function bindGroupLayout(gpu: Gpu, label: string, bindings: readonly BindingKind[]): GPUBindGroupLayout {
  return gpu.device.createBindGroupLayout({
    label: `${label} bindings`,
    entries: bindings.map((kind, binding) => ({
      binding,
      visibility: 0x4, // GPUShaderStage.COMPUTE
      buffer: { type: kind },
    })),
  });
}

async function build(gpu: Gpu, src: KernelSource): Promise<GPUComputePipeline> {
  const { device } = gpu;
  const entryPoint = src.entryPoint ?? 'main';
  // The scope keeps a WGSL error out of the uncaptured-error channel: it is reported below, in full.
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: src.label, code: src.code });
  const info = await module.getCompilationInfo();
  const scopeError = await device.popErrorScope();

  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length > 0 || scopeError) {
    const text =
      errors.length > 0
        ? formatCompileMessages(src.label, src.code, errors)
        : `${src.label}: ${scopeError?.message ?? 'unknown error'}`;
    throw new WgslCompileError(
      src.label,
      errors.map((m) => ({ type: m.type, line: m.lineNum, col: m.linePos, message: m.message })),
      `WGSL for kernel '${src.label}' does not compile (${Math.max(errors.length, 1)} error(s)):\n${text}`,
    );
  }
  const warnings = info.messages.filter((m) => m.type !== 'error');
  if (warnings.length > 0) {
    console.warn(`linattn: WGSL ${formatCompileMessages(src.label, src.code, warnings)}`);
  }

  // Checked here, not left to Dawn: a hardware adapter runs with skip_validation (dawn-flags.ts), and there a missing
  // entry point reached the driver and killed the process (H200, call 255).
  if (!new RegExp(`\\bfn\\s+${entryPoint.replace(/[^\w]/g, '\\$&')}\\s*\\(`).test(src.code)) {
    throw new Error(`kernel '${src.label}': pipeline creation failed: its WGSL has no function '${entryPoint}' for the entry point`);
  }
  const layout: GPUPipelineLayout | 'auto' = src.bindings
    ? device.createPipelineLayout({
        label: src.label,
        bindGroupLayouts: [bindGroupLayout(gpu, src.label, src.bindings)],
      })
    : 'auto';
  try {
    return await device.createComputePipelineAsync({ label: src.label, layout, compute: { module, entryPoint } });
  } catch (e) {
    // E.g. a missing entry point, a binding that disagrees with the explicit layout, or a workgroup
    // over the device's limits: these pass WGSL parsing and fail only here.
    throw new Error(`kernel '${src.label}': pipeline creation failed: ${(e as Error).message}`);
  }
}
