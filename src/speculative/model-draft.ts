// A separate small draft model (`--speculate draft:DIR`: any checkpoint of this runtime with the target's
// tokenizer and vocabulary). It is a tree verifier itself (cpu-verifier.ts or gpu-verifier.ts over the draft
// checkpoint), so it drafts a whole level per forward: the tree built so far goes through the draft model
// (its recurrent state read only), and each node's candidates are its top tokens — or, when sampling,
// independent draws from its sampling distribution q (temperature, top-k, top-p as the target's), which
// travel with the nodes for the rejection rule. Once the step's tree is complete the draft verifies it
// whole (the nodes added last included), so that after acceptance it commits the same path into its own
// state as the target does, without another forward.
import { samplingDistribution, sampleFromDistribution, type SamplingOptions } from '../model/sampling.ts';
import { rng } from '../tensor.ts';
import type { Candidate } from './candidate.ts';
import type { DraftContext, DraftSource } from './draft.ts';
import type { TokenTree } from './token-tree.ts';
import type { TreeVerifier } from './verifier.ts';

export class ModelDraft implements DraftSource {
  private verifiedNodes = 0;
  private readonly random: () => number;
  private readonly sampled: boolean;

  constructor(
    readonly name: string,
    private readonly draft: TreeVerifier,
    private readonly sampling: SamplingOptions,
    seed: number,
  ) {
    this.sampled = (sampling.temperature ?? 0) > 0;
    this.random = rng((seed ^ 0x2545f491) >>> 0);
  }

  async begin(ctx: DraftContext): Promise<void> {
    // The draft's state holds what the target's holds: the prompt (the root, ctx's last token, is not in it).
    await this.draft.start(ctx.tokens.slice(0, -1), { temperature: 0 }, 0);
    this.verifiedNodes = 0;
  }

  /** The draft model never saw the plainly decoded tokens: its state is rebuilt from the context. */
  async resume(ctx: DraftContext): Promise<void> {
    await this.begin(ctx);
  }

  async candidates(_ctx: DraftContext, tree: TokenTree, nodes: readonly number[], k: number): Promise<Candidate[][]> {
    const V = this.draft.vocabSize;
    if (!this.sampled) {
      const r = await this.draft.verify({ tree, topK: k });
      this.verifiedNodes = tree.tokens.length;
      return nodes.map((n) => r.topAt!(n));
    }
    const r = await this.draft.verify({ tree, wantLogits: true });
    this.verifiedNodes = tree.tokens.length;
    return nodes.map((n) => {
      const q = samplingDistribution(Float64Array.from(r.logits!.subarray(n * V, (n + 1) * V)), this.sampling);
      return Array.from({ length: k }, () => {
        const token = sampleFromDistribution(q, this.random);
        return { token, prob: q[token], q };
      });
    });
  }

  async finalize(_ctx: DraftContext, tree: TokenTree): Promise<void> {
    if (this.verifiedNodes !== tree.tokens.length) await this.draft.verify({ tree });
    this.verifiedNodes = tree.tokens.length;
  }

  accepted(_tree: TokenTree, path: readonly number[]): void {
    this.draft.commit(path);
  }

  async destroy(): Promise<void> {
    await this.draft.destroy();
  }
}
