// The meaning of every elementwise op, in float64: what constant folding (passes/simplify.ts) computes and
// what the CPU oracle (backends/cpu/evaluator.ts) evaluates, so the two cannot disagree. Keyed by the IR's
// own op lists, so an op added to UNARY_FNS or BINARY_FNS without a meaning here is a compile error.
import type { BinaryFn, UnaryFn } from './types.ts';

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

export const UNARY_F64: Readonly<Record<UnaryFn, (x: number) => number>> = {
  neg: (x) => -x,
  exp: Math.exp,
  log: Math.log,
  elu: (x) => (x > 0 ? x : Math.expm1(x)),
  relu: (x) => Math.max(0, x),
  sigmoid,
  silu: (x) => x * sigmoid(x),
  cos: Math.cos,
  sin: Math.sin,
  sqrt: Math.sqrt,
  abs: Math.abs,
  tanh: Math.tanh,
  recip: (x) => 1 / x,
  step: (x) => (x > 0 ? 1 : 0),
};

export const BINARY_F64: Readonly<Record<BinaryFn, (a: number, b: number) => number>> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: (a, b) => a ** b,
  max: Math.max,
  min: Math.min,
};
