// Rebuilds a program node by node: drops what no term reaches, applies rewrite rules, renumbers ids.
// Passes that rewrite locally are a table of rules handed to this one traversal (tinygrad style).
import { GraphBuilder } from './builder.ts';
import { decayNode } from './terms.ts';
import { mapOperands, operands, type Decay, type Id, type Op, type Program, type TermForm } from './types.ts';

/** A local rewrite: returns the id of an equivalent node (in g), or null to leave the op alone. */
export type Rule = (op: Op, g: GraphBuilder) => Id | null;

export function termRoots(p: Program): Id[] {
  const roots: Id[] = [];
  for (const t of p.terms) {
    roots.push(t.score, t.value);
    if (t.form.kind === 'prefix') {
      roots.push(t.form.phi, t.form.psi);
      if (t.form.decay) roots.push(decayNode(t.form.decay));
    }
  }
  return roots;
}

export function rebuild(p: Program, rules: readonly Rule[] = []): Program {
  const live = new Set<Id>([...p.inputs.map((d) => d.id), ...p.params.map((d) => d.id)]);
  const stack = termRoots(p);
  while (stack.length) {
    const id = stack.pop()!;
    if (live.has(id)) continue;
    live.add(id);
    stack.push(...operands(p.nodes[id]));
  }
  const g = new GraphBuilder([], p.axes);
  const map = new Map<Id, Id>();
  for (const n of p.nodes) {
    if (!live.has(n.id)) continue;
    if (n.op === 'input' || n.op === 'param') {
      map.set(n.id, g.leaf({ op: n.op, name: n.name }, n.type.axes, n.span));
      continue;
    }
    const { id: _id, type: _t, span, ...rest } = n;
    const op = mapOperands(rest as Op, (x) => map.get(x)!);
    let id: Id | null = null;
    for (const rule of rules) {
      id = rule(op, g);
      if (id !== null) break;
    }
    map.set(n.id, id ?? g.add(op, span));
  }
  const m = (id: Id) => map.get(id)!;
  const decay = (d: Decay | null): Decay | null =>
    d === null ? null : d.kind === 'constant' ? { kind: 'constant', gamma: m(d.gamma) } : { kind: 'gate', alpha: m(d.alpha) };
  const form = (f: TermForm): TermForm =>
    f.kind === 'prefix' ? { ...f, phi: m(f.phi), psi: m(f.psi), decay: decay(f.decay) } : f.kind === 'softmax' ? { ...f, logit: m(f.logit) } : f;
  const lets = Object.fromEntries(Object.entries(p.lets).filter(([, id]) => map.has(id)).map(([k, id]) => [k, m(id)]));
  return {
    ...p,
    nodes: g.nodes,
    axes: g.axes,
    inputs: p.inputs.map((d) => ({ ...d, id: m(d.id) })),
    params: p.params.map((d) => ({ ...d, id: m(d.id) })),
    lets,
    terms: p.terms.map((t) => ({ ...t, score: m(t.score), value: m(t.value), form: form(t.form) })),
  };
}
