// The feature nodes of a chunked program: what each term's chunk kernel stages per row besides the inputs — a
// prefix term's φ, ψ and decay, a bounded term's query and key frontier, and a value that is not an input. The
// unfused plan materialises every one that computes something in a feature kernel of its own ([b, t, …axes],
// lower.ts's featureKernel; unfusedFeatures); the fused plan computes them inline per chunk and column tile, or, for
// the ones in its prologue set (LowerOptions.prologue), reads them from the same feature kernels. Parameters,
// constants and inputs are not feature nodes: the kernel reads them as they are.
import { decayNode } from '../../src/ir/terms.ts';
import type { Id, Program, Term } from '../../src/ir/types.ts';
import type { Sizes } from './common.ts';
import { elementOps } from './element-ops.ts';
import { frontier } from './layout.ts';

/** The feature nodes of `terms` (default every term), each once, in term order. Softmax and general terms have none. */
export function featureNodes(p: Program, terms: readonly Term[] = p.terms): Id[] {
  const out = new Set<Id>();
  for (const t of terms) {
    const ids: Id[] = [];
    if (t.form.kind === 'prefix') ids.push(t.form.phi, t.form.psi, ...(t.form.decay ? [decayNode(t.form.decay)] : []));
    else if (t.form.kind !== 'softmax' && t.form.kind !== 'general') ids.push(...Object.values(frontier(p, t.score)).flat());
    if (p.nodes[t.value].op !== 'input') ids.push(t.value);
    for (const id of ids) {
      const n = p.nodes[id];
      if (n.op !== 'input' && n.type.side !== 'param' && n.type.side !== 'const') out.add(id);
    }
  }
  return [...out];
}

/** A feature node that is one load or index per element (elementOps 1): nothing for a feature kernel to compute once. */
export const computesNothing = (p: Program, sizes: Sizes, id: Id): boolean => elementOps(p, sizes, id) <= 1;

/**
 * The feature nodes the unfused plan materialises for `terms`: those that compute something. An input read at a
 * position (flash's q and k) or a position is read by the term kernels as it is; a feature kernel would only copy
 * it (on the H200 flash's two copies took 0.33 ms of its 3.3 ms, call 125).
 */
export function unfusedFeatures(p: Program, sizes: Sizes, terms: readonly Term[] = p.terms): Id[] {
  return featureNodes(p, terms).filter((id) => !computesNothing(p, sizes, id));
}

/** What each feature node is to its terms, for a reader: `φ of lin`, `key frontier of local`, `value of lin`. */
export function featureRoles(p: Program): Map<Id, string[]> {
  const roles = new Map<Id, string[]>();
  const add = (id: Id, role: string) => roles.set(id, [...(roles.get(id) ?? []), role]);
  for (const t of p.terms) {
    if (t.form.kind === 'prefix') {
      add(t.form.phi, `φ of ${t.name}`);
      add(t.form.psi, `ψ of ${t.name}`);
      if (t.form.decay) add(decayNode(t.form.decay), `decay of ${t.name}`);
    } else if (t.form.kind !== 'softmax' && t.form.kind !== 'general') {
      const fr = frontier(p, t.score);
      for (const id of fr.query) add(id, `query frontier of ${t.name}`);
      for (const id of fr.key) add(id, `key frontier of ${t.name}`);
    }
    add(t.value, `value of ${t.name}`);
  }
  return roles;
}
