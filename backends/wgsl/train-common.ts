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
