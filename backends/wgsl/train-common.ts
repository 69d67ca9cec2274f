// Pieces the training kernels share: f32 literals, the row index of one-workgroup-per-row kernels (rows past
// the grid's 65535 per dimension continue in y), and the grids that go with them.
import type { KernelLimits } from './kernel-source.ts';

export function f32Literal(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`f32Literal: ${x} is not finite`);
  const s = String(x);
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

/** Threads per row of a norm: enough to cover a hidden row in a few strided steps (as model-kernels.ts). */
export function normWorkgroup(hidden: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < hidden) wg *= 2;
  return wg;
}

export const ROW_BUILTINS =
  '@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>';
/** `r`, the row of this workgroup, uniform across it. */
export const ROW_INDEX = 'let r = wid.y * nwg.x + wid.x;';

/** One workgroup per row for `rows` rows, spilling into y past the 1-D limit (kernels skip r ≥ rows). */
export function rowGrid2d(limits: KernelLimits, rows: number, label: string): [number, number, number] {
  if (!Number.isInteger(rows) || rows < 1) throw new Error(`${label}: rows must be a positive integer, got ${rows}`);
  const maxX = limits.maxComputeWorkgroupsPerDimension;
  const x = Math.min(rows, maxX);
  const y = Math.ceil(rows / x);
  if (y > maxX) throw new Error(`${label}: ${rows} rows need more than ${maxX}² workgroups`);
  return [x, y, 1];
}

/** Threads per workgroup of an element kernel (elementWgsl). */
export const ELEMENT_WORKGROUP = 256;

/** An f32 storage array of an element kernel, bound in order; `write`: read_write, else read. */
export interface ElementArray {
  readonly name: string;
  readonly write?: boolean;
}

/**
 * A kernel of one thread per element for params.count elements (256 threads a workgroup, past 65535 workgroups the
 * grid's y continues): binds `arrays` and then params {count}; `body` (lines) runs where the element index, named
 * `index`, is below count.
 */
export function elementWgsl(title: string, arrays: readonly ElementArray[], index: string, body: readonly string[]): string {
  const bindings = arrays.map((a, i) => `@group(0) @binding(${i}) var<storage, ${a.write ? 'read_write' : 'read'}> ${a.name}: array<f32>;`);
  return `// ${title}
struct Params { count: u32, pad0: u32, pad1: u32, pad2: u32 }
${bindings.join('\n')}
@group(0) @binding(${arrays.length}) var<uniform> params: Params;

const WG = ${ELEMENT_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(${ROW_BUILTINS}) {
  let ${index} = (wid.y * nwg.x + wid.x) * WG + lid;
  if (${index} >= params.count) { return; }
${body.map((l) => `  ${l}`).join('\n')}
}
`;
}
