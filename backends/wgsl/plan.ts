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
  /** `workgroups` as data, for code that must write the formula out (backends/ts): `grid(b·t·perToken, size)`, [x, b, 1] or [x·⌈t/block⌉, b, 1]. */
  readonly launch?:
    | { kind: 'grid'; perToken: number; size: number }
    | { kind: 'fixed'; x: number; perBatchY: true }
    /** [x·⌈t / block⌉, b, 1]: x workgroups per block of `block` tokens (softmax-chunked.ts's query blocks). */
    | { kind: 'blocks'; x: number; block: number };
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
  /**
   * Positions a growing decoding state holds (softmax attention's key/value cache, softmax-analysis.ts) when its
   * state buffers are allocated for t ≤ this; absent when the state does not grow with t.
   */
  readonly maxLength?: number;
  /** FLOPs and bytes moved by the algorithm at (b, t), for roofline figures. */
  readonly cost?: (b: number, t: number) => { flops: number; bytes: number };
}

/** 'in:q' → 'in_q': a buffer's name as a WGSL identifier (every character outside [A-Za-z0-9_] becomes '_'). */
export function wgslName(buffer: string): string {
  let name = '';
  for (const ch of buffer) name += (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch === '_' ? ch : '_';
  return name;
}

/** A 1-D launch of n invocations in workgroups of `size`, folded into 2-D past the 65535 limit. */
export function grid(n: number, size: number): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / size));
  if (groups <= 65535) return [groups, 1, 1];
  const y = Math.ceil(groups / 65535);
  return [Math.ceil(groups / y), y, 1];
}
