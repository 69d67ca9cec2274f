// Prompt lookup (n-gram) drafting: no model. For a node, take the text up to it (context + the node's path)
// and look for earlier occurrences of its last n tokens, longest n first (n = maxN … minN); the tokens that
// followed those occurrences are the candidates, ranked by how often they followed (then by how recently),
// with probability count / occurrences. Repetitive text (code, quotes of the prompt) is where it wins.
import type { Candidate } from './candidate.ts';
import type { DraftContext, DraftSource } from './draft.ts';
import { pathTokens, type TokenTree } from './token-tree.ts';

export interface NgramOptions {
  /** Longest suffix matched (default 3). */
  readonly maxN?: number;
  /** Shortest suffix matched (default 1). */
  readonly minN?: number;
}

export class NgramDraft implements DraftSource {
  readonly name = 'ngram';
  private readonly maxN: number;
  private readonly minN: number;

  constructor(opts: NgramOptions = {}) {
    this.maxN = opts.maxN ?? 3;
    this.minN = opts.minN ?? 1;
    if (!(Number.isInteger(this.minN) && this.minN >= 1 && Number.isInteger(this.maxN) && this.maxN >= this.minN)) {
      throw new Error(`n-gram draft: need 1 ≤ minN ≤ maxN, got ${this.minN}, ${this.maxN}`);
    }
  }

  candidates(ctx: DraftContext, tree: TokenTree, nodes: readonly number[], k: number): Candidate[][] {
    return nodes.map((node) => lookup([...ctx.tokens, ...pathTokens(tree, node).slice(1)], k, this.minN, this.maxN));
  }

  follows(tokens: readonly number[], k: number): readonly number[] {
    return lookup(tokens, k, this.minN, this.maxN).map((c) => c.token);
  }
}

/** Continuations of `seq`'s last n tokens earlier in `seq`, for the longest n that occurs. */
export function lookup(seq: readonly number[], k: number, minN: number, maxN: number): Candidate[] {
  for (let n = Math.min(maxN, seq.length - 1); n >= minN; n--) {
    const end = seq.length - n; // the suffix starts here
    const follow = new Map<number, { count: number; last: number }>();
    let total = 0;
    for (let i = 0; i < end; i++) {
      let j = 0;
      while (j < n && seq[i + j] === seq[end + j]) j++;
      if (j < n) continue;
      const next = seq[i + n];
      const f = follow.get(next) ?? { count: 0, last: -1 };
      f.count++;
      f.last = i;
      follow.set(next, f);
      total++;
    }
    if (total === 0) continue;
    return [...follow.entries()]
      .sort((a, b) => b[1].count - a[1].count || b[1].last - a[1].last)
      .slice(0, k)
      .map(([token, f]) => ({ token, prob: f.count / total }));
  }
  return [];
}
