// Malformed variants are rejected at the offending text: each case names the exact line:col and a
// fragment of the message, and formatDiagnostic renders them as the CLI prints them.
import { describe, expect, it } from 'vitest';
import { compileSource } from '../src/frontend/compile.ts';
import { formatDiagnostic } from '../src/frontend/diagnostics.ts';
import { SourceError } from '../src/ir/span.ts';

// Lines 1–4 of every case; the case's own lines start at line 5.
const HEADER = ['variant bad', 'size K = 4', 'input q[h, d], k[h, d], v[h, e]', 'param w[h, e, K]'];
const src = (...lines: string[]) => [...HEADER, ...lines].join('\n') + '\n';
const LIN = 'term a : causal score dot(q[i], k[j], d) value v';

function compileError(source: string): SourceError {
  try {
    compileSource(source, 'bad.la');
  } catch (e) {
    if (e instanceof SourceError) return e;
    throw e;
  }
  throw new Error('expected a SourceError, but the variant compiled');
}

const CASES: { name: string; source: string; at: [number, number]; message: RegExp }[] = [
  { name: 'syntax: a term without its value', source: src('term a : causal score dot(q[i], k[j], d)', 'output a'), at: [6, 1], message: /syntax error: unexpected 'output'/ },
  { name: 'syntax: a stray character', source: src('term a : causal score dot(q[i], k[j], d) $ 2 value v'), at: [5, 42], message: /unexpected '\$'/ },
  { name: 'syntax: an unclosed parenthesis', source: src('let x = (q + 1'), at: [6, 1], message: /unexpected end of input/ },
  { name: 'syntax: a keyword used as a name', source: src('let term = q'), at: [5, 5], message: /'term' is a keyword/ },
  { name: 'unknown tensor', source: src('term a : causal score dot(q[i], kk[j], d) value v', 'output a'), at: [5, 33], message: /unknown tensor 'kk'/ },
  { name: 'unknown name', source: src('term a : causal score dot(q[i], k[j], d) * zz value v', 'output a'), at: [5, 44], message: /unknown name 'zz'/ },
  { name: 'unknown function', source: src('term a : causal score dot(foo(q[i]), k[j], d) value v', 'output a'), at: [5, 27], message: /unknown function 'foo'/ },
  { name: 'unknown mask', source: src('term a : causl score dot(q[i], k[j], d) value v', 'output a'), at: [5, 10], message: /unknown mask 'causl'/ },
  { name: 'dot over an axis the operands lack', source: src('term a : causal score dot(q[i], k[j], e) value v', 'output a'), at: [5, 39], message: /dot over axis 'e', but operand 1 has axes \[h, d\]/ },
  { name: 'a score with axes the value lacks', source: src('term a : causal score q[i] * k[j] value v', 'output a'), at: [5, 23], message: /score has axes \[h, d\] but the value has \[h, e\]/ },
  { name: 'future reference q[i + 1]', source: src('term a : causal score dot(q[i + 1], k[j], d) value v', 'output a'), at: [5, 29], message: /future reference: q\[i \+ 1\]/ },
  { name: 'future tap w[K = lag - 1] under window(K)', source: src('term a : window(K) score w[K = lag - 1] value v', 'output a'), at: [5, 28], message: /K = -1 at lag 0 .*reads the future/ },
  { name: 'a bare per-token tensor in a score', source: src('term a : causal score dot(q, k[j], d) value v', 'output a'), at: [5, 27], message: /'q' is per-token: inside a score read it at a position/ },
  { name: 'centered without noncausal', source: src('term a : centered(K) score w[K = 1 - lag] value v', 'output a'), at: [5, 10], message: /centered\(K\) reads positions after i.*noncausal/ },
  { name: 'a term the output does not use', source: src(LIN, 'term b : window(K) score w[K = lag] value v', 'output a'), at: [6, 6], message: /term 'b' is not used in the output/ },
  { name: 'no output', source: src(LIN), at: [1, 1], message: /variant bad has no 'output' declaration/ },
  { name: 'a duplicate declaration', source: src('let q = k'), at: [5, 5], message: /'q' is already declared at line 3/ },
  { name: 'a duplicate input', source: 'variant bad\ninput q[h, d], q[h, d], v[h, e]\n', at: [2, 16], message: /'q' is already declared/ },
  { name: 'wrong arity of dot', source: src('term a : causal score dot(q[i], k[j]) value v', 'output a'), at: [5, 23], message: /dot takes 3 arguments, got 2/ },
  { name: 'wrong arity of exp', source: src('let x = exp(q, k)'), at: [5, 9], message: /exp takes 1 argument, got 2/ },
  { name: 'a lag index under an unbounded mask', source: src('term a : causal score w[K = lag] value v', 'output a'), at: [5, 25], message: /needs a bounded mask/ },
  { name: 'a value read at the query position', source: src('term a : causal score dot(q[i], k[j], d) value v[i]', 'output a'), at: [5, 48], message: /value is read at the key position/ },
  { name: 'a parameter as the value', source: src('term a : causal score dot(q[i], k[j], d) value w', 'output a'), at: [5, 48], message: /value must be a per-token tensor/ },
  { name: 'an unknown term in the output', source: src(LIN, 'output a + bb'), at: [6, 12], message: /unknown term 'bb'/ },
  { name: 'a position outside a score', source: src('let x = q * i'), at: [5, 13], message: /'i' is a position/ },
  { name: 'decay outside a score', source: src('param g[h]', 'let x = decay(g)'), at: [6, 9], message: /decay\(x\) is a factor of a score/ },
];

