// Medusa drafting: the checkpoint's extra heads read the target's final-normed hidden state x_p at the
// last accepted position p; head j proposes the token at p + 2 + j (the base lm_head's bonus token is
// p + 1, the next tree's root). So in the next tree a node of depth δ (the root's 1) gets its children
// from head δ − 1, the same ranked list for every node of that depth — Medusa's tree. The heads come
// with each verification (VerifyResult.medusa): the verifier finds the accepted node itself from the picks in
// the same pass (on the GPU: gpu-heads.ts) and runs the heads there only. The first step, after the
// prefill, has no heads yet and verifies the root alone.
//
// Checkpoint format (src/model/weights.ts): config.json "medusa": {"num_heads": M}, and per head N < M
//   medusa.N.proj.weight [hidden, hidden],  medusa.N.lm_head.weight [vocab, hidden]
//   logits_N = lm_head_N · (x + silu(proj_N · x))
import type { Candidate } from './candidate.ts';
import type { DraftSource } from './draft.ts';
import type { TokenTree } from './token-tree.ts';
import type { VerifyResult } from './verifier.ts';

export class MedusaDraft implements DraftSource {
  readonly name = 'medusa';
  private heads: Candidate[][] = [];

  /** `heads`: the checkpoint's head count; `topK`: candidates per head the tree shape needs. */
  constructor(readonly maxDepth: number, readonly medusaTopK: number) {
    if (!(maxDepth >= 1)) throw new Error('--speculate medusa: the checkpoint has no Medusa heads (config.json "medusa": {"num_heads": M} and medusa.N.* tensors)');
    if (!(Number.isInteger(medusaTopK) && medusaTopK >= 1)) throw new Error(`medusa draft: topK must be a positive integer, got ${medusaTopK}`);
  }

  begin(): void {
    this.heads = [];
  }

  candidates(_ctx: unknown, tree: TokenTree, nodes: readonly number[], k: number): Candidate[][] {
    return nodes.map((n) => (this.heads[tree.depths[n] - 1] ?? []).slice(0, k));
  }

  /** The heads' candidates at the last accepted node of a chained run (GpuTreeVerifier.chainBatch), [head][rank]. */
  setHeads(heads: readonly (readonly Candidate[])[]): void {
    this.heads = heads.map((h) => [...h]);
  }

  accepted(_tree: TokenTree, path: readonly number[], _bonus: number, result: VerifyResult): void {
    if (!result.medusa) throw new Error('medusa draft: the verification returned no Medusa candidates');
    const node = path[path.length - 1];
    // Deterministic children are accepted along the picks, which is where the verifier ran the heads.
    if (result.medusaNode !== node) throw new Error(`medusa draft: the heads ran at node ${result.medusaNode}, acceptance ended at node ${node}`);
    this.heads = result.medusa;
  }
}
