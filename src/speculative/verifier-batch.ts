// A batch verifier made of one verifier per sequence (the float64 CpuTreeVerifier in tests): the reference
// that generate-batch.ts's loop runs against. Separate verifiers keep separate positions, so each sequence
// commits its own length, as the GPU verifier's does; `lockstep` holds it to the contract of softmax attention
// on the GPU instead (commits of one length), so that the loop's other mode is checked against float64 too.
import type { SamplingOptions } from '../model/sampling.ts';
import type { BatchTreeVerifier, BatchVerifyRequest, SequenceRefill, TreeVerifier, VerifyResult } from './verifier.ts';

export class VerifierBatch implements BatchTreeVerifier {
  readonly perSequence: boolean;

  constructor(private readonly verifiers: readonly TreeVerifier[], opts: { lockstep?: boolean } = {}) {
    if (verifiers.length === 0) throw new Error('VerifierBatch: no verifiers');
    this.perSequence = !opts.lockstep;
  }

  get vocabSize(): number {
    return this.verifiers[0].vocabSize;
  }

  get medusaHeads(): number {
    return this.verifiers[0].medusaHeads;
  }

  get maxNodes(): number {
    return Math.min(...this.verifiers.map((v) => v.maxNodes));
  }

  get maxBatch(): number {
    return this.verifiers.length;
  }

  get position(): number {
    return Math.max(...this.verifiers.map((v) => v.position));
  }

  positionOf(s: number): number {
    return this.verifiers[s].position;
  }

  /** Each sequence's own prompt through its own verifier (prompts of any lengths): its first token. */
  async startBatch(prompts: readonly (readonly number[])[], sampling: SamplingOptions, draw: (g: number, s: number) => number): Promise<number[][]> {
    if (prompts.length !== this.verifiers.length) throw new Error(`VerifierBatch: ${prompts.length} prompts for ${this.verifiers.length} verifiers`);
    const out: number[][] = [];
    for (const [s, v] of this.verifiers.entries()) out.push([await v.start(prompts[s], sampling, draw(0, s))]);
    return out;
  }

  async verifyBatch(req: BatchVerifyRequest): Promise<VerifyResult[]> {
    await req.whileRunning?.(); // nothing runs on the side of the host here
    const out: VerifyResult[] = [];
    for (const [s, v] of this.verifiers.entries()) {
      out.push(await v.verify({
        tree: req.trees[s],
        ...(req.uniforms && { uniforms: req.uniforms[s] }),
        ...(req.wantLogits && { wantLogits: true }),
        ...(req.medusaTopK && { medusaTopK: req.medusaTopK }),
        ...(req.topK && { topK: req.topK }),
      }));
    }
    return out;
  }

  /** Each refilled sequence's verifier starts afresh on its prompt (continuous batching); the others are untouched. */
  async refillSequences(refills: readonly SequenceRefill[], sampling: SamplingOptions): Promise<number[]> {
    if (!this.perSequence) throw new Error('refillSequences: a lockstep batch keeps one position for the batch');
    const bad = refills.find(({ s }) => !(Number.isInteger(s) && s >= 0 && s < this.verifiers.length));
    if (bad) throw new Error(`refillSequences: sequence ${bad.s} of ${this.verifiers.length}`);
    const out: number[] = [];
    for (const { s, prompt, u0 } of refills) out.push(await this.verifiers[s].start(prompt, sampling, u0));
    return out;
  }

  commitBatch(paths: readonly (readonly number[])[]): void {
    if (!this.perSequence && paths.some((p) => p.length !== paths[0].length)) throw new Error(`commit: paths of lengths ${paths.map((p) => p.length).join(', ')}: the state keeps one position for the batch`);
    paths.forEach((p, s) => this.verifiers[s].commit(p));
  }

  async flush(): Promise<void> {
    for (const v of this.verifiers) await v.flush();
  }

  async destroy(): Promise<void> {
    for (const v of this.verifiers) await v.destroy();
  }
}
