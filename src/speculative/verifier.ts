// The target model as speculative decoding sees it: verify a token tree in one forward (every node's
// next-token choice, from the state committed so far, which verification never writes), then commit the
// accepted path into the state without running the model again. cpu-verifier.ts is the float64 reference
// (cpuForward + backends/cpu/tree.ts), gpu-verifier.ts the GPU runtime (GpuModel + the tree kernels).
import type { SamplingOptions } from '../model/sampling.ts';
import type { Candidate } from './candidate.ts';
import type { TokenTree } from './token-tree.ts';

export interface VerifyRequest {
  readonly tree: TokenTree;
  /**
   * Sampling: the uniform draw of each depth — node of depth δ picks its next token with uniforms[δ − 1]
   * (only one node per depth lies on the accepted path, so each emitted token uses one draw). Absent: greedy.
   */
  readonly uniforms?: Float64Array;
  /** Also return every node's logits [nodes, vocab] (the general rejection rule needs p). */
  readonly wantLogits?: boolean;
  /** Candidates of the Medusa heads at the accepted node (see VerifyResult.medusa), this many per head (0 or absent: none). */
  readonly medusaTopK?: number;
  /** Candidates of the model's own next-token distribution at every node (a draft model's proposals). */
  readonly topK?: number;
}

export interface VerifyResult {
  /** Per node: the target's next token there (argmax, or drawn from the sampling distribution with the depth's draw). */
  readonly picks: readonly number[];
  /** [nodes, vocab] when wantLogits. */
  readonly logits?: Float32Array | Float64Array;
  /**
   * When medusaTopK: the Medusa heads' candidates [head][rank] at `medusaNode`, the node greedy acceptance
   * reaches (from the root, the child whose token is the pick at the current node: acceptByPicks' path end) —
   * the accepted node for every deterministic draft, so the heads run once per step, not at every node.
   */
  readonly medusa?: Candidate[][];
  readonly medusaNode?: number;
  /** The model's own top candidates (softmax at temperature 1) at a node, when topK. */
  readonly topAt?: (node: number) => Candidate[];
  /** GPU time of the step's pass (timestamp queries), when measured. */
  readonly gpuMs?: number;
}

/** Verification of several sequences' trees in one forward (batch speculation): one request per sequence. */
export interface BatchVerifyRequest {
  readonly trees: readonly TokenTree[];
  /** Sampling: each sequence's uniforms per depth, as VerifyRequest.uniforms. */
  readonly uniforms?: readonly Float64Array[];
  readonly wantLogits?: boolean;
  readonly medusaTopK?: number;
  readonly topK?: number;
  /**
   * Host work to do while the step runs: called once, after the step is submitted and before its results are read
   * (continuous batching prefills waiting prompts then: prefillAhead). A verifier that does not run on the side of the
   * host calls it before it computes the step.
   */
  readonly whileRunning?: () => Promise<void>;
}

/** A prompt to prefill in sequence s's place (BatchTreeVerifier.refillSequences), its first token drawn with u0. */
export interface SequenceRefill {
  readonly s: number;
  readonly prompt: readonly number[];
  readonly u0: number;
  /** The prompt prefilled already (BatchTreeVerifier.prefillAhead with this prompt and u0): it is placed, not prefilled. */
  readonly ahead?: PrefilledAhead;
}

/** A waiting prompt prefilled before the sequence it takes is known (BatchTreeVerifier.prefillAhead). */
export interface PrefilledAhead {
  readonly prompt: readonly number[];
  readonly u0: number;
}

/**
 * The target for a batch of sequences speculated together: each sequence its own tree and accepted path,
 * one forward for all trees, and commits of each sequence's own length where `perSequence` (otherwise — softmax
 * attention's cache on the GPU keeps one position for the batch — commits of one length).
 */
