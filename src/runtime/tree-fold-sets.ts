// The ping-pong pair of one layer's folded tree steps (tree-attention.ts encodeFolded, backends/wgsl/tree-fold.ts):
// two FoldSets, each a packed state and a set of kept node inputs. Step k reads set k mod 2 and writes the other.
//
// Decoding, the chunked prefill and recorded decode steps bind the layer's own state buffers (GpuAttentionState
// .buffers), so tree mode keeps its state here and crosses over by buffer copies, which cost no dispatch:
// copyIn before the first folded step (layer state → a set's packed state), copyOut when leaving tree mode (the
// set holding the state → the layer state). Buffer i of the layer state is floats [b · at_i, b · (at_i + per_i))
// of a packed state (FoldLayout).
import type { FoldLayout } from '../../backends/wgsl/tree-fold.ts';
import { BufferUsage, type Gpu } from './device.ts';
import type { FoldSet } from './tree-attention.ts';

export class FoldSets {
  readonly sets: readonly [FoldSet, FoldSet];

  constructor(gpu: Gpu, private readonly layout: FoldLayout, readonly b: number, maxNodes: number, label: string) {
    const buffer = (what: string, floats: number) =>
      gpu.device.createBuffer({ label: `${label} ${what}`, size: Math.max(16, 4 * floats), usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    const set = (k: number): FoldSet => ({ state: buffer(`folded state ${k}`, b * layout.stateFloats), nodes: buffer(`kept nodes ${k}`, b * maxNodes * layout.nodeFloats) });
    this.sets = [set(0), set(1)];
  }

  /** Records the copy of the layer's state buffers into set `k`'s packed state. */
  copyIn(encoder: GPUCommandEncoder, state: Readonly<Record<string, GPUBuffer>>, k: number): void {
    for (const x of this.layout.state) encoder.copyBufferToBuffer(this.bufferOf(state, x.name), 0, this.sets[k].state, 4 * this.b * x.at, 4 * this.b * x.per);
  }

  /** Records the copy of set `k`'s packed state back into the layer's state buffers. */
  copyOut(encoder: GPUCommandEncoder, k: number, state: Readonly<Record<string, GPUBuffer>>): void {
    for (const x of this.layout.state) encoder.copyBufferToBuffer(this.sets[k].state, 4 * this.b * x.at, this.bufferOf(state, x.name), 0, 4 * this.b * x.per);
  }

  destroy(): void {
    for (const s of this.sets) {
      s.state.destroy();
      s.nodes.destroy();
    }
  }

  private bufferOf(state: Readonly<Record<string, GPUBuffer>>, name: string): GPUBuffer {
    const buf = state[name];
    if (!buf) throw new Error(`folded tree state: the layer state has no buffer '${name}'`);
    return buf;
  }
}
