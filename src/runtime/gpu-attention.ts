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
}

/** One attention layer; `params` are the variant's parameters of that layer, named as in the variant. */
export type GpuAttentionFactory = (layer: number, params: Record<string, GPUBuffer>) => GpuAttention;
