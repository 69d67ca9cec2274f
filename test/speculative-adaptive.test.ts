// The adaptive draft (src/speculative/adaptive-draft.ts): its tri-gram table counts and backs off as
// specified, and it learns — on a text that repeats two phrases sharing a prefix, its acceptance rises from
// nothing (the table is empty) to long accepted chains, and its arms' posteriors separate what always
// continues (a dominant tri-gram) from a fork's two continuations, ranking the one that wins there.
import { describe, expect, it } from 'vitest';
import { AdaptiveDraft } from '../src/speculative/adaptive-draft.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { pathTokens, type TokenTree } from '../src/speculative/token-tree.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { TrigramTable } from '../src/speculative/trigram-table.ts';
import { checkPath, type TreeVerifier, type VerifyRequest, type VerifyResult } from '../src/speculative/verifier.ts';

describe('tri-gram table', () => {
  it('ranks tri-gram continuations by count then recency, then backs off to bi-grams it did not list', () => {
    const t = new TrigramTable();
    t.extend([1, 2, 3, 1, 2, 4, 1, 2, 3, 9, 2, 5]);
    expect(t.continuations([7, 1, 2], 5).map((c) => [c.token, c.order, c.rank, c.count, c.total])).toEqual([
      [3, 3, 0, 2, 3],
      [4, 3, 1, 1, 3],
      [5, 2, 1, 1, 4], // 2 was followed by 3, 4, 3, 5 (5 more recently than 4); 3 and 4 are listed already
    ]);
    expect(t.continuations([8, 8], 3)).toEqual([]);
    t.catchUp([1, 2, 3, 1, 2, 4, 1, 2, 3, 9, 2, 5, 8, 8]);
    expect(t.continuations([0, 8], 3).map((c) => [c.token, c.order])).toEqual([[8, 2]]);
    expect(t.length).toBe(14);
  });
});

/** A greedy target that writes `text` from position `start` on, whatever it is given: next token = text[position]. */
class ScriptedTarget implements TreeVerifier {
  readonly vocabSize = 64;
  readonly medusaHeads = 0;
  readonly maxNodes = 17;
  private committed = 0;
  private pending: readonly number[] | undefined;
  private last: TokenTree | undefined;

  constructor(private readonly text: readonly number[]) {}

  get position(): number {
    return this.committed + (this.pending?.length ?? 0);
  }

  async start(prompt: readonly number[]): Promise<number> {
    this.committed = prompt.length;
    this.pending = undefined;
    return this.text[this.committed];
  }

  async verify(req: VerifyRequest): Promise<VerifyResult> {
    await this.flush();
    this.last = req.tree;
    // Node n sits at position committed + depth − 1; its pick is the text's token after that, if the path so far matches the text.
    const picks = req.tree.tokens.map((_, n) => {
      const path = pathTokens(req.tree, n);
      const on = path.every((t, i) => t === this.text[this.committed + i]);
      return on ? this.text[this.committed + path.length] : 0;
    });
    return { picks };
  }

  commit(path: readonly number[]): void {
    checkPath(this.last!, path);
    this.pending = path;
  }

  async flush(): Promise<void> {
    if (this.pending) this.committed += this.pending.length;
    this.pending = undefined;
  }

  async destroy(): Promise<void> {}
}

describe('adaptive draft', () => {
  // Two phrases that share the prefix 1 2 3, repeated: after "2 3" comes 4 or 7 (a fork the tri-grams see
  // both ways), everything else is determined by the last two tokens.
  const A = [1, 2, 3, 4, 5, 6, 10, 11];
  const B = [1, 2, 3, 7, 8, 9, 12, 13];
  const text = Array.from({ length: 40 }, (_, i) => (i % 2 ? B : A)).flat();
  const prompt = text.slice(0, 3);

  it('learns: acceptance rises from the empty table to long chains on repetitive text, output unchanged', async () => {
    const draft = new AdaptiveDraft(5);
    const r = await speculativeGenerate(new ScriptedTarget(text), draft, prompt, { maxTokens: 240, shape: parseTreeSpec('best:3'), maxNodes: 16 });
    expect(r.tokens).toEqual(text.slice(3, 243));
    const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(r.acceptedPerStep.slice(0, 8));
    const last = mean(r.acceptedPerStep.slice(-8));
    expect(first).toBeLessThan(2.5); // nothing known at first: mostly the bonus alone
    expect(last).toBeGreaterThan(3 * first);
    expect(last).toBeGreaterThan(6);
    // Of the nodes it risked under accepted parents, the later steps hit far more often.
    const rate = (h: readonly { tested: number; accepted: number }[]) => h.reduce((a, x) => a + x.accepted, 0) / Math.max(1, h.reduce((a, x) => a + x.tested, 0));
    expect(rate(draft.history.slice(-8))).toBeGreaterThan(rate(draft.history.slice(0, 8)) + 0.2);
  });

  it('its arms learn what is accepted: a dominant tri-gram almost always, and at the fork the second-ranked branch', async () => {
    const draft = new AdaptiveDraft(6);
    await speculativeGenerate(new ScriptedTarget(text), draft, prompt, { maxTokens: 240, shape: parseTreeSpec('best:3'), maxNodes: 16 });
    const sure = draft.armMean({ token: 5, order: 3, rank: 0, count: 20, total: 20 });
    // "2 3" was followed by 4 and 7 equally often; ties rank the more recent first, and the phrases alternate,
    // so the first-ranked continuation is always the wrong one.
    const forkFirst = draft.armMean({ token: 4, order: 3, rank: 0, count: 10, total: 20 });
    const forkSecond = draft.armMean({ token: 7, order: 3, rank: 1, count: 10, total: 20 });
    expect(sure).toBeGreaterThan(0.9);
    expect(forkFirst).toBeLessThan(0.3);
    expect(forkSecond).toBeGreaterThan(forkFirst + 0.2);
    expect(forkSecond).toBeLessThan(sure);
  });
});
