// Reverse mode through one term's score at a generic pair (i, j): given the score's adjoint g(i, j), the adjoint of
// every value the score reads, as pair-side expressions. Where the walk stops (the frontier):
//   query  – a query-side value with no position in it (φ(q)_i, read at i): its gradient is Σ_j of its adjoint;
//   key    – the same at j: Σ_i of its adjoint (a reverse-time sum);
//   param  – a parameter-side value other than a select: Σ over pairs;
//   select – a parameter indexed by an expression of the lag: Σ over pairs, scattered at the index;
//   decay  – Π α_l or γ^(i−j): its adjoint feeds the gate gradient (gates.ts).
// Query- or key-side values that contain a position (cos(π i / 2M)) are differentiated through, so that what
// reaches the frontier is position-free and can be recomputed per token. Constants and positions get nothing.
import type { GraphBuilder } from '../../src/ir/builder.ts';
import { operands, type Id } from '../../src/ir/types.ts';
import { vjp, type Ops } from './vjp.ts';

export interface Scatter {
  readonly select: Id;
  readonly x: Id;
  readonly axis: string;
  readonly index: Id;
  readonly adjoint: Id;
}

export interface PairAdjoints {
  readonly query: ReadonlyMap<Id, Id>;
  readonly key: ReadonlyMap<Id, Id>;
  readonly param: ReadonlyMap<Id, Id>;
  readonly scatter: readonly Scatter[];
  readonly decay: ReadonlyMap<Id, Id>;
}

type Role = 'interior' | 'query' | 'key' | 'param' | 'select' | 'decay' | 'none';

export function positionFree(g: GraphBuilder, id: Id, memo = new Map<Id, boolean>()): boolean {
  const hit = memo.get(id);
  if (hit !== undefined) return hit;
  const n = g.node(id);
  const free = n.op !== 'position' && operands(n).every((x) => positionFree(g, x, memo));
  memo.set(id, free);
  return free;
}

/** Does id depend on an input or a parameter (so that it has a gradient at all)? */
export function differentiable(g: GraphBuilder, id: Id, memo = new Map<Id, boolean>()): boolean {
  const hit = memo.get(id);
  if (hit !== undefined) return hit;
  const n = g.node(id);
  const d = n.op === 'input' || n.op === 'param' || operands(n).some((x) => differentiable(g, x, memo));
  memo.set(id, d);
  return d;
}

export function pairAdjoints(o: Ops, root: Id, seed: Id): PairAdjoints {
  const g = o.g;
  const free = new Map<Id, boolean>();
  const diff = new Map<Id, boolean>();
  const role = (id: Id): Role => {
    const n = g.node(id);
    if (!differentiable(g, id, diff)) return 'none';
    switch (n.type.side) {
      case 'const':
      case 'token':
        return 'none';
      case 'param':
        return n.op === 'select' ? 'select' : 'param';
      case 'query':
      case 'key':
        return positionFree(g, id, free) ? n.type.side : 'interior';
      case 'pair':
        return n.op === 'decay' ? 'decay' : n.op === 'select' ? 'select' : 'interior';
    }
  };
  const reached = new Set<Id>();
  const stack = [root];
  while (stack.length) {
    const id = stack.pop()!;
    if (reached.has(id) || role(id) === 'none') continue;
    reached.add(id);
    if (role(id) === 'interior') stack.push(...operands(g.node(id)));
  }
  const adj = new Map<Id, Id>();
  const accumulate = (x: Id, e: Id) => {
    const cur = adj.get(x);
    adj.set(x, cur === undefined ? e : o.bin('add', cur, e));
  };
  if (reached.has(root)) accumulate(root, seed);
  for (const id of [...reached].sort((a, b) => b - a)) {
    const E = adj.get(id);
    if (E === undefined || role(id) !== 'interior') continue;
    for (const [x, e] of vjp(o, g.node(id), E, (x) => reached.has(x))) accumulate(x, e);
  }
  const query = new Map<Id, Id>();
  const key = new Map<Id, Id>();
  const param = new Map<Id, Id>();
  const decay = new Map<Id, Id>();
  const scatter: Scatter[] = [];
  for (const [id, E] of adj) {
    switch (role(id)) {
      case 'query': query.set(id, E); break;
      case 'key': key.set(id, E); break;
      case 'param': param.set(id, E); break;
      case 'decay': decay.set(id, E); break;
      case 'select': {
        const n = g.node(id);
        if (n.op !== 'select') throw new Error('internal: select role');
        scatter.push({ select: id, x: n.x, axis: n.axis, index: n.index, adjoint: E });
        break;
      }
      case 'interior':
      case 'none':
        break;
    }
  }
  return { query, key, param, scatter, decay };
}
