// The resident (rs) chunk kernels reduce a chunk in blocks of (subgroup size / columns a subgroup) rows, so a chunk
// must be a multiple of that. The tests' schedules were written for lavapipe's subgroups of 8; on a GPU with larger
// subgroups (NVIDIA's 32) their chunks, and the lengths and group sizes chosen around them, grow by this factor, so
// the same cases (a partial last chunk, groups across chunks, several segments) run there too.
export const chunkScale = (subgroupSize: number): number => Math.max(1, subgroupSize / 8);
