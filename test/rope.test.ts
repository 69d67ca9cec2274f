// rope(…) as an IR op: its text round-trips (scaling and the inverse rotation included), the frontend and the
// shape binder refuse what it cannot rotate, and llama3 scaling keeps, divides or blends each frequency by its
// wavelength as Hugging Face's rule says.
import { describe, expect, it } from 'vitest';
import { compileSource } from '../src/frontend/compile.ts';
import { ropeInvFreq } from '../src/ir/rope.ts';
import { printProgram } from '../src/ir/print.ts';
import { readProgram } from '../src/ir/read.ts';
import { bindShapes } from '../src/ir/shapes.ts';

const HEAD = 'variant r\ninput q[h, d], k[h, d], v[h, e]\n';
const TAIL = 'term a : causal score dot(qr[i], kr[j], d) value v\noutput a';

describe('rope(…)', () => {
  it('prints and reads back with its θ, its scaling and the inverse rotation', () => {
    const p = compileSource(`${HEAD}let qr = rope(q, d, 500000, llama3(8, 1, 4, 8192))\nlet kr = rope(k, d, 10000, linear(2.5))\n${TAIL}`, 'r.la');
    const text = printProgram(p);
    expect(text).toContain('rope %0 over d theta 500000 llama3 8 1 4 8192  : token[h, d]');
    expect(text).toContain('rope %1 over d theta 10000 linear 2.5  : token[h, d]');
    expect(printProgram(readProgram(text))).toBe(text);
    const inverse = text.replace('linear 2.5', 'linear 2.5 inverse');
    expect(readProgram(inverse).nodes.find((n) => n.op === 'rope' && n.sign === -1)).toBeDefined();
  });

  it('is refused on an odd axis, on a value read at a position, with an unknown scaling, with θ ≤ 1', () => {
    expect(() => compileSource(`variant r\nsize d = 5\ninput q[h, d], k[h, d], v[h, e]\nlet qr = rope(q, d)\nlet kr = rope(k, d)\n${TAIL}`, 'r.la')).toThrow(/axis 'd' must have an even size, it is 5/);
    expect(() => compileSource(`${HEAD}let kr = k\nterm a : causal score dot(rope(q[i], d), kr[j], d) value v\noutput a`, 'r.la')).toThrow(/rope rotates a per-token tensor by its own position/);
    expect(() => compileSource(`${HEAD}let qr = rope(q, d, 10000, yarn(4))\nlet kr = k\n${TAIL}`, 'r.la')).toThrow(/rope scaling is linear\(FACTOR\) or llama3/);
    expect(() => compileSource(`${HEAD}let qr = rope(q, d, 1)\nlet kr = k\n${TAIL}`, 'r.la')).toThrow(/theta must be a number > 1, got 1/);
  });

  it('needs an even size of a free axis, checked when the shapes are bound', () => {
    const p = compileSource(`${HEAD}let qr = rope(q, d)\nlet kr = rope(k, d)\n${TAIL}`, 'r.la');
    expect(() => bindShapes(p, { q: [1, 2, 2, 3], k: [1, 2, 2, 3], v: [1, 2, 2, 4] })).toThrow(/rope\(…\) rotates pairs \(f, f \+ d\/2\): axis d needs an even size, got 3/);
  });

  it('llama3 keeps high frequencies, divides low ones by the factor and blends the rest between the two', () => {
    const L = 64;
    const plain = ropeInvFreq(16, { theta: 10000, scaling: { kind: 'none' } });
    const scaled = ropeInvFreq(16, { theta: 10000, scaling: { kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: L } });
    const kinds = new Set<string>();
    plain.forEach((w, f) => {
      const wavelen = (2 * Math.PI) / w;
      if (wavelen < L / 4) (kinds.add('kept'), expect(scaled[f]).toBe(w));
      else if (wavelen > L) (kinds.add('divided'), expect(scaled[f]).toBeCloseTo(w / 8, 15));
      else (kinds.add('blended'), expect(scaled[f]).toBeGreaterThanOrEqual(w / 8), expect(scaled[f]).toBeLessThanOrEqual(w));
    });
    expect([...kinds].sort()).toEqual(['blended', 'divided', 'kept']);
    expect(ropeInvFreq(16, { theta: 10000, scaling: { kind: 'linear', factor: 4 } }).map((w, f) => w * 4 - plain[f]).every((x) => Math.abs(x) < 1e-15)).toBe(true);
  });
});
