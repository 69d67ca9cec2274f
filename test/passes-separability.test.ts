// passes/separability.ts, FileCheck style: IR text (or a small DSL snippet) in, the printed terms out. Separable
// scores become prefix terms (cos of the lag splits in two), lag-only scores in a window become Toeplitz, bounded
// non-separable ones quadratic, and an unbounded non-separable causal term is rejected with the reason and a fix.
import { describe, expect, it } from 'vitest';
import { runPasses } from '../passes/pipeline.ts';
import { separability } from '../passes/separability.ts';
import { simplify } from '../passes/simplify.ts';
import { compileSource } from '../src/frontend/compile.ts';
import { printProgram, printTerm } from '../src/ir/print.ts';
import { readProgram } from '../src/ir/read.ts';
import { SourceError } from '../src/ir/span.ts';
import { decayNode } from '../src/ir/terms.ts';
import type { Program } from '../src/ir/types.ts';
import { VARIANT_FILES } from './helpers/variants.ts';
import { loadVariant } from '../src/io/variant-file.ts';

const fromIr = (ir: string): Program => separability(readProgram(ir, 'sep.ir'));

/** A variant over q, k, v [h, d] (and w [h, K], K = 4) with the given term and output lines, through the pipeline. */
function pipeline(...lines: string[]): Program {
  const src = ['variant snippet', 'size K = 4', 'input q[h, d], k[h, d], v[h, d], a[h, d]', 'param w[h, K], gamma[h]', ...lines].join('\n');
  return runPasses(compileSource(src, 'snippet.la'));
}

/** The term lines and the output line of a program, each node reference spelled out as its op (one level). */
function termsOf(p: Program): string[] {
  const lines = p.terms.map(printTerm);
  const out = printProgram(p).split('\n').find((l) => l.startsWith('output '))!;
  return [...lines, out];
}

/** A node and its operands written as an expression tree: `mul(at.i(relu(input q)), cos(…))`. */
function expr(p: Program, id: number): string {
  const n = p.nodes[id];
  switch (n.op) {
    case 'input':
    case 'param': return `${n.op} ${n.name}`;
    case 'const': return String(n.value);
    case 'position': return n.which;
    case 'unary': return `${n.fn}(${expr(p, n.x)})`;
    case 'binary': return `${n.fn}(${expr(p, n.a)}, ${expr(p, n.b)})`;
    case 'sum':
    case 'norm':
    case 'softmax': return `${n.op}(${expr(p, n.x)}, ${n.axis})`;
    case 'at': return `${expr(p, n.x)}[${n.which}]`;
    case 'select': return `${expr(p, n.x)}[${n.axis} = ${expr(p, n.index)}]`;
    case 'decay': return `decay(${expr(p, n.x)})`;
    default: return `<${n.op}>`;
  }
}

function prefixParts(p: Program, term: string): { phi: string; psi: string; feature: string | null; decay: string | null } {
  const t = p.terms.find((x) => x.name === term)!;
  if (t.form.kind !== 'prefix') throw new Error(`term ${term} is ${t.form.kind}, not prefix`);
  const f = t.form;
  return { phi: expr(p, f.phi), psi: expr(p, f.psi), feature: f.feature, decay: f.decay && `${f.decay.kind} ${expr(p, decayNode(f.decay))}` };
}

function rejection(run: () => unknown): SourceError {
  try {
    run();
  } catch (e) {
    if (e instanceof SourceError) return e;
    throw e;
  }
  throw new Error('expected the pass to reject the term');
}

