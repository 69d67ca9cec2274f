// Launch 1 of the tree form (tree.ts): every node's features, at its position a_n = pos0 + depth − 1, into the
// scratch regions of tree-analysis.ts — each prefix term's φ, ψ and gate, the bounded terms' query features, and
// the nodes the rings keep (values, key features), which path walks read while on the path.
import type { Id } from '../../src/ir/types.ts';
import { count } from './common.ts';
import { ExprGen, offset, type Index } from './expr.ts';
import { rowAxes } from './layout.ts';
import type { Block } from './wgsl-block.ts';
import { scratch, spread, type TreeKernel, type TreePrefix } from './tree-analysis.ts';

export function emitStage(T: TreeKernel, main: Block): void {
  for (const q of T.a.prefix) stagePrefix(T, main, q);
  for (const id of T.a.qf.keys()) stageQueryFeature(T, main, id);
  for (const r of T.a.st.rings) stageRingNode(T, main, r.id, r.per);
}

/** Opens node n's item: `n`, the element `x` of W per node, and its position `an`. */
function nodeItem(T: TreeKernel, b: Block, it: string, W: number): { n: string; x: string; an: string } {
  const n = b.let('n', `${it} / ${W}u`);
  const x = b.let('x', `${it} % ${W}u`);
  const an = b.let('an', `dims.pos0 + ${T.dep.name}[${n}] - 1u`);
  T.at(an, n);
  return { n, x, an };
}

const nodeGen = (T: TreeKernel, an: string) => new ExprGen(T.a.p, T.a.sizes, T.read, { i: an, j: an });

function stagePrefix(T: TreeKernel, main: Block, q: TreePrefix): void {
  const { a } = T;
  spread(main, `dims.t * ${q.F}u`, (b, it) => {
    b.comment(`${q.name}: φ, ψ${q.gate ? ', gate' : ''} at every node`);
    const { n, x, an } = nodeItem(T, b, it, q.F);
    const g = nodeGen(T, an);
    const idx: Index = { ...T.head, ...(q.form.feature ? { [q.form.feature]: x } : {}) };
    const phi = g.value(b, q.form.phi, idx, an);
    const psi = g.value(b, q.form.psi, idx, an);
    const gate = q.gateId !== null ? g.value(b, q.gateId, q.gatePerFeature ? idx : { ...T.head }, an) : null;
    const o = `((b * ${a.NS}u + s) * dims.t + ${n}) * ${q.F}u + ${x}`;
    b.line(`${scratch(T, q.phi, o)} = ${phi}; ${scratch(T, q.psi, o)} = ${psi};${gate ? ` ${scratch(T, q.gate!, o)} = ${gate};` : ''}`);
  });
}

function stageQueryFeature(T: TreeKernel, main: Block, id: Id): void {
  const f = T.a.qf.get(id)!;
  spread(main, `dims.t * ${f.W}u`, (b, it) => {
    b.comment(`query features %${id}`);
    const { n, x, an } = nodeItem(T, b, it, f.W);
    const idx = b.split(f.axes, T.a.sizes, x, `q${id}`);
    const v = nodeGen(T, an).value(b, id, { ...T.head, ...idx }, an);
    b.line(`${scratch(T, f.region, `((b * ${T.a.NS}u + s) * dims.t + ${n}) * ${f.W}u + ${offset(f.axes, T.a.sizes, idx)}`)} = ${v};`);
  });
}

/** A node the rings keep, at every tree node (what the ring would keep had it been decoded). */
function stageRingNode(T: TreeKernel, main: Block, id: Id, per: number): void {
  const own = rowAxes(T.a.p, T.a.L, id);
  const W = count(own, T.a.sizes);
  spread(main, `dims.t * ${W}u`, (b, it) => {
    b.comment(`%${id} at every node (what the ring keeps)`);
    const { n, x, an } = nodeItem(T, b, it, W);
    const full = { ...T.head, ...b.split(own, T.a.sizes, x, `r${id}`) };
    const v = nodeGen(T, an).value(b, id, full, an);
    b.line(`${scratch(T, T.a.nodes.get(id)!, `(b * dims.t + ${n}) * ${per}u + ${offset(T.a.p.nodes[id].type.axes, T.a.sizes, full)}`)} = ${v};`);
  });
}
