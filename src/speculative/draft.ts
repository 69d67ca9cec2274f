// What a draft source is to the speculative loop: given the context and the tree built so far, ranked
// candidate tokens for the children of some of its nodes (expand.ts asks level by level, so a draft that
// runs a model sees a whole level at once). Sources: ngram-draft.ts (prompt lookup), medusa-draft.ts (the
// checkpoint's Medusa heads), model-draft.ts (a separate small model), oracle-draft.ts (the target's own
// plain decoding, replayed: the verification ceiling).
import type { Candidate } from './candidate.ts';
import type { TokenTree } from './token-tree.ts';
import type { VerifyResult } from './verifier.ts';

export interface DraftContext {
  /** Every token so far: the prompt, the generated tokens, and last the root (chosen, not yet in the state). */
  readonly tokens: readonly number[];
}

/** What a draft proposes after a text that grows a token at a time (DraftSource.textProposals). */
export interface TextProposals {
  /** Appends a token to the text. */
  push(token: number): void;
  /** The tokens the draft proposes as children of the text's end: at most k, any order. */
  proposals(k: number): readonly number[];
}

export interface DraftSource {
  /** As given to --speculate. */
  readonly name: string;
  /** Deepest draft level it can propose below the root (Medusa: its head count); absent: no limit. */
  readonly maxDepth?: number;
  /** Medusa candidates per head the verification should return (the Medusa draft reads them). */
  readonly medusaTopK?: number;
  /** Prompt lookup as one chain (lookup-chain.ts): chained speculation can draft as this source does, on the GPU. */
  readonly lookup?: { readonly minN: number; readonly maxN: number };
  /** Called once the prompt is prefilled and its first token chosen (`tokens` ends with it). */
  begin?(ctx: DraftContext): Promise<void> | void;
  /** Ranked candidates (best first, at most k) for the children of each of `nodes` of `tree`. */
  candidates(ctx: DraftContext, tree: TokenTree, nodes: readonly number[], k: number): Promise<Candidate[][]> | Candidate[][];
  /**
   * Tokens were decoded plainly since the last step (`--tree auto` switched): state kept about the last
   * verification (a draft model's own state) no longer describes `ctx`. (A draft with medusaTopK gets a
   * root-only verification at the end of each plain stretch instead, so its heads stay current.)
   */
  resume?(ctx: DraftContext): Promise<void> | void;
  /** The step's tree is complete and is verified next. */
  finalize?(ctx: DraftContext, tree: TokenTree): Promise<void> | void;
  /**
   * A reader of a growing text (tokens pushed one at a time) that says what this draft proposes after the text so far,
   * as a pure function of the text and with a state of its own (the draft's is untouched): what its trees would have
   * offered at each position of text already decoded. draft-hits.ts estimates from it the tokens a step of each tree
   * would have emitted, so that auto need not run a tree to learn that it cannot pay. Table drafts have it; a draft
   * whose proposals depend on more than the text does not.
   */
  textProposals?(): TextProposals;
  /** The target accepted `path` (root first) of `tree` and chose `bonus` after it. */
  accepted?(tree: TokenTree, path: readonly number[], bonus: number, result: VerifyResult): Promise<void> | void;
  destroy?(): Promise<void> | void;
}