describe('separability on IR text', () => {
  it('a dot product of query and key features under causal becomes a prefix term over the feature axis', () => {
    const p = fromIr(`variant lin
%q = input q[h, d]
%k = input k[h, d]
%v = input v[h, e]
%fq = elu %q
%fk = elu %k
%qi = at.i %fq
%kj = at.j %fk
%s = mul %qi %kj
%dot = sum %s over d
term lin : causal score %dot value %v
output normalize(lin, 1e-6)
`);
    // φ = 1·fq[i] and ψ = 1·fk[j] are new nodes %9..%11; the score is rebuilt from them so that the parallel
    // form of the program after the pass still means the same (simplify then drops the ·1).
    expect(printProgram(p).trimEnd().split('\n').slice(-7)).toEqual([
      '%9 = const 1  : const[]',
      '%10 = mul %9 %5  : query[h, d]',
      '%11 = mul %9 %6  : key[h, d]',
      '%12 = mul %10 %11  : pair[h, d]',
      '%13 = sum %12 over d  : pair[h]',
      'term lin : causal score %13 value %2 form prefix phi %10 psi %11 feature d',
      'output normalize(lin, 0.000001)  : [h, e]',
    ]);
    expect(printProgram(simplify(p))).toContain('term lin : causal score %8 value %2 form prefix phi %5 psi %6 feature d\n');
  });

  it('a lag-only score under window(K) becomes a Toeplitz term over lags 0..K−1 (no new nodes)', () => {
    expect(printProgram(fromIr(`variant conv
axis K size 4
%v = input v[h]
%w = param w[h, K]
%i = position i
%j = position j
%lag = sub %i %j
%s = select %w K = %lag
term conv : window(K) score %s value %v
output conv
`))).toBe(`variant conv
axis K size 4
axis h free
%0 = input v[h]  : token[h]
%1 = param w[h, K]  : param[h, K]
%2 = position i  : query[]
%3 = position j  : key[]
%4 = sub %2 %3  : pair[]
%5 = select %1 K = %4  : pair[h]
term conv : window(4) score %5 value %0 form toeplitz lags 0..3
output conv  : [h]
`);
  });

  it('a non-separable score under group(C) becomes quadratic', () => {
    const p = fromIr(`variant local
%q = input q[h, d]
%k = input k[h, d]
%v = input v[h, e]
%qi = at.i %q
%kj = at.j %k
%s = mul %qi %kj
%dot = sum %s over d
%r = relu %dot
term local : group(8) score %r value %v
output local
`);
    expect(termsOf(p)).toEqual(['term local : group(8) score %7 value %2 form quadratic', 'output local  : [h, e]']);
  });

  it('an unbounded, non-separable causal term is rejected at the term, naming the offending node and the fix', () => {
    const ir = `variant softmaxish
%q = input q[h, d]
%k = input k[h, d]
%v = input v[h, e]
%qi = at.i %q
%kj = at.j %k
%s = mul %qi %kj
%dot = sum %s over d
%e = exp %dot
term attn : causal score %e value %v
output normalize(attn, 1e-6)
`;
    const e = rejection(() => fromIr(ir));
    expect(e.message).toBe(
      'term attn is not a prefix sum: exp(…) of an argument that is not a sum of a query part and a key part (at 9:6). ' +
        'Under the unbounded mask causal that would be quadratic (softmax-style) attention. ' +
        'Write the score as dot(φ(q)[i], ψ(k)[j], axis) (times decay(…) or cos/sin of the lag), or bound the mask with window(K) or group(C); ' +
        'softmax attention itself is allowed as a causal score exp(…) alone in normalize(attn, 0).',
    );
    expect(e.span).toMatchObject({ file: 'sep.ir', line: 10, col: 1 });
    // the same score under a window is legal, and quadratic
    expect(termsOf(fromIr(ir.replace('term attn : causal', 'term attn : window(16)')))[0]).toBe('term attn : window(16) score %7 value %2 form quadratic');
    // alone in normalize(·, 0) it is softmax attention: the logit is the exp's argument
    expect(termsOf(fromIr(ir.replace('1e-6', '0')))[0]).toBe('term attn : causal score %7 value %2 form softmax logit %6');
  });

  it('softmax attention needs its term alone in normalize(·, 0): a second term in the item is rejected', () => {
    const ir = `variant two
%q = input q[h, d]
%k = input k[h, d]
%v = input v[h, e]
%qi = at.i %q
%kj = at.j %k
%s = mul %qi %kj
%dot = sum %s over d
%e = exp %dot
term a : causal score %e value %v
term b : causal score %dot value %v
output normalize(a + b, 0)
`;
    expect(rejection(() => fromIr(ir)).message).toMatch(/^term a is not a prefix sum: .*softmax attention itself is allowed as a causal score exp\(…\) alone in normalize\(a, 0\)\.$/);
  });

  it('a term already classified is left as it is', () => {
    const ir = `variant done
%v = input v[h]
%i = position i
%j = position j
%lag = sub %i %j
%c = cos %lag
term t : window(3) score %c value %v form quadratic
output t
`;
    expect(printProgram(fromIr(ir))).toBe(printProgram(readProgram(ir)));
  });
});

