// passes/simplify.ts, FileCheck style: IR text in (read by src/ir/read.ts), printed IR out. Each rule of the
// table has a case; the pass's guarantee (no op of constants only, no ×1, +0, −0, ÷1, −(−x)) holds on every
// example variant after the pipeline; and the pass is idempotent.
import { describe, expect, it } from 'vitest';
import { runPasses } from '../passes/pipeline.ts';
import { simplify } from '../passes/simplify.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { printNode, printProgram } from '../src/ir/print.ts';
import { readProgram } from '../src/ir/read.ts';
import type { Node, Program } from '../src/ir/types.ts';
import { VARIANT_FILES } from './helpers/variants.ts';

const simplified = (ir: string): string => printProgram(simplify(readProgram(ir, 'simplify.ir')));

describe('simplify on IR text', () => {
  it('folds x·1 out of a dot product and drops the dead constant', () => {
    const ir = `variant fold
%q = input q[h, d]
%k = input k[h, d]
%v = input v[h, d]
%qi = at.i %q
%kj = at.j %k
%one = const 1
%a = mul %qi %one
%s = mul %a %kj
%dot = sum %s over d
term lin : causal score %dot value %v
output lin
`;
    expect(simplified(ir)).toBe(`variant fold
axis h free
axis d free
%0 = input q[h, d]  : token[h, d]
%1 = input k[h, d]  : token[h, d]
%2 = input v[h, d]  : token[h, d]
%3 = at.i %0  : query[h, d]
%4 = at.j %1  : key[h, d]
%5 = mul %3 %4  : pair[h, d]
%6 = sum %5 over d  : pair[h]
term lin : causal score %6 value %2 form general
output lin  : [h, d]
`);
  });

  it('folds constant arithmetic (2·M = 8) and moves constants to the right of a product', () => {
    const ir = `variant consts
%v = input v[h]
%i = position i
%j = position j
%lag = sub %i %j
%pi = const 3.141592653589793
%two = const 2
%m = const 4
%den = mul %two %m
%x = mul %pi %lag
%y = div %x %den
%c = cos %y
term t : window(4) score %c value %v
output t
`;
    expect(simplified(ir)).toBe(`variant consts
axis h free
%0 = input v[h]  : token[h]
%1 = position i  : query[]
%2 = position j  : key[]
%3 = sub %1 %2  : pair[]
%4 = const 3.141592653589793  : const[]
%5 = const 8  : const[]
%6 = mul %3 %4  : pair[]
%7 = div %6 %5  : pair[]
%8 = cos %7  : pair[]
term t : window(4) score %8 value %0 form general
output t  : [h]
`);
  });

  it('keeps the lets that still name live values and drops the others', () => {
    const ir = `variant lets
%v = input v[h]
%x = at.i %v
%e = exp %x
%dead = relu %v
let e = %e
let dead = %dead
term t : causal score %e value %v
output t
`;
    const out = simplified(ir);
    expect(out).toContain('let e = %2\n');
    expect(out).not.toContain('let dead');
    expect(out).not.toContain('relu');
  });

  // One case per rule: lines defining %r from %x (= v[i], query[h]), and what the term's score becomes.
  const SCORE_HEADER = 'variant rule\n%v = input v[h]\n%x = at.i %v\n';
  const scoreAfter = (lines: string): string => {
    const p = simplify(readProgram(`${SCORE_HEADER}${lines}\nterm t : causal score %r value %v\noutput t\n`, 'rule.ir'));
    const body = (n: Node): string => printNode(n).replace(/^%\d+ = /, '').replace(/  : .*$/, '');
    // operands spelled out one level, so that the expectation does not depend on numbering
    const n = p.nodes[p.terms[0].score];
    return body(n).replace(/%(\d+)/g, (_, id) => `(${body(p.nodes[Number(id)])})`);
  };
  const RULES: [string, string, string][] = [
    ['x·1 → x', '%c = const 1\n%r = mul %x %c', 'at.i (input v[h])'],
    ['1·x → x', '%c = const 1\n%r = mul %c %x', 'at.i (input v[h])'],
    ['x/1 → x', '%c = const 1\n%r = div %x %c', 'at.i (input v[h])'],
    ['x**1 → x', '%c = const 1\n%r = pow %x %c', 'at.i (input v[h])'],
    ['x+0 → x', '%c = const 0\n%r = add %x %c', 'at.i (input v[h])'],
    ['0+x → x', '%c = const 0\n%r = add %c %x', 'at.i (input v[h])'],
    ['x−0 → x', '%c = const 0\n%r = sub %x %c', 'at.i (input v[h])'],
    ['0−x → −x', '%c = const 0\n%r = sub %c %x', 'neg (at.i %0)'],
    ['x·(−1) → −x', '%c = const -1\n%r = mul %x %c', 'neg (at.i %0)'],
    ['(−1)·x → −x (after moving the constant right)', '%c = const -1\n%r = mul %c %x', 'neg (at.i %0)'],
    ['−(−x) → x', '%n = neg %x\n%r = neg %n', 'at.i (input v[h])'],
    ['c·x → x·c', '%c = const 3\n%r = mul %c %x', 'mul (at.i %0) (const 3)'],
    ['f(c) folds: exp(0)·x → x', '%z = const 0\n%c = exp %z\n%r = mul %x %c', 'at.i (input v[h])'],
    ['c1 ∘ c2 folds: (2·3)·x → x·6', '%a = const 2\n%b = const 3\n%c = mul %a %b\n%r = mul %c %x', 'mul (at.i %0) (const 6)'],
    ['c·x and x·c become one node', '%c = const 3\n%a = mul %c %x\n%b = mul %x %c\n%r = sub %a %b', 'sub (mul %1 %2) (mul %1 %2)'],
  ];
  for (const [name, lines, want] of RULES) {
    it(`rule ${name}`, () => {
      expect(scoreAfter(lines)).toBe(want);
    });
  }
});

describe('simplify on every example variant', () => {
  const isConst = (p: Program, id: number, value?: number) => {
    const n = p.nodes[id];
    return n.op === 'const' && (value === undefined || n.value === value);
  };

  /** What the pass promises is gone; returns the offending nodes, printed. */
  function violations(p: Program): string[] {
    return p.nodes
      .filter((n) => {
        switch (n.op) {
          case 'unary':
            return isConst(p, n.x) || (n.fn === 'neg' && p.nodes[n.x].op === 'unary' && (p.nodes[n.x] as { fn: string }).fn === 'neg');
          case 'binary':
            return (
              (isConst(p, n.a) && isConst(p, n.b)) ||
              (n.fn === 'mul' && (isConst(p, n.a, 1) || isConst(p, n.b, 1))) ||
              ((n.fn === 'div' || n.fn === 'pow') && isConst(p, n.b, 1)) ||
              (n.fn === 'add' && (isConst(p, n.a, 0) || isConst(p, n.b, 0))) ||
              (n.fn === 'sub' && isConst(p, n.b, 0))
            );
          default:
            return false;
        }
      })
      .map(printNode);
  }

  for (const file of VARIANT_FILES) {
    it(`${file}: no op of constants, ×1, +0, −0, ÷1 or −(−x) remains after the pipeline, and simplify is idempotent`, () => {
      const p = runPasses(loadVariant(file));
      expect(violations(p)).toEqual([]);
      expect(printProgram(simplify(p))).toBe(printProgram(p));
    });
  }
});
