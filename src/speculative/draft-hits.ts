// What a batch's trees would have emitted on the text already decoded, without running them (issue 14: auto at
// batch 8 with table drafts ran 0.66–0.70× plain on the H200, most of the loss trees explored and re-probed that
// could not pay; call 215). Greedy output is plain decoding's whatever the trees, so the text a batch decodes is
// the text every tree would have been verified against: at each position t of a sequence's decoded text, the draft's
// proposals for the text before t (DraftSource.textProposals) either hold the token at t or not, and a tree proposing k
// children a node, `depth` levels deep, would have emitted 1 + (the run of positions from t whose token was among
// the k proposals, at most depth) tokens had its step started at t. The mean over recent positions is the estimate.
// It is an estimate, not a bound: a tree's deeper levels are proposed from the text at its root (the tracker's from
// the text at each position), and a budgeted tree (best:4 of 15 nodes) does not follow every proposal.

import type { DraftSource, TextProposals } from './draft.ts';
import { candidatesPerNode, shapeDepth, type TreeShape } from './tree-spec.ts';

/** Positions per sequence the estimate is taken over (the latest). */
export const DRAFT_HITS_WINDOW = 64;
/** Positions over the batch, at least, before there is an estimate. */
export const DRAFT_HITS_MIN_POSITIONS = 16;
/** Positions of a sequence, at least, before it counts in the slowest sequence's estimate (slowestTokensPerStep). */
export const DRAFT_HITS_MIN_SEQUENCE_POSITIONS = 8;

export class DraftHits {
  /** Per sequence: per position after its prompt, the rank of its token among the draft's proposals (−1: not among them). */
  private readonly ranks: number[][];
  /** Per sequence: the draft's proposals after its text so far. */
  private readonly readers: TextProposals[];
  /** Per sequence: text length observed so far. */
  private readonly seen: number[];
  /** tokensPerStep's answers since the last position observed, by `k,depth` (the controller asks each a few times a decision). */
  private readonly known = new Map<string, number | undefined>();

  /**
   * `drafts[s]` proposes for sequence s (each must have `textProposals`); `k` proposals asked a position (the most any
   * tree asks a node); `prompts[s]`: sequence s's prompt, read but not observed (what follows it was decoded).
   */
  constructor(
    drafts: readonly DraftSource[],
    private readonly k: number,
    prompts: readonly (readonly number[])[],
    private readonly window = DRAFT_HITS_WINDOW,
  ) {
    if (drafts.some((d) => !d.textProposals)) throw new Error('draft hits: every draft must propose from the text alone (DraftSource.textProposals)');
    if (!(Number.isInteger(k) && k >= 1)) throw new Error(`draft hits: k must be a positive integer, got ${k}`);
    if (prompts.length !== drafts.length) throw new Error(`draft hits: ${drafts.length} drafts and ${prompts.length} prompts`);
    this.ranks = drafts.map(() => []);
    this.readers = drafts.map((d, s) => {
      const r = d.textProposals!();
      for (const t of prompts[s]) r.push(t);
      return r;
    });
    this.seen = prompts.map((p) => p.length);
  }

  /** Text length of sequence s observed so far. */
  observed(s: number): number {
    return this.seen[s];
  }

  /**
   * Sequence s's text so far (its prompt and what it decoded; it only grows, each call's text extending the last's):
   * ranks the positions not seen yet.
   */
  observe(s: number, text: readonly number[]): void {
    const r = this.readers[s];
    if (text.length > this.seen[s]) this.known.clear();
    for (let t = this.seen[s]; t < text.length; t++) {
      this.ranks[s].push(r.proposals(this.k).indexOf(text[t]));
      r.push(text[t]);
    }
    this.seen[s] = Math.max(this.seen[s], text.length);
    // the window, and a tree's depth past it so the window's runs stay known (at most every proposal a step: 64 levels)
    const keep = this.window + 64;
    if (this.ranks[s].length > 2 * keep) this.ranks[s].splice(0, this.ranks[s].length - keep);
  }

  /**
   * Tokens a step of a tree proposing `k` children a node, `depth` levels deep, would have emitted per sequence, on
   * average over the latest `window` positions of each sequence whose run is known (ended by a miss or `depth` long);
   * undefined before DRAFT_HITS_MIN_POSITIONS of them.
   */
  tokensPerStep(k: number, depth: number): number | undefined {
    this.checkK(k);
    const key = `${k},${depth}`;
    if (this.known.has(key)) return this.known.get(key);
    let positions = 0;
    let tokens = 0;
    for (let s = 0; s < this.ranks.length; s++) {
      const r = this.runs(s, k, depth);
      positions += r.positions;
      tokens += r.tokens;
    }
    const estimate = positions >= DRAFT_HITS_MIN_POSITIONS ? tokens / positions : undefined;
    this.known.set(key, estimate);
    return estimate;
  }

