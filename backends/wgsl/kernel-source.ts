// A WGSL kernel as code generation hands it to the runtime: text plus the binding layout, as data. The
// runtime's pipeline cache (src/runtime/pipeline-cache.ts) compiles it; nothing here touches a device.

export type BindingKind = 'storage' | 'read-only-storage' | 'uniform';

export interface KernelSource {
  /** Names the kernel and the IR node it implements, e.g. 'matmul[n3: q_proj]'. */
  readonly label: string;
  readonly code: string;
  readonly entryPoint?: string;
  /**
   * Bindings of group 0 in binding order. Given: an explicit layout (bind groups then fit any
   * pipeline with the same list, and unused bindings stay valid). Omitted: layout 'auto'.
   */
  readonly bindings?: readonly BindingKind[];
}

/** The limits code generation sizes kernels and grids by (a GPUSupportedLimits, or WebGPU's defaults). */
export interface KernelLimits {
  readonly maxComputeWorkgroupStorageSize: number;
  readonly maxComputeInvocationsPerWorkgroup: number;
  readonly maxComputeWorkgroupsPerDimension: number;
}

/** The device a kernel is generated for: its limits, and its name for error messages (a Gpu is one). */
export interface KernelTarget {
  readonly adapterName: string;
  readonly limits: KernelLimits;
  /** A CPU implementation (lavapipe): compile time per kernel matters more than its speed there. */
  readonly isSoftware?: boolean;
  /** The subgroup size every kernel runs with, where the device has 'subgroups' and it is fixed (src/runtime/device.ts). */
  readonly subgroupSize?: number;
}
