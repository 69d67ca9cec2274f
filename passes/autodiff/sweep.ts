// The token side and the parameter side of the gradient: reverse mode through the forward program's per-token
// expressions (feature maps, gates, values) and its parameter-side ones, seeded by what the term stages computed.
//
//   token sweep (a map stage, per (b, t)): seeds are Σ_j adjoints of query-side values (read at i), Σ_i adjoints of
//     key-side values, values' adjoints, and d log α for gates; it writes d<input>;
//   the same graph summed over (b, t) (a reduce stage) gives what parameters receive through per-token expressions
//     (hedgehog's W in q @ W: Σ_{b,t} q ⊗ d(q W)), plus the sums of per-token parameter adjoints from term stages;
//   parameter sweep (a params stage, once): adds the parts and runs back through parameter-side expressions.
//
// Gates are differentiated in log space: a term stage yields d log α_t, and log α's own expression is walked with
// log-derivative rules (log(ab) = log a + log b, log aᶜ = c log a, log eˣ = x, d log σ(x)/dx = σ(−x)), so a gate
// such as sigmoid(g)^(1/16) gives dg = (1/16) σ(−g) d log α without ever dividing by α; only a gate that is a
// leaf (or an op without such a rule) divides: dx = d log x / x.
import { GraphBuilder } from '../../src/ir/builder.ts';
import type { MapStage, ParamsStage, ReduceStage, StageGraph, StageOutput } from '../../src/ir/grad.ts';
import { mapOperands, operands, type Id, type Node, type Op, type Program, type TensorDecl } from '../../src/ir/types.ts';
import { differentiable } from './pair-adjoints.ts';
import { buildRecipe, type Recipe } from './recipe.ts';
import { Ops, vjp, type Builtins } from './vjp.ts';

export type Seed =
  /** A position-free query- or key-side forward value: its per-token form receives the value. */
  | { readonly kind: 'frontier'; readonly node: Id; readonly value: Recipe }
  /** A per-token forward value (a term's value) receives the value. */
  | { readonly kind: 'token'; readonly node: Id; readonly value: Recipe }
  /** A per-token gate: the value is d log of it. */
  | { readonly kind: 'log'; readonly node: Id; readonly value: Recipe };

/** A per-token value summed over (b, t) into a parameter-side value's adjoint (or its d log), written as sum.NAME. */
export interface TokenSum {
  readonly name: string;
  readonly value: Recipe;
  readonly node: Id;
  readonly log: boolean;
}

export interface ParamSeed {
  readonly node: Id;
  readonly tensor: string;
  readonly log: boolean;
}

/** Copies the nodes the roots reach into a fresh graph; leaves become its declarations. */
export function extractGraph(g: GraphBuilder, roots: readonly Id[]): { graph: StageGraph; id: (old: Id) => Id } {
  const live = new Set<Id>();
  const stack = [...roots];
  while (stack.length) {
    const id = stack.pop()!;
    if (live.has(id)) continue;
    live.add(id);
    stack.push(...operands(g.node(id)));
  }
  const out = new GraphBuilder([], g.axes);
  const map = new Map<Id, Id>();
  const inputs: TensorDecl[] = [];
  const params: TensorDecl[] = [];
  for (const n of g.nodes) {
    if (!live.has(n.id)) continue;
    if (n.op === 'input' || n.op === 'param') {
      const id = out.leaf({ op: n.op, name: n.name }, n.type.axes);
      (n.op === 'input' ? inputs : params).push({ name: n.name, axes: n.type.axes, id });
      map.set(n.id, id);
      continue;
    }
    const { id: _i, type: _t, span: _s, ...op } = n;
    map.set(n.id, out.add(mapOperands(op as Op, (x) => map.get(x)!)));
  }
  return { graph: { axes: { ...g.axes }, inputs, params, nodes: out.nodes }, id: (old) => map.get(old)! };
}

/** Adjoints accumulated per node, consumed in decreasing id order (a topological order of the graph). */
class Adjoints {
  readonly of = new Map<Id, Id>();
  constructor(private readonly o: Ops) {}
  add(x: Id, e: Id): void {
    const cur = this.of.get(x);
    this.of.set(x, cur === undefined ? e : this.o.bin('add', cur, e));
  }
}

