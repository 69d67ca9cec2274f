// What a batch's auto credits a decision with (generate-batch.ts, BatchAuto.credit): the tokens its rate counts.
//   tokens       every token the decision emitted, all sequences.
//   makespan     at each of its steps, what the step took off the longest remaining budget (maxTokens less what a
//                sequence emitted; 0 once it ended), once for every sequence live in it. The batch ends with its
//                slowest sequence, so a token of a sequence ahead of the others shortens the run by nothing: on the
//                H200 a tree credited with every token (31 a batch step) was rated as fast as plain and exploited while
//                the sequences drew apart, and the batch's tail — the sequences left after the first finished,
//                decoding in steps that cost about a full batch's — took 16–54 % of auto's time (call 226).
//   slower-half  the same over the mean of the ⌈b/2⌉ longest budgets: a step is credited with what it took off the
//                slower half of the batch. Where every sequence's drafts are accepted alike (trained Medusa heads) the
//                longest budget moves with whichever sequence lagged in the decision's few steps, so makespan's credit
//                is noisy (32–120 against a steady 77–92 tokens a 4-step decision, call 233); the slower half's mean
//                moves with several.
// One family: the potential Φ = the mean of the m largest budgets (makespan m = 1, slower-half ⌈b/2⌉), a step credited
// max(live, m) · (Φ before − Φ after). A plain step takes 1 off every live budget, so it is credited its tokens under
// every credit; over a run the credits add up to Φ at the start, whichever decisions took them. (m = b would be the
// tokens' mean, but a sequence ended by EOS drops its whole budget: `tokens` counts what was emitted instead.)

export type BatchCredit = 'tokens' | 'makespan' | 'slower-half';

export const BATCH_CREDITS: readonly BatchCredit[] = ['makespan', 'slower-half', 'tokens'];

/**
 * The default: the slower half. In alternating rounds on the H200 (call 234, bench/batch-decisions.ts, batch 8) it was
 * within 4–11 % of the best credit in every setting — makespan's with table drafts on random weights and on the trained
 * nano model, tokens' with Medusa's chained trees (1.74× plain against makespan's 1.50×) — where makespan lost 14 % with
 * Medusa and tokens up to 37 % with table drafts (docs/speculative.md).
 */
export const DEFAULT_BATCH_CREDIT: BatchCredit = 'slower-half';

/** Budgets the credit's potential follows (the m largest), for a batch of b; undefined for `tokens`. */
export function followedBudgets(credit: BatchCredit, b: number): number | undefined {
  if (!(Number.isInteger(b) && b >= 1)) throw new Error(`batch credit: a batch of ${b} sequences`);
  return credit === 'makespan' ? 1 : credit === 'slower-half' ? Math.ceil(b / 2) : undefined;
}

/** Φ: the mean of the m largest of `budgets` (each sequence's remaining budget, 0 once it ended). */
export function budgetPotential(budgets: readonly number[], m: number): number {
  if (!(Number.isInteger(m) && m >= 1 && m <= budgets.length)) throw new Error(`batch credit: the ${m} largest of ${budgets.length} budgets`);
  const top = [...budgets].sort((a, b) => b - a).slice(0, m);
  return top.reduce((a, x) => a + x, 0) / m;
}

/** A step's credit under the potential of the m largest budgets: max(live, m) · (Φ before − Φ after). */
export function potentialCredit(before: number, after: number, live: number, m: number): number {
  return Math.max(live, m) * (before - after);
}
