// A compiled plan: the kernels of one variant at fixed axis sizes, the buffers they bind, and how many
// workgroups each launch needs for given (b, t). Code generation ends here; src/runtime executes plans.
export type BufferRole = 'input' | 'param' | 'output' | 'scratch' | 'state';

export interface PlanBuffer {
  readonly name: string; // 'in:q', 'param:w', 'out:o', 'tmp:…', 'state:…'
  readonly role: BufferRole;
  /** Number of f32 elements for a batch of b sequences of t tokens. */
  readonly floats: (b: number, t: number) => number;
  readonly shape: (b: number, t: number) => number[];
}

export interface Kernel {
  readonly label: string;
  readonly code: string;
  /** Group-0 bindings in order; binding 0 is always the `Dims` uniform. */
  readonly bindings: readonly { readonly buffer: string; readonly write: boolean }[];
  readonly workgroups: (b: number, t: number) => [number, number, number];
  /** `workgroups` as data, for code that must write the formula out (backends/ts): `grid(b·t·perToken, size)` or [x, b, 1]. */
  readonly launch?: { kind: 'grid'; perToken: number; size: number } | { kind: 'fixed'; x: number; perBatchY: true };
}

export interface Plan {
  readonly variant: string;
  readonly form: 'naive' | 'chunked' | 'unfused' | 'recurrent' | 'tree' | 'tree-commit';
  readonly kernels: readonly Kernel[];
  readonly buffers: readonly PlanBuffer[];
  readonly outAxes: readonly string[];
  readonly sizes: Readonly<Record<string, number>>;
  /** Chosen schedule (chunk size, tile widths), for --verbose and the autotuner. */
  readonly schedule: Readonly<Record<string, number>>;
  /** FLOPs and bytes moved by the algorithm at (b, t), for roofline figures. */
  readonly cost?: (b: number, t: number) => { flops: number; bytes: number };
}

/** The uniform every kernel reads; pos0 is the absolute position of the first token (decoding). */
export const DIMS_WGSL = `struct Dims { b: u32, t: u32, pos0: u32, pad: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;`;

export function bindingDecls(bindings: Kernel['bindings']): string {
  return bindings
    .map((b, k) => `@group(0) @binding(${k + 1}) var<storage, ${b.write ? 'read_write' : 'read'}> ${wgslName(b.buffer)}: array<f32>;`)
    .join('\n');
}

/** 'in:q' → 'in_q': buffer names as WGSL identifiers. */
export function wgslName(buffer: string): string {
  return buffer.replace(/[^A-Za-z0-9_]/g, '_');
}

/** A 1-D launch of n invocations in workgroups of `size`, folded into 2-D past the 65535 limit. */
export function grid(n: number, size: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / size));
  if (groups <= 65535) return [groups, 1, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y, 1];
}

/** WGSL that recovers the flat invocation index of a `grid` launch. */
export const FLAT_INDEX = 'let flat = gid.x + gid.y * nwg.x * WG;';
