// What a chained batch run (GpuTreeVerifier.chainBatch) reads back, and how: one staging buffer holding the chain
// kernel's ring (backends/wgsl/chain-batch.ts: per sequence its step count, the last verified tree's tokens, then per
// step the path length L and the L tokens it emitted), the last paths (node indices, the pending commit) and the heads'
// top-k at each sequence's last accepted node.
import { chainBatchRingWords, chainBatchStepsAt } from '../../backends/wgsl/chain-batch.ts';
import type { Candidate } from './candidate.ts';

/** A chained batch run's result. */
export interface BatchChainResult {
  /** Per sequence, per step: the tokens the step emitted (its accepted drafts and the bonus). */
  readonly steps: readonly (readonly (readonly number[])[])[];
  /** Per sequence: the heads' candidates at its last accepted node, [head][rank] (ids ≥ vocab dropped). */
  readonly medusa: readonly Candidate[][][];
  /** GPU ms of the run's pass (all its steps), where the model writes timestamps. */
  readonly gpuMs?: number;
}

/** Runs of one batch chain submitted and not read yet, at most (each holds a readback buffer). */
export const MAX_RUNS_IN_FLIGHT = 8;

/**
 * Runs a chained batch keeps in flight by default: the oldest is read while the next runs. On the H200 (call 206,
 * batch 8 of root-only steps in one chain) 2, 3, 4 and 6 ran a step in 0.553–0.588 ms alike, 1 in 0.86–2.2 ms.
 */
export const CHAIN_RUNS_IN_FLIGHT = 2;

/** A chained batch run submitted (GpuTreeVerifier.beginChainBatch, continueChainBatch): its result once read back. */
export interface BatchChainSubmission {
  readonly steps: number;
  /** Resolves in submission order: a run's result is read after the results of the runs before it. */
  readonly result: Promise<BatchChainResult>;
}

/** Byte offsets in the staging buffer. */
export interface ChainBatchLayout {
  readonly ring: number;
  readonly ringWords: number;
  readonly path: number;
  /** Per head: ids [b·k] u32, then probs [b·k] f32. */
  readonly medusa: readonly number[];
  /** The pass's two timestamps (u64). */
  readonly time: number;
  readonly bytes: number;
}

export function chainBatchLayout(b: number, steps: number, maxNodes: number, medusaK: number, heads: number): ChainBatchLayout {
  const ringWords = chainBatchRingWords(steps, maxNodes);
  let bytes = 0;
  const take = (n: number) => {
    const at = bytes;
    bytes += n;
    return at;
  };
  const ring = take(4 * b * ringWords);
  const path = take(4 * b * maxNodes);
  const medusa = Array.from({ length: heads }, () => take(8 * b * medusaK));
  bytes = Math.ceil(bytes / 8) * 8; // resolveQuerySet's copy lands on 8 bytes
  const time = take(16);
  return { ring, ringWords, path, medusa, time, bytes };
}

export interface ReadChainBatch extends BatchChainResult {
  /** Per sequence, per step: the accepted path's length (root included), the tokens it emitted. */
  readonly lengths: readonly (readonly number[])[];
  /** Per sequence: the last step's accepted path (node indices from the root), pending. */
  readonly lastPaths: readonly (readonly number[])[];
  /** Per sequence: the last verified tree's tokens (its `nodes` nodes, padding rows left out). */
  readonly lastTokens: readonly (readonly number[])[];
}

/** Parses the staging buffer; throws when a sequence's ring does not hold `steps` steps (a kernel that did not run). */
export function readChainBatch(data: ArrayBuffer, layout: ChainBatchLayout, b: number, nodes: number, steps: number, maxNodes: number, medusaK: number, vocab: number): ReadChainBatch {
  const ring = new Uint32Array(data, layout.ring, b * layout.ringWords);
  const path = new Float32Array(data, layout.path, b * maxNodes);
  const all: number[][][] = [];
  const lengths: number[][] = [];
  const lastPaths: number[][] = [];
  const lastTokens: number[][] = [];
  for (let s = 0; s < b; s++) {
    const r0 = s * layout.ringWords;
    if (ring[r0] !== steps) throw new Error(`chained batch run: sequence ${s}'s ring holds ${ring[r0]} steps, ${steps} were run`);
    const seqSteps: number[][] = [];
    const seqLengths: number[] = [];
    for (let k = 0; k < steps; k++) {
      const at = r0 + chainBatchStepsAt(maxNodes) + k * (maxNodes + 1);
      const L = ring[at];
      if (!(L >= 1 && L <= maxNodes)) throw new Error(`chained batch run: sequence ${s}, step ${k}: a path of ${L} nodes`);
      seqLengths.push(L);
      seqSteps.push(Array.from(ring.subarray(at + 1, at + 1 + L)));
    }
    all.push(seqSteps);
    lengths.push(seqLengths);
    const L = seqLengths[steps - 1];
    lastPaths.push(Array.from(path.subarray(s * maxNodes, s * maxNodes + L), (x) => Math.round(x)));
    lastTokens.push(Array.from(ring.subarray(r0 + 1, r0 + 1 + nodes)));
  }
  const medusa = Array.from({ length: b }, (_, s) =>
    layout.medusa.map((at) => {
      const ids = new Uint32Array(data, at + 4 * s * medusaK, medusaK);
      const probs = new Float32Array(data, at + 4 * b * medusaK + 4 * s * medusaK, medusaK);
      return Array.from(ids, (token, r) => ({ token, prob: probs[r] })).filter((c) => c.token < vocab);
    }),
  );
  return { steps: all, medusa, lengths, lastPaths, lastTokens };
}
