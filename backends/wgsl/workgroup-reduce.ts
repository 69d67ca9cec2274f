// The tree reduction over a workgroup's WG slots (WG a power of two) that the model, sampling and training kernels
// share, as WGSL text: slot lid holds its thread's value; each round the lower half folds in the upper half, so
// after log2(WG) rounds buf[0] = ⊕_lid buf[lid] in a fixed order, and runs repeat bit for bit.

/** How a slot folds in its partner: a sum or a maximum. */
export type ReduceOp = 'sum' | 'max';

function combine(buf: string, op: ReduceOp): string {
  return op === 'sum' ? `${buf}[lid] += ${buf}[lid + off];` : `${buf}[lid] = max(${buf}[lid], ${buf}[lid + off]);`;
}

/** The halving rounds over `buf`, whose slots are already written and behind a barrier; ends on a barrier. */
export function halvingRounds(buf: string, op: ReduceOp, indent = '  '): string {
  return [
    `for (var off = WG / 2u; off > 0u; off = off / 2u) {`,
    `  if (lid < off) { ${combine(buf, op)} }`,
    `  workgroupBarrier();`,
    `}`,
  ].map((l) => indent + l).join('\n');
}

/** buf[lid] = value, a barrier, then the halving rounds: the reduction is in buf[0]. */
export function treeReduce(buf: string, value: string, op: ReduceOp, indent = '  '): string {
  return `${indent}${buf}[lid] = ${value};\n${indent}workgroupBarrier();\n${halvingRounds(buf, op, indent)}`;
}

/**
 * The same rounds over (value, index) pairs in vBuf, iBuf: vBuf[lid] = value, iBuf[lid] = index, then each slot takes
 * its partner's pair (ov, oi) where `takes`, a WGSL condition over ov, oi and the slot's own pair, holds — the
 * argmax kernels' order (larger value first, lower index among ties, an empty slot last) written by each caller.
 */
export function treeReducePair(vBuf: string, iBuf: string, value: string, index: string, takes: string, indent = '  '): string {
  return [
    `${vBuf}[lid] = ${value};`,
    `${iBuf}[lid] = ${index};`,
    `workgroupBarrier();`,
    `for (var off = WG / 2u; off > 0u; off = off / 2u) {`,
    `  if (lid < off) {`,
    `    let ov = ${vBuf}[lid + off];`,
    `    let oi = ${iBuf}[lid + off];`,
    `    if (${takes}) {`,
    `      ${vBuf}[lid] = ov;`,
    `      ${iBuf}[lid] = oi;`,
    `    }`,
    `  }`,
    `  workgroupBarrier();`,
    `}`,
  ].map((l) => indent + l).join('\n');
}

/**
 * The same rounds over (max, Σ exp) pairs in mBuf, sBuf: slot lid holds m = max of its values and s = Σ exp(v − m);
 * a slot folds in its partner as M = max(m, om), s = s·exp(m − M) + os·exp(om − M), so after the rounds mBuf[0] is
 * the max of every value and sBuf[0] the Σ exp(v − mBuf[0]) (an empty slot: m = −3.4e38, s = 0). Ends on a barrier.
 */
export function treeReduceLogSumExp(mBuf: string, sBuf: string, m: string, s: string, indent = '  '): string {
  return [
    `${mBuf}[lid] = ${m};`,
    `${sBuf}[lid] = ${s};`,
    `workgroupBarrier();`,
    `for (var off = WG / 2u; off > 0u; off = off / 2u) {`,
    `  if (lid < off) {`,
    `    let om = ${mBuf}[lid + off];`,
    `    let mm = max(${mBuf}[lid], om);`,
    `    ${sBuf}[lid] = ${sBuf}[lid] * exp(${mBuf}[lid] - mm) + ${sBuf}[lid + off] * exp(om - mm);`,
    `    ${mBuf}[lid] = mm;`,
    `  }`,
    `  workgroupBarrier();`,
    `}`,
  ].map((l) => indent + l).join('\n');
}
