// The LM head's loss, one block of rows at a time so that only a block's logits ever exist: given the block's
// logits z [rows, V] (from the head's matmul), for each row r of the block (global row R = row0 + r):
//
//   loss[R] = logsumexp(z[r]) − z[r, target[R]]
//   z[r, v] ← scale · (softmax(z[r])[v] − [v = target[R]])      (in place: the logits' cotangent; when grad ≠ 0)
//
// scale is 1/(rows of the step · micro-batches): the gradient of the mean loss. One workgroup per row; the max
// and the sum of exponentials are tree-reduced in a fixed order.
import { ROW_BUILTINS, ROW_INDEX } from './train-common.ts';
import { halvingRounds, treeReduce } from './workgroup-reduce.ts';

export const LOSS_WORKGROUP = 256;

/** Bindings: z (read-write), targets (u32), loss, params {rows, row0, scale: f32, grad}. */
export function crossEntropyWgsl(vocab: number): string {
  if (!Number.isInteger(vocab) || vocab < 1) throw new Error(`cross-entropy kernel: vocab must be a positive integer, got ${vocab}`);
  return `// softmax cross-entropy of a block of rows: loss[row0 + r] = logsumexp(z[r]) − z[r, target]; z ← scale·(softmax − onehot)
struct Params { rows: u32, row0: u32, scale: f32, grad: u32 }
@group(0) @binding(0) var<storage, read_write> z: array<f32>;     // [rows, VOCAB] this block's logits
@group(0) @binding(1) var<storage, read> targets: array<u32>;     // [all rows]
@group(0) @binding(2) var<storage, read_write> loss: array<f32>;  // [all rows]
@group(0) @binding(3) var<uniform> params: Params;

const VOCAB = ${vocab}u;
const WG = ${LOSS_WORKGROUP}u;
var<workgroup> red: array<f32, WG>;
var<workgroup> target_logit: f32;

@compute @workgroup_size(WG)
fn main(${ROW_BUILTINS}) {
  ${ROW_INDEX}
  if (r >= params.rows) { return; }
  let base = r * VOCAB;
  let tgt = min(targets[params.row0 + r], VOCAB - 1u);
  var m = -3.40282346e38;
  for (var v = lid; v < VOCAB; v += WG) { m = max(m, z[base + v]); }
  red[lid] = m;
  if (lid == 0u) { target_logit = z[base + tgt]; }
  workgroupBarrier();
${halvingRounds('red', 'max')}
  let zmax = red[0];
  workgroupBarrier();
  var s = 0.0;
  for (var v = lid; v < VOCAB; v += WG) { s += exp(z[base + v] - zmax); }
${treeReduce('red', 's', 'sum')}
  let lse = zmax + log(red[0]);
  if (lid == 0u) { loss[params.row0 + r] = lse - target_logit; }
  if (params.grad != 0u) {
    for (var v = lid; v < VOCAB; v += WG) {
      var p = exp(z[base + v] - lse) * params.scale;
      if (v == tgt) { p -= params.scale; }
      z[base + v] = p;
    }
  }
}
`;
}

/** The uniform's 16 bytes: rows, row0, scale (f32), grad flag. */
export function crossEntropyParams(rows: number, row0: number, scale: number, grad: boolean): ArrayBuffer {
  const data = new ArrayBuffer(16);
  new Uint32Array(data).set([rows, row0, 0, grad ? 1 : 0]);
  new Float32Array(data, 8, 1)[0] = scale;
  return data;
}
