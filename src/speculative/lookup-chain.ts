// Prompt lookup as one chain (training-free, the copy draft): find the most recent earlier occurrence of the
// sequence's longest suffix of n tokens, maxN ≥ n ≥ minN, and propose the `length` tokens that followed it.
// The copy may run into the proposal itself (a period shorter than `length` repeats), so a match always yields
// `length` tokens. Unlike ngram-draft.ts (candidates ranked by how often they followed, one level at a time), the
// whole chain comes from one match — what the GPU's chained lookup (backends/wgsl/chain-lookup.ts) computes after
// every step without a readback, and what this file's draft proposes on the host for the same tree, so that the
// two verify the same trees.
import type { Candidate } from './candidate.ts';
import type { DraftContext, DraftSource } from './draft.ts';
import { pathTokens, type TokenTree } from './token-tree.ts';

export interface LookupChainOptions {
  /** Tokens proposed after a match (the chain's draft nodes). */
  readonly length: number;
  /** Longest suffix matched (default 8: bytes need longer matches than words). */
  readonly maxN?: number;
  /** Shortest suffix matched (default 2). */
  readonly minN?: number;
}

/** What the GPU chain needs to draft as this source does. */
export interface LookupSpec {
  readonly minN: number;
  readonly maxN: number;
}

/**
 * The proposal for `seq`: with T = seq.length, the largest n in [minN, maxN] for which seq[e−n, e) equals
 * seq[T−n, T) for some e < T, the largest such e, then ext[e], ext[e+1], … (`length` tokens) of ext = seq
 * followed by the proposal. Empty when no suffix of minN tokens occurred before.
 */
export function lookupChain(seq: readonly number[], length: number, minN: number, maxN: number): number[] {
  const T = seq.length;
  for (let n = Math.min(maxN, T - 1); n >= minN; n--) {
    for (let e = T - 1; e >= n; e--) {
      let same = true;
      for (let j = 1; j <= n && same; j++) same = seq[e - j] === seq[T - j];
      if (!same) continue;
      const ext = [...seq];
      for (let j = 0; j < length; j++) ext.push(ext[e + j]);
      return ext.slice(T);
    }
  }
  return [];
}

export function checkLookupSpec(minN: number, maxN: number): void {
  if (!(Number.isInteger(minN) && minN >= 1 && Number.isInteger(maxN) && maxN >= minN && maxN <= 32)) {
    throw new Error(`prompt lookup: need 1 ≤ minN ≤ maxN ≤ 32, got ${minN}, ${maxN}`);
  }
}

/**
 * The lookup chain as a draft source: a node at depth d gets the proposal's d-th token when its path is the
 * proposal so far (a chain:K tree, K ≤ length, asks exactly that), nothing otherwise. Chains on the GPU
 * (`lookup`: generate.ts runs R steps per submit with the same proposals).
 */
export class LookupChainDraft implements DraftSource {
  readonly name = 'lookup';
  readonly lookup: LookupSpec;
  private readonly length: number;
  private cached: { tokens: readonly number[]; proposal: number[] } | undefined;

  constructor(opts: LookupChainOptions) {
    this.length = opts.length;
    this.lookup = { minN: opts.minN ?? 2, maxN: opts.maxN ?? 8 };
    checkLookupSpec(this.lookup.minN, this.lookup.maxN);
    if (!(Number.isInteger(this.length) && this.length >= 1)) throw new Error(`prompt lookup: length must be a positive integer, got ${this.length}`);
  }

  /** The proposal after `tokens` (the context ending with the root). */
  proposal(tokens: readonly number[]): number[] {
    if (this.cached?.tokens !== tokens) this.cached = { tokens, proposal: lookupChain(tokens, this.length, this.lookup.minN, this.lookup.maxN) };
    return this.cached.proposal;
  }

  candidates(ctx: DraftContext, tree: TokenTree, nodes: readonly number[]): Candidate[][] {
    const proposal = this.proposal(ctx.tokens);
    return nodes.map((node) => {
      const drafted = pathTokens(tree, node).slice(1);
      const d = drafted.length;
      return d < proposal.length && drafted.every((t, i) => t === proposal[i]) ? [{ token: proposal[d], prob: 1 }] : [];
    });
  }
}