describe('separability through the pipeline (DSL snippets)', () => {
  it('cos(π(i − j)/2M) splits one term into two prefix terms, lin and lin.1, both inside the normalisation', () => {
    const p = pipeline(
      'size M = 4',
      'let fq = relu(q)',
      'let fk = relu(k)',
      'term lin : causal score dot(fq[i], fk[j], d) * cos(pi * (i - j) / (2 * M)) value v',
      'output normalize(lin, 1e-6)',
    );
    expect(p.terms.map((t) => [t.name, t.form.kind])).toEqual([['lin', 'prefix'], ['lin.1', 'prefix']]);
    expect(termsOf(p).at(-1)).toBe('output normalize(lin + lin.1, 0.000001)  : [h, d]');
    // cos(a + b) = cos a cos b − sin a sin b with a = iπ/8, b = −jπ/8
    const pi = String(Math.PI);
    expect(prefixParts(p, 'lin')).toEqual({
      phi: `mul(relu(input q)[i], cos(div(mul(i, ${pi}), 8)))`,
      psi: `mul(relu(input k)[j], cos(div(mul(neg(j), ${pi}), 8)))`,
      feature: 'd',
      decay: null,
    });
    expect(prefixParts(p, 'lin.1')).toEqual({
      phi: `neg(mul(relu(input q)[i], sin(div(mul(i, ${pi}), 8))))`,
      psi: `mul(relu(input k)[j], sin(div(mul(neg(j), ${pi}), 8)))`,
      feature: 'd',
      decay: null,
    });
  });

  it('a per-feature gate becomes a gated prefix term; a parameter γ a constant decay', () => {
    const gla = pipeline('term g : causal score sum(q[i] * decay(a) * k[j], d) value v', 'output g');
    expect(prefixParts(gla, 'g')).toEqual({ phi: 'input q[i]', psi: 'input k[j]', feature: 'd', decay: 'gate input a' });
    const ret = pipeline('term r : causal score dot(q[i], k[j], d) * decay(gamma) value v', 'output r');
    expect(prefixParts(ret, 'r')).toEqual({ phi: 'input q[i]', psi: 'input k[j]', feature: 'd', decay: 'constant param gamma' });
  });

  it('the lag-indexed convolution becomes Toeplitz beside a prefix term; a group term quadratic beside a past_groups prefix term', () => {
    const aug = pipeline('term lin : causal score dot(q[i], k[j], d) value v', 'term conv : window(K) score w[K = lag] value v', 'output lin + conv');
    expect(aug.terms.map((t) => `${t.name}: ${t.form.kind === 'toeplitz' ? `toeplitz ${t.form.lags.join('..')}` : t.form.kind}`)).toEqual(['lin: prefix', 'conv: toeplitz 0..3']);
    const flash = pipeline('term local : group(K) score relu(dot(q[i], k[j], d)) ** 2 value v', 'term global : past_groups(K) score dot(q[i], k[j], d) value v', 'output local + global');
    expect(termsOf(flash).map((l) => l.replace(/score %\d+ value %\d+ /, ''))).toEqual([
      'term local : group(4) form quadratic',
      'term global : past_groups(4) form prefix phi %6 psi %7 feature d',
      'output local + global  : [h, d]',
    ]);
  });

  it('rejects a decay under past_groups, and a non-separable causal term, from the DSL with the source position', () => {
    const decayed = rejection(() => pipeline('term g : past_groups(K) score dot(q[i], k[j], d) * decay(gamma) value v', 'output g'));
    expect(decayed.message).toBe('term g: a decay needs the causal mask (not past_groups)');
    expect(decayed.span).toMatchObject({ file: 'snippet.la', line: 5, col: 6 }); // the term's name
    const relu = rejection(() => pipeline('term s : causal score relu(dot(q[i], k[j], d)) value v', 'output s'));
    expect(relu.message).toMatch(/^term s is not a prefix sum: relu\(…\) of a score \(at 5:23\)\. Under the unbounded mask causal that would be quadratic/);
  });

  it('leaves no general term in any example variant', () => {
    for (const file of VARIANT_FILES) {
      const p = runPasses(loadVariant(file));
      expect(p.terms.filter((t) => t.form.kind === 'general').map((t) => `${file}: ${t.name}`)).toEqual([]);
    }
  });
});
