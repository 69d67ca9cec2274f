// A proposed token: what a draft source offers the tree (draft.ts) and what the verifier returns of the
// target's own distribution or its Medusa heads (verifier.ts). Its own file so that neither of those two
// imports the other for it.
export interface Candidate {
  readonly token: number;
  /** The draft's probability of this token (scores dynamic trees; 1 for a certain proposal). */
  readonly prob: number;
  /** The distribution the token was sampled from (a sampled draft: acceptance's q); absent: deterministic. */
  readonly q?: Float64Array;
}