describe('frontend errors point at the offending text', () => {
  it.each(CASES)('$name', ({ source, at, message }) => {
    const err = compileError(source);
    expect(err.message).toMatch(message);
    expect(err.span, err.message).toBeDefined();
    expect([err.span!.line, err.span!.col], err.message).toEqual(at);
    expect(err.span!.file).toBe('bad.la');
  });

  it('accepts the value written as v[j]', () => {
    expect(() => compileSource(src('term a : causal score dot(q[i], k[j], d) value v[j]', 'output a'))).not.toThrow();
  });
});

describe('formatDiagnostic', () => {
  it('prints file:line:col: message, the line, and a caret over the span', () => {
    const source = src('term a : causal score dot(q[i], k[j], d) * zz value v', 'output a');
    expect(formatDiagnostic(compileError(source), source)).toBe(
      [
        "bad.la:5:44: unknown name 'zz'",
        '  term a : causal score dot(q[i], k[j], d) * zz value v',
        '                                             ^~',
      ].join('\n'),
    );
  });

  it('underlines a whole expression when the error is about all of it', () => {
    const source = src('term a : causal score q[i] * k[j] value v', 'output a');
    const lines = formatDiagnostic(compileError(source), source).split('\n');
    expect(lines[2]).toBe(`  ${' '.repeat(22)}^${'~'.repeat(10)}`);
  });

  it('adds the expected tokens to a syntax error', () => {
    const source = src('term a : causal score dot(q[i], k[j], d)', 'output a');
    const text = formatDiagnostic(compileError(source), source);
    expect(text.split('\n').slice(0, 3)).toEqual(["bad.la:6:1: syntax error: unexpected 'output'", '  output a', '  ^~~~~~']);
    expect(text.split('\n')[3]).toMatch(/^ {2}expected: .*"value"/);
  });

  it('keeps tabs so that the caret lines up, and marks the end of input', () => {
    const tabbed = 'variant t\ninput v[h]\n\tlet x = v +\n';
    const text = formatDiagnostic(compileError(tabbed), tabbed);
    expect(text.split('\n')[0]).toBe('bad.la:4:1: syntax error: unexpected end of input');
    const withTab = 'variant t\ninput v[h]\n\tlet x = vv\n\tterm a : causal score 1 value v\n\toutput a\n';
    const lines = formatDiagnostic(compileError(withTab), withTab).split('\n');
    expect(lines[1]).toBe('  \tlet x = vv');
    expect(lines[2]).toBe('  \t        ^~');
  });

  it('prints an error without a span as its message alone', () => {
    expect(formatDiagnostic(new SourceError('no place', undefined), '')).toBe('no place');
  });
});
