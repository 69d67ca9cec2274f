// The tree form of softmax attention (speculative verification): one workgroup per (draft node n, head slice s,
// batch b). Node n sits at position a_n = pos0 + δ_n − 1 (δ its depth) and attends to the committed keys
// 0 … pos0−1, read from the key/value cache (never written here), and to its root path — its ancestors and itself,
// whose key features and values it computes from the nodes' inputs, at their own positions:
//
//   o_n = Σ_{j<pos0} e^(s(a_n, j) − m) v_j + Σ_{u∈P(n)} e^(s(a_n, a_u) − m) v_u, over the same sum with v = 1
//
// The committed keys fold in tiles of WG with the online softmax; the path, root first, one node at a time (every
// invocation computes the node's logit alike). Buffers as the tree plan of any variant (tree.ts): inputs 'in:X'
// [b, N, …], 'tree:parents' [b, N] (a parent that is not an earlier node reads as −1), the state buffers, 'out:o'.
// The commit of an accepted path is the decoding kernel over the path's gathered rows (softmaxTreeCommitPlan, below).
import type { Program } from '../../src/ir/types.ts';
import { count, programBuffers, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Resolver } from './expr.ts';
import { flatIndex, KernelBuilder } from './kernel-builder.ts';
import { grid, type Kernel, type Plan, type PlanBuffer } from './plan.ts';
import { recurrentPlan } from './recurrent.ts';
import { analyseSoftmax, cacheIndex, featureOffsets, VALUE_CACHE } from './softmax-analysis.ts';
import { cacheBindings, cachedKeys, stageFeatures } from './softmax-decode.ts';
import { declareOnline, emitOnlineOne, emitOnlineOutput, emitOnlineStart, emitOnlineTiles } from './softmax-online.ts';
import { TREE_PARENTS, TREE_PATH, TREE_WG } from './tree-analysis.ts';

const WG = 64;

export function softmaxTreePlan(p: Program, sizes: Sizes, maxNodes: number): Plan {
  const a = analyseSoftmax(p, sizes);
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  const nodeOf = new Map<string, string>();
  const read = programReader(kb, p, sizes, (where) => {
    const node = nodeOf.get(where);
    if (!node) throw new Error(`internal: ${p.name}: an input read at '${where}', which is no tree node's position`);
    return `b * dims.t + ${node}`;
  });
  const out = kb.storage('out:o', true, { always: true });
  const parents = kb.storage(TREE_PARENTS, false, { always: true });
  const caches = cacheBindings(kb, a, false);
  const qf = kb.workgroup('qf', Math.max(1, a.WQ), 'the node\'s query features');
  const kf = kb.workgroup('kf', Math.max(1, a.WK), 'key features of one path node');
  const vf = kb.workgroup('vf', a.NR, 'value of one path node');
  const path = kb.workgroup('path', maxNodes, 'the node\'s root path, the node first', 'u32');
  const len = kb.workgroup('path_len', 1, 'the root path\'s length', 'u32');
  const online = declareOnline(kb, WG, a.NR);
  const main = kb.body;
  main.define('n', 'wid.x');
  main.define('s', 'wid.y');
  main.define('b', 'wid.z');
  const head = main.split(a.head, sizes, 's', 'hx');
  // The root path, walked by one invocation: a parent must be an earlier node, else the node is a root.
  main.block('if (lid == 0u)', (w) => {
    const up = w.var('up', 'i32(n)', 'i32');
    const k = w.var('k', '0u', 'u32');
    w.block('loop', (l) => {
      l.line(`${path.name}[${k}] = u32(${up});`);
      l.line(`${k}++;`);
      const pv = l.let('pv', `i32(round(${kb.use(parents)}[b * dims.t + u32(${up})]))`);
      l.line(`if (${pv} < 0 || ${pv} >= ${up}) { break; }`);
      l.line(`${up} = ${pv};`);
    });
    w.line(`${len.name}[0] = ${k};`);
  });
  main.define('plen', `workgroupUniformLoad(&${len.name}[0])`);
  main.define('an', 'dims.pos0 + plen - 1u');
  nodeOf.set('an', 'n');
  const gen = new ExprGen(p, sizes, read, { i: 'an', j: 'an' });
  stageFeatures(main, a, a.query, head, (at, f, x, idx) => at.line(`${qf.name}[${x}] = ${gen.value(at, f.id, idx, 'an')};`));
  emitOnlineStart(main, online);
  main.line('workgroupBarrier();');
  const committed = cachedKeys(a, read, qf, caches);
  emitOnlineTiles(main, online, 'dims.pos0', (at, j) => new ExprGen(p, sizes, committed(j), { i: 'an', j }).value(at, a.term.form.logit, head, j), (j, col) => `${caches.use(VALUE_CACHE)}[${cacheIndex(a, a.NR, j, col)}]`);
  const qOff = featureOffsets(a.query);
  const kOff = featureOffsets(a.key);
  const query = new Map(a.query.map((f) => [f.id, f]));
  const key = new Map(a.key.map((f) => [f.id, f]));
  main.for('k', '0u', (k) => `${k} < plen`, (l, k) => {
    l.define('u', `${path.name}[plen - 1u - ${k}]`);
    l.define('au', `dims.pos0 + ${k}`);
    nodeOf.set('au', 'u');
    const ug = new ExprGen(p, sizes, read, { i: 'au', j: 'au' });
    stageFeatures(l, a, a.key, head, (at, f, x, idx) => at.line(`${kf.name}[${x}] = ${ug.value(at, f.id, idx, 'au')};`));
    l.strided('col', `${a.NR}u`, (c, col) => c.line(`${vf.name}[${col}] = ${ug.value(c, a.term.value, { ...head, ...c.split(a.rest, sizes, col, 'vc') }, 'au')};`));
    l.line('workgroupBarrier();');
    const onPath: Resolver = (n, idx, where, at) => {
      const q = query.get(n.id);
      if (q) return `${qf.name}[${qOff.get(n.id)}u + ${offset(q.axes, sizes, idx)}]`;
      const kk = key.get(n.id);
      if (kk) return `${kf.name}[${kOff.get(n.id)}u + ${offset(kk.axes, sizes, idx)}]`;
      return read(n, idx, where, at);
    };
    const sc = new ExprGen(p, sizes, onPath, { i: 'an', j: 'au' }).value(l, a.term.form.logit, head, 'au');
    emitOnlineOne(l, online, sc, (col) => `${vf.name}[${col}]`);
    l.line('workgroupBarrier();');
  }, { fixed: true });
  emitOnlineOutput(main, online, (c, col, v) => {
    const idx = { ...head, ...c.split(a.rest, sizes, col, 'oc') };
    c.line(`${kb.use(out)}[(b * dims.t + n) * ${a.per}u + ${offset(p.outAxes, sizes, idx)}] = ${v};`);
  });
  const kernel = kb.build({
    label: `${p.name}.tree`,
    comment: [`softmax tree verification kernel of ${p.name}: node n attends to the committed cache and its root path`],
    workgroups: (b, t) => [t, a.NS, b],
  });
  const parentsBuffer: PlanBuffer = { name: TREE_PARENTS, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] };
  return { variant: p.name, form: 'tree', kernels: [kernel], buffers: [...programBuffers(p, sizes), parentsBuffer, ...a.buffers], outAxes: p.outAxes, sizes, schedule: { workgroup: WG, maxNodes } };
}

