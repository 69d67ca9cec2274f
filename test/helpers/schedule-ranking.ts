// The ranking checks a sweep of one kernel's schedules holds the cost model to (test/model-d128-schedules.test.ts,
// test/model-around-picks.test.ts): for every pair measured over 10 % apart, the faster one has the lower estimate —
// except the pairs listed as known misranks, checked with it.fails so that a model which ranks one of them right
// fails until it is taken off the list.
import { expect, it } from 'vitest';

export interface RankedPair<E> {
  readonly key: string;
  readonly fast: E & { readonly estMs: number };
  readonly slow: E & { readonly estMs: number };
}

export function checkRanking<E>(pairs: readonly RankedPair<E>[], knownMisranked: readonly string[], fmt: (x: RankedPair<E>['fast']) => string): void {
  it.each(pairs.filter((q) => !knownMisranked.includes(q.key)).map((q) => [q.key, q] as const))('%s: the schedule measured faster has the lower estimate', (_, q) => {
    expect(q.fast.estMs, `${fmt(q.fast)}; ${fmt(q.slow)}`).toBeLessThan(q.slow.estMs);
  });

  it('lists only pairs of the file over 10 % apart as misranked', () => {
    expect(knownMisranked.filter((k) => !pairs.some((q) => q.key === k))).toEqual([]);
  });

  it.fails.each(knownMisranked.map((k) => [k, pairs.find((q) => q.key === k)!] as const))('%s: ranked as measured (not yet: KNOWN_MISRANKED)', (_, q) => {
    expect(q.fast.estMs, `${fmt(q.fast)}; ${fmt(q.slow)}`).toBeLessThan(q.slow.estMs);
  });
}
