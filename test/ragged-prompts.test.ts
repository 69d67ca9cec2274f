// A batch of prompts of different lengths (src/model/ragged-prompts.ts) against its definition: the common part at
// step 0, a sequence fed its own prompt's next token while inside it and its last pick after, its token g picked at
// step offset + g with draw g·b + s.
import { describe, expect, it } from 'vitest';
import { batchDraws, commonPrompts, picksNewToken, raggedDraws, raggedPlan, stepInput } from '../src/model/ragged-prompts.ts';

describe('ragged prompts', () => {
  const prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9, 10, 11, 12]];
  const plan = raggedPlan(prompts);

  it('prefills the common length, then forces each longer prompt token by token', () => {
    expect(plan).toEqual({ common: 3, offsets: [0, 2, 1], extra: 2 });
    expect(commonPrompts(prompts, plan)).toEqual([[1, 2, 3], [4, 5, 6], [9, 10, 11]]);
    // Step 1: sequence 0 feeds its pick, 1 and 2 their 4th prompt token; step 2: 1 its 5th, 2 its pick.
    expect([0, 1, 2].map((s) => stepInput(prompts, plan, 1, s, 100 + s))).toEqual([100, 7, 12]);
    expect([0, 1, 2].map((s) => stepInput(prompts, plan, 2, s, 200 + s))).toEqual([200, 8, 202]);
    // Every sequence's prompt goes in whole, in order, and then its picks: step k's input is token common + k − 1.
    for (const [s, p] of prompts.entries()) {
      const fed = [...commonPrompts(prompts, plan)[s]];
      for (let k = 1; k <= plan.extra + 2; k++) fed.push(stepInput(prompts, plan, k, s, -k));
      expect(fed.slice(0, p.length)).toEqual(p);
      expect(fed.slice(p.length)).toEqual(Array.from({ length: fed.length - p.length }, (_, i) => -(p.length - plan.common + 1 + i)));
    }
    expect([0, 1, 2].map((s) => [0, 1, 2, 3].filter((k) => picksNewToken(plan, k, s)))).toEqual([[0, 1, 2, 3], [2, 3], [1, 2, 3]]);
  });

  it('gives token g of sequence s draw g·b + s of the stream, whichever step picks it; discarded picks 0.5', () => {
    let n = 0;
    const draw = batchDraws(() => n++, 3);
    expect([draw(1, 2), draw(0, 0), draw(2, 1)]).toEqual([5, 0, 7]);
    const byStep = raggedDraws(plan, (g, s) => 10 * g + s);
    // b draws a step, sequence 0 first, steps 0 … 3.
    const got = Array.from({ length: 12 }, () => byStep());
    expect(got).toEqual([0, 0.5, 0.5, 10, 0.5, 2, 20, 1, 12, 30, 11, 22]);
  });

  it('refuses no prompts and an empty one', () => {
    expect(() => raggedPlan([])).toThrow(/no prompts/);
    expect(() => raggedPlan([[1], []])).toThrow(/prompt 1 is empty/);
  });
});