/**
 * The commit of a softmax program's accepted path: its rows gathered, then the decoding kernel over them (the cache
 * appends one slot per token, in the path's order). The linear variants fold a path in one launch (tree-commit.ts).
 */
export function softmaxTreeCommitPlan(p: Program, sizes: Sizes, maxNodes: number): Plan {
  const rec = recurrentPlan(p, sizes);
  const gathered = (name: string) => `tmp:path:${name.slice(name.indexOf(':') + 1)}`;
  const ins = p.inputs.map((d) => ({ name: `in:${d.name}`, per: count(d.axes, sizes) }));
  const step = rec.kernels[0];
  // The step kernel as compiled, bound to the gathered rows instead of the tree's inputs and output.
  const commit: Kernel = {
    ...step,
    label: `${p.name}.tree-commit`,
    bindings: step.bindings.map((b) => (b.buffer.startsWith('in:') || b.buffer === 'out:o' ? { ...b, buffer: gathered(b.buffer) } : b)),
  };
  const per = count(p.outAxes, sizes);
  const buffers: PlanBuffer[] = [
    // The tree's inputs: N rows, at most maxNodes (dims.pad says how many).
    ...ins.map((d): PlanBuffer => ({ name: d.name, role: 'input', floats: (b) => b * maxNodes * d.per, shape: (b) => [b, maxNodes, d.per] })),
    ...rec.buffers.filter((b) => b.role === 'param' || b.role === 'state'),
    { name: TREE_PATH, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] },
    ...ins.map((d): PlanBuffer => ({ name: gathered(d.name), role: 'scratch', floats: (b, t) => b * t * d.per, shape: (b, t) => [b, t, d.per] })),
    { name: 'tmp:path:o', role: 'scratch', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, per] },
  ];
  return { variant: p.name, form: 'tree-commit', kernels: [gatherKernel(p, ins, gathered), commit], buffers, outAxes: p.outAxes, sizes, schedule: { workgroup: TREE_WG, maxNodes } };
}

/** Row (b, p) of each gathered input ← tree row (b, path[b, p]); dims.pad = tree nodes N. */
function gatherKernel(p: Program, ins: readonly { name: string; per: number }[], gathered: (name: string) => string): Kernel {
  const maxPer = Math.max(1, ...ins.map((d) => d.per));
  const kb = new KernelBuilder(TREE_WG, ['gid', 'nwg']);
  const path = kb.storage(TREE_PATH, false, { always: true });
  const from = ins.map((d) => kb.storage(d.name, false, { always: true }));
  const to = ins.map((d) => kb.storage(gathered(d.name), true, { always: true }));
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * dims.t * ${maxPer}u) { return; }`);
  const x = main.let('x', `${flat} % ${maxPer}u`);
  const row = main.let('row', `${flat} / ${maxPer}u`);
  const bb = main.let('bb', `${row} / dims.t`);
  const node = main.let('node', `min(u32(max(round(${kb.use(path)}[${row}]), 0.0)), max(dims.pad, 1u) - 1u)`);
  ins.forEach((d, k) => main.block(`if (${x} < ${d.per}u)`, (b) => b.line(`${kb.use(to[k])}[${row} * ${d.per}u + ${x}] = ${kb.use(from[k])}[(${bb} * dims.pad + ${node}) * ${d.per}u + ${x}];`)));
  return kb.build({
    label: `${p.name}.tree-gather`,
    comment: [`gathers the accepted path's node inputs of ${p.name}: row (b, p) ← tree row (b, path[b, p]); dims.pad = tree nodes N`],
    workgroups: (b, t) => grid(b * t * maxPer, TREE_WG),
    launch: { kind: 'grid', perToken: maxPer, size: TREE_WG },
  });
}
