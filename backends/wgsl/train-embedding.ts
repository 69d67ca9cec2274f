// The embedding's gradient without atomics: the host lists, for every token id v, the rows that read it, in
// ascending row order (a CSR: rows_of[starts[v] .. starts[v+1]]), and the GPU sums them in an order fixed by that
// list alone:
//
//   dE[v, c] += Σ_{j ∈ [starts[v], starts[v+1])} dx[rows_of[j], c]
//
// A workgroup takes one id and 64 columns; its 4 lanes take every 4th listed row, each with 4 independent running
// sums (a frequent byte is read by thousands of rows: the loads must overlap), combined in a fixed order.
// Ids run along the grid's y (and z past 65535), column blocks along x; an id no row reads writes nothing.

export const EMBEDDING_BACKWARD_COLUMNS = 64;
export const EMBEDDING_BACKWARD_LANES = 4;

/** Bindings: starts (u32, [vocab + 1]), rows_of (u32), dx [rows, HIDDEN], dE [vocab, HIDDEN], params {vocab}. */
export function embeddingBackwardWgsl(hidden: number): string {
  if (!Number.isInteger(hidden) || hidden < 1) throw new Error(`embedding backward: hidden must be a positive integer, got ${hidden}`);
  const C = EMBEDDING_BACKWARD_COLUMNS;
  const L = EMBEDDING_BACKWARD_LANES;
  return `// embedding backward: dE[v, c] += Σ_j dx[rows_of[j], c] over j in [starts[v], starts[v+1]); lane y sums j ≡ y (mod ${L})
struct Params { vocab: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> starts: array<u32>;
@group(0) @binding(1) var<storage, read> rows_of: array<u32>;
@group(0) @binding(2) var<storage, read> dx: array<f32>;
@group(0) @binding(3) var<storage, read_write> dE: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const HIDDEN = ${hidden}u;
const COLS = ${C}u;
const LANES = ${L}u;
var<workgroup> part: array<f32, ${C * L}>;

@compute @workgroup_size(${C}, ${L})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let v = wid.z * nwg.y + wid.y;
  if (v >= params.vocab) { return; }
  let j0 = starts[v];
  let j1 = starts[v + 1u];
  let c = wid.x * COLS + lid.x;
  let col = min(c, HIDDEN - 1u);
  var s0 = 0.0;
  var s1 = 0.0;
  var s2 = 0.0;
  var s3 = 0.0;
  var j = j0 + lid.y;
  let step = LANES;
  while (j + 3u * step < j1) {
    s0 += dx[rows_of[j] * HIDDEN + col];
    s1 += dx[rows_of[j + step] * HIDDEN + col];
    s2 += dx[rows_of[j + 2u * step] * HIDDEN + col];
    s3 += dx[rows_of[j + 3u * step] * HIDDEN + col];
    j += 4u * step;
  }
  while (j < j1) {
    s0 += dx[rows_of[j] * HIDDEN + col];
    j += step;
  }
  part[lid.y * COLS + lid.x] = (s0 + s1) + (s2 + s3);
  workgroupBarrier();
  if (lid.y == 0u && c < HIDDEN && j1 > j0) {
    dE[v * HIDDEN + c] += ${Array.from({ length: L }, (_, i) => `part[${i}u * COLS + lid.x]`).join(' + ')};
  }
}
`;
}

/** Workgroups for `vocab` ids and `hidden` columns: column blocks in x, ids in y (and z past the limit). */
export function embeddingBackwardGrid(maxPerDimension: number, vocab: number, hidden: number): [number, number, number] {
  const y = Math.min(vocab, maxPerDimension);
  const z = Math.ceil(vocab / y);
  if (z > maxPerDimension) throw new Error(`embedding backward: ${vocab} ids need more than ${maxPerDimension}² workgroups`);
  return [Math.ceil(hidden / EMBEDDING_BACKWARD_COLUMNS), y, z];
}

/** The CSR of a batch's token ids: for each id in [0, vocab), the rows that read it, ascending. */
export function tokenRows(ids: ArrayLike<number>, vocab: number): { starts: Uint32Array<ArrayBuffer>; rows: Uint32Array<ArrayBuffer> } {
  const starts = new Uint32Array(vocab + 1);
  for (let r = 0; r < ids.length; r++) {
    const id = ids[r];
    if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new Error(`token ${id} at row ${r} is outside [0, ${vocab})`);
    starts[id + 1]++;
  }
  for (let v = 0; v < vocab; v++) starts[v + 1] += starts[v];
  const next = starts.slice(0, vocab);
  const rows = new Uint32Array(ids.length);
  for (let r = 0; r < ids.length; r++) rows[next[ids[r]]++] = r;
  return { starts, rows };
}
