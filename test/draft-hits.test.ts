// DraftHits (src/speculative/draft-hits.ts): what a tree would have emitted at each position of decoded text, from the
// draft's proposals for the text before it (DraftSource.textProposals). Checked against the definition computed afresh
// on the whole text (a fresh tri-gram table or lookup() scan at every position, every run walked), with the text
// observed in uneven pieces; the n-gram draft's incremental index against lookup() on every prefix; and the adaptive
// draft's reader leaves the draft's own proposals untouched.
import { describe, expect, it } from 'vitest';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { DRAFT_HITS_MIN_POSITIONS, DRAFT_HITS_MIN_SEQUENCE_POSITIONS, DRAFT_HITS_WINDOW, DraftHits } from '../src/speculative/draft-hits.ts';
import { lookup, NgramDraft, NgramIndex } from '../src/speculative/ngram-draft.ts';
import { TreeBuilder } from '../src/speculative/token-tree.ts';
import { TrigramTable } from '../src/speculative/trigram-table.ts';
import { rng } from '../src/tensor.ts';

/** A text with repeats (phrases copied with changes) so that runs of every length occur. */
function text(seed: number, n: number): number[] {
  const r = rng(seed);
  const out: number[] = [];
  while (out.length < n) {
    if (out.length > 8 && r() < 0.6) {
      const from = Math.floor(r() * (out.length - 6));
      const len = 2 + Math.floor(r() * 10);
      for (let j = 0; j < len; j++) out.push(r() < 0.1 ? Math.floor(r() * 12) : out[from + j]);
    } else out.push(Math.floor(r() * 12));
  }
  return out.slice(0, n);
}

/** The definition: mean over the window's positions (runs known) of 1 + the run of positions whose token the draft proposed. */
function direct(texts: readonly number[][], starts: readonly number[], proposals: (prefix: number[], k: number) => number[], k: number, depth: number, window: number, least = DRAFT_HITS_MIN_POSITIONS): number | undefined {
  let positions = 0;
  let tokens = 0;
  texts.forEach((t, s) => {
    const hit = Array.from({ length: t.length - starts[s] }, (_, i) => proposals(t.slice(0, starts[s] + i), k).includes(t[starts[s] + i]));
    const from = Math.max(0, hit.length - window - depth);
    for (let p = from; p < Math.min(hit.length, from + window); p++) {
      let run = 0;
      while (run < depth && p + run < hit.length && hit[p + run]) run++;
      if (run < depth && p + run === hit.length) continue;
      positions++;
      tokens += 1 + run;
    }
  });
  return positions >= least ? tokens / positions : undefined;
}

const trigram = (prefix: number[], k: number) => {
  const t = new TrigramTable();
  t.extend(prefix);
  return t.continuations(prefix, k).map((c) => c.token);
};
const ngram = (prefix: number[], k: number) => lookup(prefix, k, 1, 4).map((c) => c.token);

