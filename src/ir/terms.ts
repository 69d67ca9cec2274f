// Questions about a term that many layers ask (passes, printers, both backends), answered once.
import type { Decay, Id, TermForm } from './types.ts';

/** A term classified as a causal prefix sum: s(i,j) = Σ_f φ_i[f] ψ_j[f] (· decay). */
export type PrefixForm = Extract<TermForm, { kind: 'prefix' }>;

/** The node a decay reads: γ (a parameter, raised to the lag i−j) or α (a per-token gate, Π_{l=j+1..i} α_l). */
export function decayNode(d: Decay): Id {
  return d.kind === 'constant' ? d.gamma : d.alpha;
}