export interface BatchTreeVerifier {
  readonly vocabSize: number;
  readonly medusaHeads: number;
  /** Largest tree per sequence (nodes, root included). */
  readonly maxNodes: number;
  /** Most sequences one batch may have. */
  readonly maxBatch: number;
  /** Tokens folded into the furthest sequence's state, commits not yet applied included. */
  readonly position: number;
  /** Whether commitBatch takes paths of different lengths (each sequence then keeps its own position). */
  readonly perSequence: boolean;
  /** Tokens folded into sequence s's state, its commit not yet applied included. */
  positionOf(s: number): number;
  /**
   * Prefills the prompts (of any lengths: src/model/ragged-prompts.ts) from fresh state; returns each sequence's tokens
   * emitted so far — at least one: the last is its next root, the ones before it are in its state — token g of sequence
   * s sampled with draw(g, s) unless greedy.
   */
  startBatch(prompts: readonly (readonly number[])[], sampling: SamplingOptions, draw: (g: number, s: number) => number): Promise<number[][]>;
  verifyBatch(request: BatchVerifyRequest): Promise<VerifyResult[]>;
  /** Folds paths (root first; all of one length unless perSequence) of the last verified trees into the states. */
  commitBatch(paths: readonly (readonly number[])[]): void;
  flush(): Promise<void>;
  /**
   * Continuous batching (perSequence): each refill's `prompt` prefilled from fresh state in sequence s's place, the other
   * sequences kept where they are (a pending commit applied first); returns each one's next token, sampled with its draw
   * u0 unless greedy.
   */
  refillSequences?(refills: readonly SequenceRefill[], sampling: SamplingOptions): Promise<number[]>;
  /**
   * Continuous batching: `prompt` (waiting for a sequence) prefilled now, on a state of its own, while the batch's
   * submitted steps run; a later refill that names it (SequenceRefill.ahead) places it in the freed sequence without a
   * prefill or a readback. Each is placed once.
   */
  prefillAhead?(prompt: readonly number[], u0: number, sampling: SamplingOptions): Promise<PrefilledAhead>;
  prepare?(opts: { medusaTopK?: number; topK?: number; batch?: number }): Promise<void>;
  destroy(): Promise<void>;
}

export interface TreeVerifier {
  readonly vocabSize: number;
  /** Medusa heads in the checkpoint (0: none). */
  readonly medusaHeads: number;
  /** Largest tree (nodes, root included) one verification takes. */
  readonly maxNodes: number;
  /** Tokens folded into the state, commits not yet applied included. */
  readonly position: number;
  /** Prefills the prompt from fresh state; returns its next token (sampled with the draw u0 unless greedy). */
  start(prompt: readonly number[], sampling: SamplingOptions, u0: number): Promise<number>;
  verify(request: VerifyRequest): Promise<VerifyResult>;
  /** Folds nodes `path` (root first) of the last verified tree into the state; applied before the next verify. */
  commit(path: readonly number[]): void;
  /** Applies a pending commit now. */
  flush(): Promise<void>;
  /** Compiles and allocates what verifications will need (GPU plans), so that a timed run measures none of it. */
  prepare?(opts: { medusaTopK?: number; topK?: number }): Promise<void>;
  destroy(): Promise<void>;
}

/** Checks the tree fits a verifier (one root, topological order, at most maxNodes) before any work. */
export function checkTree(tree: TokenTree, maxNodes: number, vocab: number): void {
  const n = tree.tokens.length;
  if (n < 1 || n > maxNodes) throw new Error(`token tree of ${n} nodes; the verifier was compiled for 1..${maxNodes} (--max-nodes counts draft nodes, the root comes on top)`);
  tree.parents.forEach((p, i) => {
    if (i === 0 ? p !== -1 : !(p >= 0 && p < i)) throw new Error(`token tree: node ${i} has parent ${p} (node 0 is the root, parents come first)`);
  });
  tree.tokens.forEach((t, i) => {
    if (!Number.isInteger(t) || t < 0 || t >= vocab) throw new Error(`token tree: node ${i} has token ${t}, outside [0, ${vocab})`);
  });
}

/** Checks an accepted path runs root → child → … through `tree`. */
export function checkPath(tree: TokenTree, path: readonly number[]): void {
  path.forEach((node, k) => {
    const want = k === 0 ? -1 : path[k - 1];
    if (tree.parents[node] !== want) throw new Error(`accepted path entry ${k} (node ${node}) has parent ${tree.parents[node]}, expected ${want}`);
  });
}

/** The k best tokens of a distribution, ties to the lower index. */
export function topCandidates(probs: ArrayLike<number>, k: number): Candidate[] {
  const out: Candidate[] = [];
  const taken = new Set<number>();
  for (let r = 0; r < k; r++) {
    let best = -1;
    for (let i = 0; i < probs.length; i++) if (!taken.has(i) && (best < 0 || probs[i] > probs[best])) best = i;
    if (best < 0) break;
    taken.add(best);
    out.push({ token: best, prob: probs[best] });
  }
  return out;
}

/** softmax(logits) in float64. */
export function softmax(logits: ArrayLike<number>): Float64Array {
  let m = -Infinity;
  for (let i = 0; i < logits.length; i++) m = Math.max(m, logits[i]);
  const p = new Float64Array(logits.length);
  let s = 0;
  for (let i = 0; i < logits.length; i++) s += p[i] = Math.exp(logits[i] - m);
  for (let i = 0; i < p.length; i++) p[i] /= s;
  return p;
}

export { variantAxisSizes } from '../runtime/compiled-attention.ts';
