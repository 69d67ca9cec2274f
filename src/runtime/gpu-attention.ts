// The seam between the model runtime and a compiled attention variant on the GPU. The model owns the
// projections, norms and MLP; an attention layer owns its state (S, z, the convolution's ring buffer …)
// and records its kernels into the model's compute pass, so a whole step stays one command buffer.
//
//   o[b, t, h, e] = variant(q, k, v | state)            q, k, v, o: [b, t, heads, headDim] f32, contiguous
//
// encodeForward with t > 1 is prefill (the chunked form), t = 1 a decode step (the recurrent form). The
// buffers hold exactly b·t·heads·headDim floats. Kernels that run after encodeForward read the state the
// step wrote, so `advance` only does host-side bookkeeping once the command buffer is submitted.

export interface GpuAttentionState {
  /** Tokens folded in so far. */
  readonly position: number;
  /**
   * The state's buffers by the recurrent plan's names ('state:S0', 'state:ring12', …), when the layer is a
   * compiled variant (src/runtime/compiled-attention.ts): the speculative runtime's tree kernels read them
   * and its commit writes them.
   */
  readonly buffers?: Readonly<Record<string, GPUBuffer>>;
}

export interface GpuAttention {
  /** q, k, v, o are all [b, t, heads, headDim] f32, contiguous. */
  readonly heads: number;
  readonly headDim: number;
  /** Fresh state for b sequences (zeros). */
  createState(b: number): GpuAttentionState;
  /**
   * Optional: makes `state` fresh again (zeros, position 0) in place, keeping its buffers and what was made for
   * them (bind groups), for the next prefill of the same b: a prefill per prompt then allocates nothing. The
   * zeros are recorded into `encoder`, which the caller submits before any later step on the state; work
   * submitted earlier on the old contents runs first (queue order). Absent: the model calls createState.
   */
  resetState?(state: GpuAttentionState, encoder: GPUCommandEncoder): void;
  /**
   * o = attention over t new tokens appended to the state's sequence; the state advances by t. Encoded into
   * `pass`; uniforms it writes land when it records, so submit the pass before recording another step.
   */
  encodeForward(
    pass: GPUComputePassEncoder,
    io: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; o: GPUBuffer },
    state: GpuAttentionState,
    b: number,
    t: number,
  ): void;
  /** Called after the command buffer holding encodeForward was submitted (host-side bookkeeping such as position). */
  advance(state: GpuAttentionState, t: number): void;
  /**
   * Optional: lets the model replay a recorded decode step (src/model/step-recording.ts) instead of calling
   * encodeForward. For a step of t tokens on `state` it does what encodeForward does besides recording —
   * refuses what encodeForward would refuse, writes the uniforms the step reads — and returns the step's
   * variant: encodeForward would record exactly what it recorded for an earlier call on this state with the same
   * buffers, b, t and variant (a variant names, say, which of several uniform buffers the step binds). Layers
   * without it are recorded afresh every step.
   */
  prepareReplay?(state: GpuAttentionState, b: number, t: number): number;
  /**
   * Optional: consecutive one-token steps of a state that may be recorded into one command buffer (advance
   * called after each is recorded, before the submit) — their uniforms kept apart. Absent: 1, a submit each.
   */
  readonly chainedSteps?: number;
  /**
   * Optional: readies what a decode step at batch b runs (compiled-attention.ts compiles the step kernel whose
   * split fills the GPU at that batch). The model awaits it before planning that batch's decode step; a layer
   * steps correctly without it, perhaps slower. `perSequence`: the step that reads a position per sequence
   * (useSequenceOffsets), compiled ahead of its first use.
   */
  prepareBatch?(b: number, perSequence?: boolean): Promise<void>;
  /**
   * Optional: from the next call on, sequence s of `state` sits at state.position + offset_s, the offsets in `seq`
   * ([b, 2] f32, the offset first: backends/wgsl/sequence-offsets.ts's TREE_SEQ), where a speculative batch whose
   * sequences committed paths of their own lengths left it; null: one position for the batch again. Compiles what
   * the calls then run. The offsets are read when a step runs, so `seq` may be rewritten between steps. Absent, or
   * rejecting (softmax attention's cache keeps one position for the batch): the layer takes one position.
   */
  useSequenceOffsets?(state: GpuAttentionState, seq: GPUBuffer | null): Promise<void>;
  /**
   * Optional, with useSequenceOffsets: the state's batch position (what the sequence offsets are added to) set to
   * `position`, host bookkeeping only; the caller moves the offsets so that every sequence stays where it was
   * (continuous batching: GpuModel.prefillSequence puts one sequence at a position of its own).
   */
  setPosition?(state: GpuAttentionState, position: number): void;
  /** Training (optional; see TrainableGpuAttention): the chunked forward of whole sequences from a zero state. */
  encodeTrainForward?(pass: GPUComputePassEncoder, io: TrainForwardIo, b: number, t: number): void;
  /** Training (optional; see TrainableGpuAttention): the backward of encodeTrainForward. */
  encodeBackward?(pass: GPUComputePassEncoder, io: BackwardIo, grads: Readonly<Record<string, GPUBuffer>>, b: number, t: number): void;
}

export interface TrainForwardIo {
  readonly q: GPUBuffer;
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly o: GPUBuffer;
}

export interface BackwardIo extends TrainForwardIo {
  /** The cotangent of o: ∂loss/∂o. */
  readonly do: GPUBuffer;
  readonly dq: GPUBuffer;
  readonly dk: GPUBuffer;
  readonly dv: GPUBuffer;
}

/**
 * An attention layer the trainer can differentiate. Both calls take b whole sequences of t tokens, every buffer
 * [b, t, heads, headDim] f32 contiguous, and keep no decoding state (createState, encodeForward and advance are
 * untouched by them):
 *
 *   encodeTrainForward   o[b, i] = variant(q, k, v)[b, i], each sequence from a zero state (the chunked form)
 *   encodeBackward       for the cotangent do of o at the same q, k, v (o is what encodeTrainForward wrote):
 *                          dq, dk, dv = do·∂o/∂(q, k, v)                                      (overwritten)
 *                          grads[p] += Σ_{b, i} do·∂o/∂p for every parameter p of the variant  (accumulated)
 *                        grads[p] holds p's shape in f32, like the parameter buffer the factory was given.
 *
 * The layer's parameters are read from the buffers its factory received, which the trainer keeps current.
 * Scratch the layer needs between the two calls (saved chunk states, normalisers) is its own, kept per (b, t);
 * the trainer encodes a layer's backward after its forward in the same submit, or in a later one with q, k, v
 * and o unchanged. Uniforms a call writes land when it records, as for encodeForward.
 */
export interface TrainableGpuAttention extends GpuAttention {
  encodeTrainForward(pass: GPUComputePassEncoder, io: TrainForwardIo, b: number, t: number): void;
  encodeBackward(pass: GPUComputePassEncoder, io: BackwardIo, grads: Readonly<Record<string, GPUBuffer>>, b: number, t: number): void;
}

export function isTrainable(a: GpuAttention): a is TrainableGpuAttention {
  return typeof a.encodeTrainForward === 'function' && typeof a.encodeBackward === 'function';
}

/** One attention layer; `params` are the variant's parameters of that layer, named as in the variant. */
export type GpuAttentionFactory = (layer: number, params: Record<string, GPUBuffer>) => GpuAttention;
