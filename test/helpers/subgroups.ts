// The resident (rs) chunk kernels reduce a chunk in blocks of (subgroup size / columns a subgroup) rows, so a chunk
// must be a multiple of that. The tests' schedules were written for lavapipe's subgroups of 8; on a GPU with larger
// subgroups (NVIDIA's 32) their chunks grow to the smallest that is allowed there, and the lengths and group sizes
// chosen around them by chunkScale, so the same cases (a partial last chunk, groups across chunks, several segments)
// run there too. (The smallest chunk, not a uniform scale: gla's kernel at chunk 32 and 2 columns a subgroup needs
// 58 KB of workgroup memory, over the H200's 48 KB.)
export const chunkScale = (subgroupSize: number): number => Math.max(1, subgroupSize / 8);

/** The chunk of rows `base` at subgroup size 8 becomes, with `colsPerSubgroup` value columns a subgroup, at `subgroupSize`. */
export const rsChunk = (base: number, subgroupSize: number, colsPerSubgroup: number): number => Math.max(base, subgroupSize / colsPerSubgroup);
