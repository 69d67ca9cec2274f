// What a batch's auto credits a decision with (src/speculative/batch-credit.ts), checked on simulated batches against
// the definitions: a plain step is credited its tokens under every credit; makespan's step credit is the live count
// times what the step took off the longest budget; the potential of all b budgets (without EOS) credits exactly the
// tokens emitted; and over a run every credit adds up to its potential at the start, whichever steps took it.
import { describe, expect, it } from 'vitest';
import { budgetPotential, followedBudgets, potentialCredit } from '../src/speculative/batch-credit.ts';
import { rng } from '../src/tensor.ts';

/** A batch run: each step every live sequence emits 1–4 tokens (at most its budget); some end early (EOS) when asked. */
function simulate(seed: number, b: number, maxTokens: number, eos: boolean) {
  const r = rng(seed);
  const budgets = Array.from({ length: b }, () => maxTokens);
  const ended = budgets.map(() => false);
  const steps: { before: number[]; after: number[]; emitted: number; live: number }[] = [];
  while (ended.some((e) => !e)) {
    const before = budgets.map((x, s) => (ended[s] ? 0 : x));
    let emitted = 0;
    const live = ended.filter((e) => !e).length;
    for (let s = 0; s < b; s++) {
      if (ended[s]) continue;
      const n = Math.min(budgets[s], 1 + Math.floor(r() * 4 * r()));
      budgets[s] -= n;
      emitted += n;
      if (budgets[s] === 0 || (eos && r() < 0.02)) ended[s] = true;
    }
    steps.push({ before, after: budgets.map((x, s) => (ended[s] ? 0 : x)), emitted, live });
  }
  return steps;
}

describe('batch credit', () => {
  it('follows one budget (makespan), the slower half or none (tokens)', () => {
    expect([1, 2, 7, 8].map((b) => followedBudgets('makespan', b))).toEqual([1, 1, 1, 1]);
    expect([1, 2, 7, 8].map((b) => followedBudgets('slower-half', b))).toEqual([1, 1, 4, 4]);
    expect(followedBudgets('tokens', 8)).toBeUndefined();
    expect(() => followedBudgets('makespan', 0)).toThrow(/a batch of 0 sequences/);
    expect(() => budgetPotential([3, 1], 3)).toThrow(/the 3 largest of 2 budgets/);
    expect(budgetPotential([3, 9, 0, 5], 2)).toBe(7);
  });

  it('a plain step (every live budget less one, none ending) is credited its tokens under every potential', () => {
    const budgets = [12, 7, 0, 30, 30, 5, 0, 9];
    const after = budgets.map((x) => (x > 0 ? x - 1 : 0));
    const live = budgets.filter((x) => x > 0).length;
    for (let m = 1; m <= budgets.length; m++) {
      // With fewer live budgets than m the potential's mean takes the ended ones' zeros: max(live, m) keeps the scale.
      expect(potentialCredit(budgetPotential(budgets, m), budgetPotential(after, m), live, m), `m ${m}`).toBeCloseTo(live, 12);
    }
  });

  it('over simulated runs: makespan is the live count times the longest budget\'s fall, all b budgets are the tokens, every credit adds up to its start', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const b = 2 + (seed % 7);
      const eos = seed % 2 === 0;
      const steps = simulate(seed, b, 40, eos);
      for (const m of [1, Math.ceil(b / 2), b]) {
        let total = 0;
        for (const st of steps) {
          const credit = potentialCredit(budgetPotential(st.before, m), budgetPotential(st.after, m), st.live, m);
          if (m === 1) expect(credit).toBeCloseTo(st.live * (Math.max(...st.before) - Math.max(...st.after)), 12);
          if (m === b && !eos) expect(credit).toBeCloseTo(st.emitted, 9);
          expect(credit, 'never negative').toBeGreaterThanOrEqual(-1e-9);
          total += credit / Math.max(st.live, m);
        }
        // Σ (Φ before − Φ after) telescopes to Φ at the start: the mean of the m largest budgets, all 40.
        expect(total, `seed ${seed}, b ${b}, m ${m}`).toBeCloseTo(40, 9);
      }
    }
  });
});