/**
 * Adds dl = d L / d log|x| into the graph below x: through products, quotients, powers, negation, reciprocals and
 * square roots in log space; into exp's and sigmoid's argument as a plain adjoint; elsewhere dl / x.
 */
function addLog(o: Ops, x: Id, dl: Id, plain: (x: Id, e: Id) => void, wants: (x: Id) => boolean): void {
  const n = o.g.node(x);
  const Y = n.type.axes;
  const down = (y: Id, e: Id) => {
    if (wants(y)) addLog(o, y, o.reduceTo(e, o.axes(y), Y), plain, wants);
  };
  if (n.op === 'binary' && (n.fn === 'mul' || n.fn === 'div')) {
    down(n.a, dl);
    down(n.b, n.fn === 'mul' ? dl : o.un('neg', dl));
    return;
  }
  if (n.op === 'binary' && n.fn === 'pow') {
    down(n.a, o.mul(dl, n.b));
    if (wants(n.b)) plain(n.b, o.reduceTo(o.mul(dl, o.un('log', n.a)), o.axes(n.b), Y));
    return;
  }
  if (n.op === 'unary') {
    switch (n.fn) {
      case 'neg':
      case 'abs':
        return down(n.x, dl);
      case 'recip':
        return down(n.x, o.un('neg', dl));
      case 'sqrt':
        return down(n.x, o.mul(dl, o.c(0.5)));
      case 'exp':
        if (wants(n.x)) plain(n.x, dl);
        return;
      case 'sigmoid':
        if (wants(n.x)) plain(n.x, o.mul(dl, o.un('sigmoid', o.un('neg', n.x))));
        return;
      default:
        break;
    }
  }
  plain(x, o.bin('div', dl, x));
}

function nameOf(p: Program, id: Id): string {
  const n = p.nodes[id];
  if (n.op === 'input' || n.op === 'param') return n.name;
  const let_ = Object.entries(p.lets).find(([, v]) => v === id);
  return let_ ? let_[0] : `n${id}`;
}

/** The per-token form of a position-free query- or key-side value (x read at i ↦ x). */
export function tokenForm(g: GraphBuilder, id: Id): Id {
  const n = g.node(id);
  if (n.type.side !== 'query' && n.type.side !== 'key') return id;
  if (n.op === 'at') return n.x;
  const { id: _i, type: _t, span: _s, ...op } = n;
  return g.add(mapOperands(op as Op, (x) => tokenForm(g, x)));
}

export interface TokenSweep {
  readonly map: MapStage;
  readonly reduce: ReduceStage | null;
  readonly paramSeeds: readonly ParamSeed[];
}

