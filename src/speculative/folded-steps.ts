// Where the attention state lives while a GPU verifier's tree steps fold their commit (issue 14): each step's
// tree launch per layer also commits the previous step's accepted path (backends/wgsl/tree-fold.ts), reading one
// FoldSet of the layer (packed state, the previous step's nodes' inputs) and writing the other. A step is then five
// dispatches per layer, as a decode step is, where the separate commit made it six.
//
// Decoding, prefills and recorded decode steps bind the layers' own state buffers, so the sets are only tree mode's:
// `enter` copies the layer state into set 0 before the first folded step, `leave` copies the set holding the state
// back when the verifier flushes (before plain decoding, at the end of a generation); copies cost no dispatch. The
// pending path itself is committed by the step that follows it, or on flush by the separate commit kernel.
import type { FoldLayout } from '../../backends/wgsl/tree-fold.ts';
import type { Gpu } from '../runtime/device.ts';
import type { AttentionEncoder } from '../model/gpu-step-plan.ts';
import type { DimsSlot, TreeAttention } from '../runtime/tree-attention.ts';
import { FoldSets } from '../runtime/tree-fold-sets.ts';

/** TREE_SEQ uploads of a step whose sequences sit at positions of their own (FoldedSteps.attend). */
export interface SequenceSlots {
  /** Each sequence's offset past the state's position and its pending path's length. */
  readonly commit: GPUBuffer;
  /** Each sequence's offset past `after` (path length 0). */
  readonly tree: GPUBuffer;
  /** The smallest position of the batch after the commit. */
  readonly after: number;
}

export class FoldedSteps {
  /** The set holding the state (the next folded step reads it), or null: the layers' own state buffers hold it. */
  private at: number | null = null;
  /** The batch size the sets holding the state were made for. */
  private b = 0;
  private readonly byBatch = new Map<number, FoldSets[]>();

  constructor(private readonly gpu: Gpu, private readonly layout: FoldLayout, private readonly layers: readonly TreeAttention[], private readonly maxNodes: number) {}

  /** Whether the state is in the sets (enter records nothing then). */
  get entered(): boolean {
    return this.at !== null;
  }

  /** Records, if the state is still in the layers' buffers, its copy into set 0 of each layer (before any pass of the encoder). */
  enter(encoder: GPUCommandEncoder, states: readonly Readonly<Record<string, GPUBuffer>>[], b: number): void {
    if (this.at !== null) return;
    this.recordEnter(encoder, states, b);
    this.enterRecorded(b);
  }

  /** Records the copy of the layers' state into set 0 of each layer, and nothing more: enterRecorded once it is submitted. */
  recordEnter(encoder: GPUCommandEncoder, states: readonly Readonly<Record<string, GPUBuffer>>[], b: number): void {
    this.setsOf(b).forEach((s, l) => s.copyIn(encoder, states[l], 0));
  }

  /** The copies recordEnter recorded for `b` sequences were submitted: the state is in set 0. */
  enterRecorded(b: number): void {
    if (this.at !== null) throw new Error('folded tree step: the state is in the sets already');
    this.at = 0;
    this.b = b;
  }

  /**
   * The attention of a folded step `ahead` steps after the next one (a chained run's later steps): verify the
   * step's `rows` nodes (parents in `parents`) after `pos` committed tokens and the pending path of `pathLength`
   * nodes (indices in `path`), and fold that path into the other set. With `dims`, the GPU's (b, P, pos, N).
   * A path the host knows to be longer than `foldUpTo` is committed by the packed commit launch first and the tree
   * folded with nothing pending: each node's walk then skips it (six launches per layer instead of five).
   * `seq` (sequences at positions of their own, batch speculation): `commit` holds each sequence's offset past `pos`
   * and pending length (at most pathLength), `tree` its offset past `after`, the smallest position after the commit.
   */
  attend(b: number, pos: number, rows: number, pathLength: number, parents: GPUBuffer, path: GPUBuffer, ahead = 0, dims?: DimsSlot, foldUpTo = Infinity, seq?: SequenceSlots): AttentionEncoder {
    if (b !== this.b) throw new Error(`folded tree step of ${b} sequences: enter() first`);
    const k = this.setAhead(ahead);
    const sets = this.setsOf(b);
    const first = !dims && pathLength > foldUpTo;
    return (pass, n, io) => {
      const [from, to] = [sets[n].sets[k], sets[n].sets[1 - k]];
      const tree = { inputs: { q: io.q, k: io.k, v: io.v }, parents, o: io.o, path };
      if (!first) return this.layers[n].encodeFolded(pass, { ...tree, ...(seq && { seq: seq.commit }) }, from, to, b, pos, rows, pathLength, dims);
      this.layers[n].encodeFoldCommit(pass, path, from, b, pos, pathLength, seq?.commit);
      this.layers[n].encodeFolded(pass, { ...tree, ...(seq && { seq: seq.tree }) }, from, to, b, seq ? seq.after : pos + pathLength, rows, 0);
    };
  }

  /** The set a folded step `ahead` steps after the next one reads (attend). */
  setAhead(ahead: number): number {
    if (this.at === null) throw new Error('folded tree step: enter() first');
    return (this.at + ahead) % 2;
  }

  /** After a submit of `steps` folded steps: the state is in the other set each step. */
  advance(steps: number): void {
    if (this.at === null) throw new Error('folded tree step: enter() first');
    this.at = (this.at + steps) % 2;
  }

  /** Records the copy of the state back into the layers' buffers; false when it is there already. */
  leave(encoder: GPUCommandEncoder, states: readonly Readonly<Record<string, GPUBuffer>>[]): boolean {
    if (this.at === null) return false;
    const at = this.at;
    this.setsOf(this.b).forEach((s, l) => s.copyOut(encoder, at, states[l]));
    this.at = null;
    return true;
  }

  /** The layers' buffers were rewritten (a prefill): whatever the sets hold is stale. */
  reset(): void {
    this.at = null;
  }

  destroy(): void {
    for (const sets of this.byBatch.values()) for (const s of sets) s.destroy();
    this.byBatch.clear();
  }

  private setsOf(b: number): FoldSets[] {
    let sets = this.byBatch.get(b);
    if (!sets) {
      sets = this.layers.map((_, l) => new FoldSets(this.gpu, this.layout, b, this.maxNodes, `layer ${l} tree`));
      this.byBatch.set(b, sets);
    }
    return sets;
  }
}
