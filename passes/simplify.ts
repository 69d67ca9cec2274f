// Canonicalisation and constant folding as a table of local rewrites, applied in one rebuild (which also
// drops dead nodes). Guarantees afterwards: no op whose operands are all constants, no ×1, +0, −0, ÷1, −(−x).
import type { GraphBuilder } from '../src/ir/builder.ts';
import { BINARY_F64, UNARY_F64 } from '../src/ir/float-ops.ts';
import { printProgram } from '../src/ir/print.ts';
import { rebuild, type Rule } from '../src/ir/rebuild.ts';
import type { Id, Op, Program } from '../src/ir/types.ts';

const constOf = (g: GraphBuilder, id: Id): number | null => {
  const n = g.node(id);
  return n.op === 'const' ? n.value : null;
};

export const RULES: readonly Rule[] = [
  // fold: f(c) and c1 ∘ c2
  (op, g) => (op.op === 'unary' && constOf(g, op.x) !== null ? g.const(UNARY_F64[op.fn](constOf(g, op.x)!)) : null),
  (op, g) => {
    if (op.op !== 'binary') return null;
    const a = constOf(g, op.a);
    const b = constOf(g, op.b);
    return a !== null && b !== null ? g.const(BINARY_F64[op.fn](a, b)) : null;
  },
  // identities (the kept operand already has every axis of the result, since a constant has none)
  (op, g) => (op.op === 'binary' && op.fn === 'mul' && constOf(g, op.a) === 1 ? op.b : null),
  (op, g) => (op.op === 'binary' && (op.fn === 'mul' || op.fn === 'div' || op.fn === 'pow') && constOf(g, op.b) === 1 ? op.a : null),
  (op, g) => (op.op === 'binary' && op.fn === 'add' && constOf(g, op.a) === 0 ? op.b : null),
  (op, g) => (op.op === 'binary' && (op.fn === 'add' || op.fn === 'sub') && constOf(g, op.b) === 0 ? op.a : null),
  (op, g) => (op.op === 'binary' && op.fn === 'sub' && constOf(g, op.a) === 0 ? g.add({ op: 'unary', fn: 'neg', x: op.b }) : null),
  (op, g) => (op.op === 'binary' && op.fn === 'mul' && constOf(g, op.b) === -1 ? g.add({ op: 'unary', fn: 'neg', x: op.a }) : null),
  (op, g) => {
    if (op.op !== 'unary' || op.fn !== 'neg') return null;
    const x = g.node(op.x);
    return x.op === 'unary' && x.fn === 'neg' ? x.x : null;
  },
  // constants to the right of a product, so that x·c and c·x share one node
  (op, g) =>
    op.op === 'binary' && op.fn === 'mul' && constOf(g, op.a) !== null && constOf(g, op.b) === null
      ? g.add({ ...op, a: op.b, b: op.a } as Op)
      : null,
];

// A round can rewrite without changing the node count (a fold adds a constant while its operands die only in the
// next round; c·x → x·c swaps in place), so the fixpoint is on the printed program, not on its size.
export function simplify(p: Program): Program {
  let cur = rebuild(p, RULES);
  let text = printProgram(cur);
  for (let round = 0; round < 16; round++) {
    const next = rebuild(cur, RULES);
    const nextText = printProgram(next);
    if (nextText === text) return next;
    cur = next;
    text = nextText;
  }
  return cur;
}