describe('DraftHits', () => {
  for (const [name, make, proposals] of [
    ['adaptive (tri-gram table)', () => new AdaptiveDraft(3), trigram],
    ['n-gram (prompt lookup)', () => new NgramDraft({ minN: 1, maxN: 4 }), ngram],
  ] as const) {
    it(`${name}: every tree's tokens a step equal the definition on the whole text, observed in uneven pieces`, () => {
      const texts = [text(1, 150), text(2, 90), text(3, 40)];
      const starts = [12, 30, 5];
      const hits = new DraftHits(texts.map(() => make()), 4, texts.map((t, s) => t.slice(0, starts[s])));
      const r = rng(9);
      const seen = [...starts];
      let checked = 0;
      let slowestChecked = 0;
      while (seen.some((n, s) => n < texts[s].length)) {
        texts.forEach((t, s) => {
          seen[s] = Math.min(t.length, seen[s] + Math.floor(r() * 9));
          hits.observe(s, t.slice(0, seen[s]));
        });
        const now = texts.map((t, s) => t.slice(0, seen[s]));
        for (const [k, depth] of [[1, 1], [1, 7], [2, 3], [4, 15]]) {
          const want = direct(now, starts, proposals, k, depth, DRAFT_HITS_WINDOW);
          const got = hits.tokensPerStep(k, depth);
          if (want === undefined) expect(got).toBeUndefined();
          else {
            expect(got, `k ${k}, depth ${depth}, seen ${seen}`).toBeCloseTo(want, 12);
            checked++;
          }
          // The slowest sequence's, among the first and the last: the least of the two pooled and each alone (by the
          // definition, each at its own least count of positions).
          const among = [true, false, true];
          const each = [0, 2].map((s) => direct([now[s]], [starts[s]], proposals, k, depth, DRAFT_HITS_WINDOW, DRAFT_HITS_MIN_SEQUENCE_POSITIONS));
          const pooled = direct([now[0], now[2]], [starts[0], starts[2]], proposals, k, depth, DRAFT_HITS_WINDOW);
          const known = [...each, pooled].filter((e) => e !== undefined);
          const slowest = hits.slowestTokensPerStep(k, depth, among);
          if (known.length === 0) expect(slowest).toBeUndefined();
          else {
            expect(slowest, `slowest, k ${k}, depth ${depth}, seen ${seen}`).toBeCloseTo(Math.min(...known), 12);
            if (each.every((e) => e !== undefined) && each[0] !== each[1]) slowestChecked++;
          }
          // The 2 slowest of all three: the mean of the two lowest own means that are known (all of them if fewer),
          // at most the pooled mean.
          const own = [0, 1, 2].map((s) => direct([now[s]], [starts[s]], proposals, k, depth, DRAFT_HITS_WINDOW, DRAFT_HITS_MIN_SEQUENCE_POSITIONS)).filter((e) => e !== undefined).sort((a, b) => a - b).slice(0, 2);
          const all = direct(now, starts, proposals, k, depth, DRAFT_HITS_WINDOW);
          const two = [...(own.length ? [own.reduce((a, x) => a + x, 0) / own.length] : []), ...(all !== undefined ? [all] : [])];
          const slower = hits.slowestTokensPerStep(k, depth, [true, true, true], 2);
          if (two.length === 0) expect(slower).toBeUndefined();
          else expect(slower, `2 slowest, k ${k}, depth ${depth}, seen ${seen}`).toBeCloseTo(Math.min(...two), 12);
        }
      }
      expect(checked).toBeGreaterThan(20);
      expect(slowestChecked, 'estimates where the two sequences differ').toBeGreaterThan(5);
      // Repeats make the deep trees' estimates larger than one token a step, and never smaller than a shallow one's.
      expect(hits.tokensPerStep(4, 15)!).toBeGreaterThan(1.2);
      expect(hits.tokensPerStep(1, 7)!).toBeGreaterThanOrEqual(hits.tokensPerStep(1, 1)!);
    });
  }

  it('the n-gram index proposes what lookup() finds by scanning the text, at every length, for several n', () => {
    for (const [minN, maxN] of [[1, 3], [2, 8], [1, 1], [3, 4]]) {
      const t = text(10 + maxN, 400);
      const index = new NgramIndex(minN, maxN);
      let nonEmpty = 0;
      for (let n = 0; n <= t.length; n++) {
        for (const k of [1, 4]) expect(index.proposals(k), `minN ${minN}, maxN ${maxN}, ${n} tokens, k ${k}`).toEqual(lookup(t.slice(0, n), k, minN, maxN).map((c) => c.token));
        if (index.proposals(4).length > 0) nonEmpty++;
        if (n < t.length) index.push(t[n]);
      }
      expect(nonEmpty, `minN ${minN}, maxN ${maxN}: lengths with proposals`).toBeGreaterThan(100);
    }
  });

  it("the adaptive draft's reader proposes the tri-gram table's continuations and leaves the draft's proposals as they were", async () => {
    const t = text(5, 60);
    const [a, b] = [new AdaptiveDraft(7), new AdaptiveDraft(7)];
    a.begin({ tokens: t.slice(0, 30) });
    b.begin({ tokens: t.slice(0, 30) });
    const reader = a.textProposals();
    for (let n = 0; n < 60; n++) {
      expect(reader.proposals(4), `${n} tokens`).toEqual(trigram(t.slice(0, n), 4));
      reader.push(t[n]);
    }
    const tree = new TreeBuilder(t[49]).build();
    expect(await a.candidates({ tokens: t.slice(0, 50) }, tree, [0], 4)).toEqual(await b.candidates({ tokens: t.slice(0, 50) }, tree, [0], 4));
  });
});
