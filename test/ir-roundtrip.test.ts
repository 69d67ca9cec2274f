// The IR printer's text reads back (src/ir/read.ts): for every example variant, before and after every pass,
// print(read(print(p))) is print(p) and the program read is the same graph; malformed IR text is rejected at
// its line:col; and hand-written IR (named values, no annotations) is accepted, so tests can state IR as text.
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PASSES, runPasses } from '../passes/pipeline.ts';
import { separability } from '../passes/separability.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { formatDiagnostic } from '../src/frontend/diagnostics.ts';
import { printProgram } from '../src/ir/print.ts';
import { readProgram } from '../src/ir/read.ts';
import { SourceError } from '../src/ir/span.ts';
import type { Program } from '../src/ir/types.ts';

function laFiles(dir: string): string[] {
  return readdirSync(dir)
    .sort()
    .flatMap((f) => {
      const path = join(dir, f);
      return statSync(path).isDirectory() ? laFiles(path) : f.endsWith('.la') ? [path] : [];
    });
}

const EXAMPLES = laFiles('examples');

/** The program without source spans (which the text does not carry) and without the file name. */
function shape(p: Program): unknown {
  const strip = <T extends object>(x: T) => {
    const { span: _span, ...rest } = x as T & { span?: unknown };
    return rest;
  };
  return {
    name: p.name,
    sizes: p.sizes,
    axes: p.axes,
    inputs: p.inputs.map(strip),
    params: p.params.map(strip),
    nodes: p.nodes.map(strip),
    lets: p.lets,
    terms: p.terms.map(strip),
    output: p.output,
    outAxes: p.outAxes,
  };
}

function readError(text: string): SourceError {
  try {
    readProgram(text, 'bad.ir');
  } catch (e) {
    if (e instanceof SourceError) return e;
    throw e;
  }
  throw new Error('expected a SourceError, but the IR text was read');
}

describe('print(read(print(p))) = print(p)', () => {
  it('finds the example variants', () => {
    expect(EXAMPLES.length).toBeGreaterThanOrEqual(17);
  });

  for (const file of EXAMPLES) {
    it(`${file}: as written and after each of ${PASSES.map((p) => p.name).join(', ')}`, () => {
      const stages: [string, Program][] = [['frontend', loadVariant(file)]];
      runPasses(stages[0][1], (name, p) => stages.push([name, p]));
      expect(stages.map(([n]) => n)).toEqual(['frontend', ...PASSES.map((p) => p.name)]);
      for (const [stage, p] of stages) {
        const text = printProgram(p);
        const back = readProgram(text, `${file}.${stage}.ir`);
        expect(printProgram(back), `${file} after ${stage}`).toBe(text);
        expect(shape(back), `${file} after ${stage}`).toEqual(shape(p));
      }
    });
  }

  it('the passes give the same IR on a program read back from text as on the original', () => {
    for (const file of EXAMPLES) {
      const source = loadVariant(file);
      const back = readProgram(printProgram(source), `${file}.ir`);
      expect(printProgram(runPasses(back)), file).toBe(printProgram(runPasses(source)));
    }
  });
});

// Lines 1–6 of every error case; the case's own lines start at line 7.
const HEADER = ['variant bad', 'axis h free', 'axis d free', '%0 = input q[h, d]  : token[h, d]', '%1 = input v[h, d]  : token[h, d]', '%2 = at.i %0  : query[h, d]'];
const ir = (...lines: string[]) => [...HEADER, ...lines].join('\n') + '\n';
const OK_TAIL = ['%3 = at.j %0  : key[h, d]', '%4 = mul %2 %3  : pair[h, d]', 'term a : causal score %4 value %1 form general', 'output a  : [h, d]'];

