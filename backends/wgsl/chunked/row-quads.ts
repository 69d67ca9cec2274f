// The score matrices as row quads (ChunkAnalysis.rowQuads): A_g[jj][ti] is the vec4 of rows ti, ti + C/4, ti + C/2,
// ti + 3C/4 at key column jj — the four rows one output invocation of the overlapped kernel owns in one column
// (outputs.ts: TM 4, rows ti + m·NTO with NTO = C/4), so its A·V reads one vec4 a key column where it read four
// scalars. The score phase's micro-tile is then those four rows of one column (ChunkAnalysis.tile: TI 4, NTI C/4), so
// that one invocation writes each vec4 whole: invocations writing components of one vec4 would race where a backend
// stores a component as a read-modify-write of the vector (Tint's HLSL does; state.ts zJobs has the same rule).
//
// A key column's quads are padded to C/4 + 1 (quadStride): the score invocations of a warp write neighbouring
// columns, which at a stride of C/4 vec4 (a multiple of 128 bytes at chunk 32) would all fall on the same banks.
import type { Block } from '../wgsl-block.ts';
import type { ChunkKernel } from './declarations.ts';
import { quadStride } from './tiles.ts';

/** Store column `jj`'s four rows (the cells of micro-tile rows m = 0…3) of A_g as one vec4. */
export function storeQuad(K: ChunkKernel, b: Block, g: number, jj: string, ti: string, cells: readonly string[]): void {
  const { a } = K;
  b.line(`${K.arrays.A.get(g)!.name}[${jj} * ${quadStride(a.C)}u + ${ti}] = vec4<f32>(${cells.join(', ')});`);
}

/** Load column `jj`'s quad of A_g for the output invocation of rows ti + m·C/4; its components are rows m = 0…3. */
export function loadQuad(K: ChunkKernel, b: Block, g: number, jj: string, ti: string): (m: number) => string {
  const q = b.let('aq', `${K.arrays.A.get(g)!.name}[${jj} * ${quadStride(K.a.C)}u + ${ti}]`);
  return (m) => `${q}.${'xyzw'[m]}`;
}
