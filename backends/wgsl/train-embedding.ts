// The embedding's gradient without atomics: the host lists, for every token id v, the rows that read it, in
// ascending row order (a CSR: rows_of[starts[v] .. starts[v+1]]), and one workgroup per id sums them in that order:
//
//   dE[v, c] += Σ_{j ∈ [starts[v], starts[v+1])} dx[rows_of[j], c]
//
// Ids that no row reads cost one empty workgroup. Ids past 65535 continue in the grid's y.
import { ROW_BUILTINS } from './train-common.ts';

export const EMBEDDING_BACKWARD_WORKGROUP = 64;

/** Bindings: starts (u32, [vocab + 1]), rows_of (u32), dx [rows, HIDDEN], dE [vocab, HIDDEN], params {vocab}. */
export function embeddingBackwardWgsl(hidden: number): string {
  if (!Number.isInteger(hidden) || hidden < 1) throw new Error(`embedding backward: hidden must be a positive integer, got ${hidden}`);
  return `// embedding backward: dE[v, c] += Σ_j dx[rows_of[j], c] over j in [starts[v], starts[v+1]) (rows in ascending order)
struct Params { vocab: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> starts: array<u32>;
@group(0) @binding(1) var<storage, read> rows_of: array<u32>;
@group(0) @binding(2) var<storage, read> dx: array<f32>;
@group(0) @binding(3) var<storage, read_write> dE: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const HIDDEN = ${hidden}u;
const WG = ${EMBEDDING_BACKWARD_WORKGROUP}u;

@compute @workgroup_size(WG)
fn main(${ROW_BUILTINS}) {
  let v = wid.y * nwg.x + wid.x;
  if (v >= params.vocab) { return; }
  let j0 = starts[v];
  let j1 = starts[v + 1u];
  if (j0 == j1) { return; }
  for (var c = lid; c < HIDDEN; c += WG) {
    var s = 0.0;
    for (var j = j0; j < j1; j++) { s += dx[rows_of[j] * HIDDEN + c]; }
    dE[v * HIDDEN + c] += s;
  }
}
`;
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
