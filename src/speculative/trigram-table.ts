// The adaptive draft's memory of the text: how often each token followed each pair of tokens (tri-grams)
// and each single token (bi-grams), counted online over the prompt and everything generated. A context's
// candidates are the tri-gram continuations of its last two tokens, best first, then the bi-gram
// continuations of its last token that the tri-grams did not already give (backing off when the pair is new).
// Counting is O(1) per token and a lookup touches one pair's and one token's continuations only, unlike prompt
// lookup (ngram-draft.ts), which rescans the whole text for every node.

/** One continuation of a context, as the table ranks them. */
export interface Continuation {
  readonly token: number;
  /** 3: it followed the context's last two tokens; 2: only its last token. */
  readonly order: 2 | 3;
  /** Rank within its order's list (0: the most frequent). */
  readonly rank: number;
  /** Times it followed, and times the context occurred with any continuation (same order). */
  readonly count: number;
  readonly total: number;
}

interface Followers {
  total: number;
  /** token → [count, last position it followed at] */
  readonly next: Map<number, [number, number]>;
}

export class TrigramTable {
  private readonly pairs = new Map<string, Followers>();
  private readonly singles = new Map<number, Followers>();
  private readonly text: number[] = [];

  /** Tokens counted so far. */
  get length(): number {
    return this.text.length;
  }

  /** Appends tokens to the text, counting the tri- and bi-grams they complete. */
  extend(tokens: readonly number[]): void {
    for (const t of tokens) {
      const n = this.text.length;
      if (n >= 1) count(this.singles, this.text[n - 1], t, n);
      if (n >= 2) count(this.pairs, `${this.text[n - 2]},${this.text[n - 1]}`, t, n);
      this.text.push(t);
    }
  }

  /** Appends what `tokens` has beyond the counted text (tokens must extend it: the whole context so far). */
  catchUp(tokens: readonly number[]): void {
    if (tokens.length > this.text.length) this.extend(tokens.slice(this.text.length));
  }

  /**
   * Up to k continuations of a context ending in `context` (its last two tokens matter): tri-gram ones first,
   * each order ranked by count, then by recency.
   */
  continuations(context: readonly number[], k: number): Continuation[] {
    const n = context.length;
    const out: Continuation[] = [];
    const taken = new Set<number>();
    const take = (f: Followers | undefined, order: 2 | 3) => {
      if (!f) return;
      const ranked = [...f.next.entries()].sort((a, b) => b[1][0] - a[1][0] || b[1][1] - a[1][1]);
      ranked.forEach(([token, [c]], rank) => {
        if (out.length >= k || taken.has(token)) return;
        taken.add(token);
        out.push({ token, order, rank, count: c, total: f.total });
      });
    };
    if (n >= 2) take(this.pairs.get(`${context[n - 2]},${context[n - 1]}`), 3);
    if (n >= 1) take(this.singles.get(context[n - 1]), 2);
    return out;
  }
}

function count<K>(map: Map<K, Followers>, key: K, next: number, at: number): void {
  let f = map.get(key);
  if (!f) map.set(key, (f = { total: 0, next: new Map() }));
  f.total++;
  const c = f.next.get(next);
  if (c) {
    c[0]++;
    c[1] = at;
  } else f.next.set(next, [1, at]);
}