export function tokenSweep(p: Program, builtins: Builtins, seeds: readonly Seed[], sums: readonly TokenSum[]): TokenSweep {
  const g = new GraphBuilder(p.nodes, p.axes);
  const o = new Ops(g, builtins);
  const adj = new Adjoints(o);
  const diff = new Map<Id, boolean>();
  const wants = (x: Id) => differentiable(g, x, diff) && (g.type(x).side === 'token' || g.type(x).side === 'param');
  const toParams = new Map<Id, Id>(); // parameter-side node → per-token expression of its adjoint
  const plain = (x: Id, e: Id) => {
    const side = g.type(x).side;
    if (side === 'token') adj.add(x, e);
    else if (side === 'param') toParams.set(x, toParams.has(x) ? o.bin('add', toParams.get(x)!, e) : e);
  };
  const leaves = new Map<string, Id>();
  const leaf = (tensor: string, axes: readonly string[]) => {
    let id = leaves.get(tensor);
    if (id === undefined) leaves.set(tensor, (id = g.leaf({ op: 'input', name: tensor }, axes)));
    return id;
  };
  for (const s of seeds) {
    const target = s.kind === 'frontier' ? tokenForm(g, s.node) : s.node;
    const t = buildRecipe(o, s.value, leaf);
    if (s.kind === 'log') addLog(o, target, t, plain, wants);
    else adj.add(target, t);
  }
  const top = g.nodes.length;
  for (let id = top - 1; id >= 0; id--) {
    const n = g.node(id);
    const E = adj.of.get(id);
    if (E === undefined || n.type.side !== 'token' || n.op === 'input') continue;
    for (const [x, e] of vjp(o, n, E, wants)) plain(x, e);
  }
  const outputs: StageOutput[] = p.inputs.map((d) => ({ tensor: `d${d.name}`, id: adj.of.get(d.id) ?? o.c(0), axes: d.axes }));
  const mapGraph = extractGraph(g, outputs.map((x) => x.id));
  const map: MapStage = {
    kind: 'map',
    name: 'token-sweep',
    why: 'reverse mode through the per-token expressions (feature maps, values, gates) down to the inputs',
    bindings: bindAll(mapGraph.graph),
    graph: mapGraph.graph,
    outputs: outputs.map((x) => ({ ...x, id: mapGraph.id(x.id) })),
  };
  const reduced: StageOutput[] = [];
  const paramSeeds: ParamSeed[] = [];
  for (const [x, e] of toParams) {
    const tensor = `sum.${nameOf(p, x)}`;
    reduced.push({ tensor, id: e, axes: g.type(x).axes });
    paramSeeds.push({ node: x, tensor, log: false });
  }
  for (const s of sums) {
    const axes = g.type(s.node).axes;
    const tensor = `sum.${s.name}`;
    reduced.push({ tensor, id: buildRecipe(o, s.value, leaf), axes });
    paramSeeds.push({ node: s.node, tensor, log: s.log });
  }
  if (!reduced.length) return { map, reduce: null, paramSeeds };
  const redGraph = extractGraph(g, reduced.map((x) => x.id));
  const reduce: ReduceStage = {
    kind: 'reduce',
    name: 'token-sums',
    why: 'what parameters receive from every position: Σ_{b,t} of their per-token adjoints',
    bindings: bindAll(redGraph.graph),
    graph: redGraph.graph,
    outputs: reduced.map((x) => ({ ...x, id: redGraph.id(x.id) })),
  };
  return { map, reduce, paramSeeds };
}

export function paramSweep(p: Program, builtins: Builtins, seeds: readonly ParamSeed[]): ParamsStage {
  const g = new GraphBuilder(p.nodes, p.axes);
  const o = new Ops(g, builtins);
  const adj = new Adjoints(o);
  const diff = new Map<Id, boolean>();
  const wants = (x: Id) => differentiable(g, x, diff) && g.type(x).side === 'param';
  const plain = (x: Id, e: Id) => {
    if (g.type(x).side === 'param') adj.add(x, e);
  };
  for (const s of seeds) {
    const t = g.leaf({ op: 'param', name: s.tensor }, g.type(s.node).axes);
    if (s.log) addLog(o, s.node, t, plain, wants);
    else adj.add(s.node, t);
  }
  const top = g.nodes.length;
  for (let id = top - 1; id >= 0; id--) {
    const n: Node = g.node(id);
    const E = adj.of.get(id);
    if (E === undefined || n.type.side !== 'param' || n.op === 'param') continue;
    if (n.op === 'select') throw new Error(`autodiff: ${p.name} indexes a parameter outside a score (%${id}); only scores may index by the lag`);
    for (const [x, e] of vjp(o, n, E, wants)) plain(x, e);
  }
  const outputs: StageOutput[] = p.params.map((d) => ({ tensor: `d${d.name}`, id: adj.of.get(d.id) ?? o.c(0), axes: d.axes }));
  const ex = extractGraph(g, outputs.map((x) => x.id));
  return {
    kind: 'params',
    name: 'param-sums',
    why: 'each parameter’s gradient: the parts from pairs, tokens and decays, back through parameter-side expressions',
    bindings: bindAll(ex.graph),
    graph: ex.graph,
    outputs: outputs.map((x) => ({ ...x, id: ex.id(x.id) })),
  };
}

function bindAll(g: StageGraph): Record<string, { tensor: string; pad: 'zero' }> {
  return Object.fromEntries([...g.inputs, ...g.params].map((d) => [d.name, { tensor: d.name, pad: 'zero' as const }]));
}
