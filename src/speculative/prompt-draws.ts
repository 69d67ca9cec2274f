// The uniforms batch speculation draws each prompt's tokens with (generate-batch.ts). The first B prompts, the batch
// that starts together, take plain batched sampling's order: token g of sequence s is draw g·B + s of one stream seeded
// by `seed` (GpuModel draws b a step, sequence 0 first), so deterministic drafts emit plain batched sampling's tokens.
// A prompt that refills a sequence later (continuous batching) draws from a stream of its own, seeded by the seed and
// its index: its tokens depend neither on the sequence it lands in, nor on when, nor on what the others accepted.
import { rng } from '../tensor.ts';

export class PromptDraws {
  private readonly first: () => number;
  private readonly firstDrawn: number[] = [];
  private readonly own = new Map<number, { readonly next: () => number; readonly drawn: number[] }>();

  /** `batch`: the prompts that start together (B ≥ 1). */
  constructor(private readonly seed: number, private readonly batch: number) {
    if (!(Number.isInteger(batch) && batch >= 1)) throw new Error(`prompt draws: batch must be a positive integer, got ${batch}`);
    this.first = rng(seed);
  }

  /** The uniform of prompt r's token g (r, g ≥ 0). */
  draw(r: number, g: number): number {
    if (!(Number.isInteger(r) && r >= 0 && Number.isInteger(g) && g >= 0)) throw new Error(`prompt draws: prompt ${r}, token ${g}`);
    if (r < this.batch) {
      const i = g * this.batch + r;
      while (this.firstDrawn.length <= i) this.firstDrawn.push(this.first());
      return this.firstDrawn[i];
    }
    let d = this.own.get(r);
    if (!d) this.own.set(r, (d = { next: rng(((this.seed ^ 0x5bd1e995) + 0x9e3779b9 * r) >>> 0), drawn: [] }));
    while (d.drawn.length <= g) d.drawn.push(d.next());
    return d.drawn[g];
  }
}