describe('malformed IR text is rejected at its line:col', () => {
  it('the header and its tail read as a valid program', () => {
    expect(readProgram(ir(...OK_TAIL)).terms.map((t) => t.name)).toEqual(['a']);
  });

  const CASES: { name: string; text: string; at: [number, number]; message: RegExp }[] = [
    { name: 'a program that does not start with variant', text: 'axis h free\n', at: [1, 1], message: /starts with `variant NAME`/ },
    { name: 'an unknown op', text: ir('%3 = frobnicate %2'), at: [7, 6], message: /unknown op 'frobnicate'/ },
    { name: 'a value used before it is defined', text: ir('%3 = exp %9'), at: [7, 10], message: /%9 is not defined before this line/ },
    { name: 'a value defined twice', text: ir('%2 = exp %0'), at: [7, 1], message: /%2 is already defined/ },
    { name: 'a stray character', text: ir('%3 = exp %2 $'), at: [7, 13], message: /unexpected character '\$'/ },
    { name: 'trailing tokens', text: ir('%3 = exp %2 %1'), at: [7, 13], message: /unexpected '%1'/ },
    { name: 'an annotation that disagrees with inference', text: ir('%3 = exp %2  : key[h, d]'), at: [7, 16], message: /%3 is annotated key\[h, d\] but its op gives query\[h, d\]/ },
    { name: 'a builder type error (sum over an axis the operand lacks)', text: ir('%3 = sum %2 over e'), at: [7, 6], message: /sum over axis 'e', but the operand has axes \[h, d\]/ },
    { name: 'a per-token value mixed with a position read', text: ir('%3 = mul %0 %2'), at: [7, 6], message: /cannot combine a per-token tensor/ },
    { name: 'an unknown mask', text: ir('term a : causl score %2 value %1'), at: [7, 10], message: /unknown mask 'causl'/ },
    { name: 'an unknown form', text: ir('term a : causal score %2 value %1 form fancy'), at: [7, 40], message: /unknown form 'fancy'/ },
    { name: 'an output naming an unknown term', text: ir(...OK_TAIL.slice(0, 3), 'output b'), at: [10, 8], message: /unknown term 'b' \(terms: a\)/ },
    { name: 'no output line', text: ir(...OK_TAIL.slice(0, 3)), at: [10, 1], message: /has no `output` line/ },
    {
      name: 'a term whose value is not per-token (from the verifier, at the term)',
      text: ir('%3 = at.j %0', '%4 = mul %2 %3', 'term a : causal score %4 value %3', 'output a'),
      at: [9, 1],
      message: /term a's value %3 is key-side, not per-token/,
    },
    {
      name: 'a prefix form under a window mask (from the verifier)',
      text: ir('%3 = at.j %0', '%4 = mul %2 %3', '%5 = sum %4 over d', 'term a : window(4) score %5 value %1 form prefix phi %2 psi %3 feature d', 'output a'),
      at: [10, 1],
      message: /prefix term a must have a causal or past_groups mask/,
    },
  ];

  for (const c of CASES) {
    it(c.name, () => {
      const e = readError(c.text);
      expect(e.message).toMatch(c.message);
      expect([e.span?.line, e.span?.col], e.message).toEqual(c.at);
      expect(e.span?.file).toBe('bad.ir');
    });
  }

  it('renders as the CLI prints it: file:line:col, the line and a caret', () => {
    const text = ir('%3 = exp %9');
    expect(formatDiagnostic(readError(text), text)).toBe(['bad.ir:7:10: %9 is not defined before this line', '  %3 = exp %9', '           ^~'].join('\n'));
  });
});

describe('hand-written IR', () => {
  const COSFORMER = `// relu(q)ᵀ relu(k) · cos(π(i − j)/2M), M = 4, written by hand
variant cos_by_hand
%q = input q[h, d]
%k = input k[h, d]
%v = input v[h, e]
%fq = relu %q
%fk = relu %k
%qi = at.i %fq
%kj = at.j %fk
%s = mul %qi %kj
%dot = sum %s over d
%i = position i
%j = position j
%lag = sub %i %j
%pi = const 3.141592653589793
%c = const 8
%x = mul %lag %pi
%y = div %x %c
%cos = cos %y
%score = mul %dot %cos
term lin : causal score %score value %v
output normalize(lin, 1e-6)
`;

  it('takes named values, no type annotations, implicit free axes, and no form (general)', () => {
    const p = readProgram(COSFORMER, 'cos.ir');
    expect(p.name).toBe('cos_by_hand');
    expect(p.axes).toEqual({ h: { kind: 'free' }, d: { kind: 'free' }, e: { kind: 'free' } });
    expect(p.inputs.map((d) => [d.name, d.axes])).toEqual([['q', ['h', 'd']], ['k', ['h', 'd']], ['v', ['h', 'e']]]);
    expect(p.outAxes).toEqual(['h', 'e']);
    expect(p.terms[0].form).toEqual({ kind: 'general' });
    expect(printProgram(p)).toContain('%17 = mul %8 %16  : pair[h]\nterm lin : causal score %17 value %2 form general\noutput normalize(lin, 0.000001)  : [h, e]\n');
    // the canonical text it prints reads back to itself
    expect(printProgram(readProgram(printProgram(p)))).toBe(printProgram(p));
  });

  it('nodes and terms carry spans into the IR text, so a pass error points at the IR line', () => {
    const text = COSFORMER.replace('%score = mul %dot %cos', '%score = exp %dot');
    const p = readProgram(text, 'cos.ir');
    expect(p.nodes[p.terms[0].score].span).toMatchObject({ file: 'cos.ir', line: 20, col: 10 });
    let err: unknown;
    try {
      separability(p);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SourceError);
    expect((err as SourceError).message).toMatch(/term lin is not a prefix sum: exp\(…\) of an argument that is not a sum of a query part and a key part \(at 20:10\)/);
    expect((err as SourceError).span).toMatchObject({ file: 'cos.ir', line: 21, col: 1 });
  });

  it('mask sizes may name a size axis; concat and outer define their axes when no axis line does', () => {
    const p = readProgram(
      [
        'variant sized',
        'axis K size 3',
        '%v = input v[h]',
        '%w = param w[h, K]',
        '%a = concat %v %v along (1, 1) as f',
        '%o = outer %v over h as hh',
        '%lag = sub %i %j',
        'term conv : window(K) score %s value %v',
        'output conv',
      ]
        .join('\n')
        .replace('%lag = sub %i %j', '%i = position i\n%j = position j\n%lag = sub %i %j\n%s = select %w K = %lag'),
    );
    expect(p.terms[0].mask).toEqual([{ kind: 'window', size: 3 }]);
    expect(p.sizes).toEqual({ K: 3 });
    expect(p.axes.f).toEqual({ kind: 'concat', parts: [null, null] });
    expect(p.axes.hh).toEqual({ kind: 'outer', of: 'h' });
  });
});
