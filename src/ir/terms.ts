// Questions about a term that many layers ask (passes, printers, both backends), answered once.
import { lagRange } from './masks.ts';
import type { Decay, Id, OutputItem, Program, Term, TermForm } from './types.ts';

/** A term classified as a causal prefix sum: s(i,j) = Σ_f φ_i[f] ψ_j[f] (· decay). */
export type PrefixForm = Extract<TermForm, { kind: 'prefix' }>;

/** The node a decay reads: γ (a parameter, raised to the lag i−j) or α (a per-token gate, Π_{l=j+1..i} α_l). */
export function decayNode(d: Decay): Id {
  return d.kind === 'constant' ? d.gamma : d.alpha;
}

/** A term classified as softmax attention: exp(logit) under the causal mask, alone in normalize(…, 0). */
export type SoftmaxForm = Extract<TermForm, { kind: 'softmax' }>;

/** Terms whose decoding state grows with the sequence (softmax attention's key/value cache). */
export function growingTerms(p: Program): Term[] {
  return p.terms.filter((t) => t.form.kind === 'softmax');
}

/** Is `term` alone in an output item normalize(term, 0)? What softmax attention needs for its running max. */
export function aloneInExactNormalize(items: readonly OutputItem[], term: string): boolean {
  return items.some((o) => o.kind === 'norm' && o.eps === 0 && o.terms.length === 1 && o.terms[0] === term);
}

/**
 * A quadratic term under a mask that bounds neither the lag nor the group (softmax attention's gradient terms,
 * which passes/autodiff.ts classifies as built): no chunked form, the parallel one only.
 */
export function unboundedQuadratic(t: Term): boolean {
  return t.form.kind === 'quadratic' && !t.noncausal && !lagRange(t.mask) && !t.mask.some((m) => m.kind === 'group');
}