  /**
   * Tokens a step for the `m` slowest of the sequences `among`: the least of their pooled mean (tokensPerStep's over
   * them alone, once they have DRAFT_HITS_MIN_POSITIONS known positions) and the mean of the m lowest own means of the
   * sequences with DRAFT_HITS_MIN_SEQUENCE_POSITIONS or more (all of them, if fewer than m have as many); undefined
   * while neither is known. A batch ends with its slowest sequence, so over a run a tree takes off the longest remaining
   * budgets about what it emits a step for the sequences it serves worst (batch-credit.ts: makespan m = 1, the slower
   * half m = ⌈b/2⌉); the pooled mean bounds that from above before each sequence has positions enough.
   */
  slowestTokensPerStep(k: number, depth: number, among: readonly boolean[], m = 1): number | undefined {
    this.checkK(k);
    if (!(Number.isInteger(m) && m >= 1)) throw new Error(`draft hits: the ${m} slowest sequences`);
    const key = `${k},${depth},${m},${among.map((a) => (a ? 1 : 0)).join('')}`;
    if (this.known.has(key)) return this.known.get(key);
    const own: number[] = [];
    let positions = 0;
    let tokens = 0;
    for (let s = 0; s < this.ranks.length; s++) {
      if (!among[s]) continue;
      const r = this.runs(s, k, depth);
      positions += r.positions;
      tokens += r.tokens;
      if (r.positions >= DRAFT_HITS_MIN_SEQUENCE_POSITIONS) own.push(r.tokens / r.positions);
    }
    const slowest = own.sort((a, b) => a - b).slice(0, m);
    let least = slowest.length ? slowest.reduce((a, x) => a + x, 0) / slowest.length : undefined;
    if (positions >= DRAFT_HITS_MIN_POSITIONS) least = Math.min(least ?? Infinity, tokens / positions);
    this.known.set(key, least);
    return least;
  }

  private checkK(k: number): void {
    if (k > this.k) throw new Error(`draft hits: ${k} proposals a node asked, ${this.k} observed`);
  }

  /** Sequence s's window: its positions whose run is known (ended by a miss or `depth` long) and their tokens (1 + run each). */
  private runs(s: number, k: number, depth: number): { positions: number; tokens: number } {
    const ranks = this.ranks[s];
    let positions = 0;
    let tokens = 0;
    const from = Math.max(0, ranks.length - this.window - depth);
    for (let t = from; t < ranks.length && t < from + this.window; t++) {
      let run = 0;
      while (run < depth && t + run < ranks.length && ranks[t + run] >= 0 && ranks[t + run] < k) run++;
      if (run < depth && t + run === ranks.length) continue; // runs off the text observed: not known yet
      positions++;
      tokens += 1 + run;
    }
    return { positions, tokens };
  }
}

/**
 * The estimates auto's policy takes (SpeculationPolicy.useEstimates) for `trees` (option i + 1: trees[i]), where every
 * draft proposes from the text alone; else undefined. `decoded(s)`: sequence s's tokens after its prompt so far.
 * `slower`: the sequences whose m slowest the estimate is about (slowestTokensPerStep: the live ones, for a batch
 * credited by its longest budgets, batch-credit.ts); without it the mean over every sequence.
 */
export function draftEstimates(
  drafts: readonly DraftSource[],
  prompts: readonly (readonly number[])[],
  trees: readonly { readonly shape: TreeShape; readonly maxNodes: number }[],
  decoded: (s: number) => readonly number[],
  slower?: { readonly among: () => readonly boolean[]; readonly m: number },
): ((option: number) => number | undefined) | undefined {
  if (!drafts.every((d) => d.textProposals)) return undefined;
  const hits = new DraftHits(drafts, Math.max(...trees.map((t) => candidatesPerNode(t.shape))), prompts);
  return (option) => {
    prompts.forEach((p, s) => {
      const out = decoded(s);
      if (hits.observed(s) < p.length + out.length) hits.observe(s, [...p, ...out]);
    });
    const tree = trees[option - 1];
    const [k, depth] = [candidatesPerNode(tree.shape), shapeDepth(tree.shape, tree.maxNodes)];
    return slower ? hits.slowestTokensPerStep(k, depth, slower.among(), slower.m) : hits.tokensPerStep(k, depth);
  };
}
