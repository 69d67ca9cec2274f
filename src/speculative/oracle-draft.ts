// The oracle draft: the target model itself run ahead — its plain decoding of the same prompt with the
// same sampling options and seed, produced before the speculative run and replayed. With greedy decoding,
// and with sampling under the coupled acceptance rule (acceptance.ts), verification accepts every token it
// proposes, so a chain of N nodes yields N + 1 tokens per step: the ceiling that verification allows, at
// no drafting cost. Off its own trajectory (after a float32 near-tie) it proposes nothing.
import type { Candidate } from './candidate.ts';
import type { DraftContext, DraftSource } from './draft.ts';
import { pathTokens, type TokenTree } from './token-tree.ts';

export class OracleDraft implements DraftSource {
  readonly name = 'oracle';

  /** `reference`: the new tokens plain decoding produced for `prompt`. */
  constructor(private readonly prompt: readonly number[], private readonly reference: readonly number[], private readonly vocab: number) {}

  candidates(ctx: DraftContext, tree: TokenTree, nodes: readonly number[], k: number): Candidate[][] {
    const g = ctx.tokens.length - this.prompt.length; // tokens generated, the root included
    const onTrack = g >= 1 && ctx.tokens.slice(this.prompt.length).every((t, i) => t === this.reference[i]);
    return nodes.map((node) => {
      if (!onTrack) return [];
      const path = pathTokens(tree, node).slice(1);
      if (!path.every((t, i) => t === this.reference[g + i])) return [];
      const next = this.reference[g + path.length];
      if (next === undefined) return [];
      // Ranks past the first are distinct wrong tokens (probability 0), for tree shapes wider than a chain.
      return Array.from({ length: Math.min(k, this.vocab) }, (_, r) => ({ token: (next + r) % this.vocab, prob: r === 0 ? 1 : 0 }));
    });
  }
}
