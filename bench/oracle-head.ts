// The benches' correctness check at sizes the float64 oracle cannot afford: the oracle runs on the first tokens of
// sequence 0 only, which causality makes independent of the rest of the batch and of later tokens.
import { evaluateParallel } from '../backends/cpu/parallel.ts';
import { count } from '../backends/wgsl/common.ts';
import type { Compiled } from '../src/runtime/compiler.ts';
import type { Tensor } from '../src/tensor.ts';

/** The oracle's output [1, tc, …] for the first `tc` tokens of sequence 0 of inputs `x` (params whole). */
export function oracleHead(c: Compiled, x: Record<string, Tensor>, sizes: Record<string, number>, tc: number): Tensor {
  const head: Record<string, Tensor> = {};
  for (const dcl of c.source.inputs) {
    const per = count(dcl.axes, sizes);
    head[dcl.name] = { shape: [1, tc, ...dcl.axes.map((a) => sizes[a])], data: x[dcl.name].data.subarray(0, tc * per) };
  }
  for (const dcl of c.source.params) head[dcl.name] = x[dcl.name];
  return evaluateParallel(c.source, head);
}
