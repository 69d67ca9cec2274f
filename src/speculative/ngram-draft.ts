// Prompt lookup (n-gram) drafting: no model. For a node, take the text up to it (context + the node's path)
// and look for earlier occurrences of its last n tokens, longest n first (n = maxN … minN); the tokens that
// followed those occurrences are the candidates, ranked by how often they followed (then by how recently),
// with probability count / occurrences. Repetitive text (code, quotes of the prompt) is where it wins.
import type { Candidate } from './candidate.ts';
import type { DraftContext, DraftSource, TextProposals } from './draft.ts';
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

  textProposals(): TextProposals {
    return new NgramIndex(this.minN, this.maxN);
  }
}

/**
 * lookup()'s proposals for a text that grows a token at a time, in time independent of its length: for every n in
 * [minN, maxN], each n-gram's followers (count, and the last start it followed at) are counted as the token after
 * it arrives, so a query reads the longest matching suffix's followers instead of scanning the text.
 */
export class NgramIndex implements TextProposals {
  private readonly text: number[] = [];
  /** Per n − minN: n-gram → follower → [count, last start]. */
  private readonly grams: Map<string, Map<number, [number, number]>>[];

  constructor(private readonly minN: number, private readonly maxN: number) {
    this.grams = Array.from({ length: maxN - minN + 1 }, () => new Map());
  }

  push(token: number): void {
    const p = this.text.length;
    this.text.push(token);
    for (let n = this.minN; n <= Math.min(this.maxN, p); n++) {
      const key = this.text.slice(p - n, p).join(',');
      const grams = this.grams[n - this.minN];
      let f = grams.get(key);
      if (!f) grams.set(key, (f = new Map()));
      const c = f.get(token);
      if (c) {
        c[0]++;
        c[1] = p - n;
      } else f.set(token, [1, p - n]);
    }
  }

  proposals(k: number): number[] {
    const len = this.text.length;
    for (let n = Math.min(this.maxN, len - 1); n >= this.minN; n--) {
      const f = this.grams[n - this.minN].get(this.text.slice(len - n).join(','));
      if (!f) continue;
      return [...f.entries()].sort((a, b) => b[1][0] - a[1][0] || b[1][1] - a[1][1]).slice(0, k).map(([token]) => token);
    }
    return [];
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
