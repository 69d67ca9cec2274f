// The feature nodes of a chunked program: what each term's chunk kernel stages per row besides the inputs — a
// prefix term's φ, ψ and decay, a bounded term's query and key frontier, and a value that is not an input. The
// unfused plan materialises every one in a feature kernel of its own ([b, t, …axes], lower.ts's featureKernel);
// the fused plan computes them inline per chunk and column tile, or, for the ones in its prologue set
// (LowerOptions.prologue), reads them from the same feature kernels. Parameters, constants and inputs are not
// feature nodes: the kernel reads them as they are.
import { decayNode } from '../../src/ir/terms.ts';
import type { Id, Program, Term } from '../../src/ir/types.ts';
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
