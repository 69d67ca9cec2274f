// The uniforms of batch speculation's prompts (src/speculative/prompt-draws.ts): the first B prompts in plain batched
// sampling's order (token g of sequence s is draw g·B + s of the seed's stream, computed here from the stream itself);
// a later prompt (a continuous batch's refill) a stream of its own, the same whatever order the draws are asked in.
import { describe, expect, it } from 'vitest';
import { PromptDraws } from '../src/speculative/prompt-draws.ts';
import { rng } from '../src/tensor.ts';

describe('PromptDraws', () => {
  it('draws the first B prompts in plain batched order: token g of prompt s is draw g·B + s', () => {
    const B = 3;
    const stream = rng(42);
    const plain = Array.from({ length: 5 * B }, () => stream());
    const d = new PromptDraws(42, B);
    // Asked out of order: the later tokens first.
    for (let g = 4; g >= 0; g--) for (let s = B - 1; s >= 0; s--) expect(d.draw(s, g)).toBe(plain[g * B + s]);
  });

  it("gives a refill prompt a stream of its own: the same in any order of asking, apart from the others'", () => {
    const a = new PromptDraws(7, 2);
    const b = new PromptDraws(7, 2);
    const asked = [[5, 3], [2, 0], [5, 0], [9, 2], [2, 4], [0, 1], [9, 0], [5, 1]];
    const fromA = asked.map(([r, g]) => a.draw(r, g));
    const fromB = [...asked].reverse().map(([r, g]) => b.draw(r, g)).reverse();
    expect(fromB).toEqual(fromA);
    const row = (d: PromptDraws, r: number) => Array.from({ length: 6 }, (_, g) => d.draw(r, g));
    expect(row(a, 2)).not.toEqual(row(a, 5));
    expect(row(a, 2)).not.toEqual(row(a, 0));
    expect(row(a, 2)).not.toEqual(row(new PromptDraws(8, 2), 2));
    for (const x of [...row(a, 2), ...row(a, 9)]) expect(x >= 0 && x < 1).toBe(true);
  });

  it('refuses a bad batch, prompt or token', () => {
    expect(() => new PromptDraws(0, 0)).toThrow(/batch must be a positive integer, got 0/);
    expect(() => new PromptDraws(0, 2).draw(-1, 0)).toThrow(/prompt -1, token 0/);
    expect(() => new PromptDraws(0, 2).draw(0, 1.5)).toThrow(/prompt 0, token 1.5/);
  });
});
