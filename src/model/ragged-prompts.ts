// A batch of prompts of different lengths. Every step moves every sequence one token, so sequences keep one
// position for the batch (the kernels, softmax attention's cache and RoPE need nothing new): the prompts' common
// length is prefilled together (step 0), then step k ≥ 1 feeds a sequence that is still inside its prompt its next
// prompt token (teacher forcing, its pick discarded) and every other sequence its own last pick. Sequence s, whose
// prompt is `offset` = length − common tokens longer than the common part, picks its first new token at step offset
// and its token g at step offset + g; after `extra` (the largest offset) forced steps every sequence is generating,
// the shorter ones `extra − offset` tokens ahead. The exact state of each: one token a step, in order, as if alone.
//
// Sampling: token g of sequence s takes uniform g·b + s of the run's stream, whichever step picks it — the order plain
// batched sampling of equal prompts draws in (b draws a step, sequence 0 first) — so a ragged batch samples each
// sequence's tokens with the draws an equal-length batch would give it, and speculative decoding (generate-batch.ts)
// can reproduce them token by token.

export interface RaggedPlan {
  /** Tokens every prompt has: prefilled together. */
  readonly common: number;
  /** Per sequence: its prompt's length − common (the step that picks its first new token). */
  readonly offsets: readonly number[];
  /** The largest offset: forced steps after the prefill. */
  readonly extra: number;
}

export function raggedPlan(prompts: readonly (readonly number[])[]): RaggedPlan {
  if (prompts.length === 0) throw new Error('ragged prompts: no prompts');
  const lengths = prompts.map((p) => p.length);
  const common = Math.min(...lengths);
  if (common === 0) throw new Error(`ragged prompts: prompt ${lengths.indexOf(0)} is empty`);
  const offsets = lengths.map((n) => n - common);
  return { common, offsets, extra: Math.max(...offsets) };
}

/** The common part of every prompt: what step 0 prefills. */
export function commonPrompts(prompts: readonly (readonly number[])[], plan: RaggedPlan): number[][] {
  return prompts.map((p) => p.slice(0, plan.common));
}

/** The prompt token sequence s is forced to feed step k ≥ 1 (its token common + k − 1), or undefined past its prompt. */
export function forcedToken(prompts: readonly (readonly number[])[], plan: RaggedPlan, k: number, s: number): number | undefined {
  return k - 1 < plan.offsets[s] ? prompts[s][plan.common + k - 1] : undefined;
}

/** The token sequence s feeds step k ≥ 1: its forced prompt token, else `last` (its pick of step k − 1). */
export function stepInput(prompts: readonly (readonly number[])[], plan: RaggedPlan, k: number, s: number, last: number): number {
  return forcedToken(prompts, plan, k, s) ?? last;
}

/** Whether step k's pick of sequence s is one of its new tokens (token k − offset). */
export function picksNewToken(plan: RaggedPlan, k: number, s: number): boolean {
  return k >= plan.offsets[s];
}

/**
 * The uniform draws a model makes for a ragged batch (b a step, sequence 0 first, from step 0 on), such that token g
 * of sequence s gets `draw(g, s)`; a pick that is discarded (inside a prompt) gets 0.5.
 */
export function raggedDraws(plan: RaggedPlan, draw: (g: number, s: number) => number): () => number {
  const b = plan.offsets.length;
  let d = 0;
  return () => {
    const k = Math.floor(d / b);
    const s = d % b;
    d++;
    const g = k - plan.offsets[s];
    return g >= 0 ? draw(g, s) : 0.5;
  };
}

/** Draw g·b + s of `stream` for token g of sequence s (the draws pulled from the stream in order as needed). */
export function batchDraws(stream: () => number, b: number): (g: number, s: number) => number {
  const draws: number[] = [];
  return (g, s) => {
    while (draws.length <= g * b + s) draws.push(stream());
    return draws[g * b + s];
  };
}
