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
