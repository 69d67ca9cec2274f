// Launch 2 of the tree form (tree.ts): one invocation per (node n, output column) walks n's root path P(n),
// reading what launch 1 staged for the path nodes and the committed state past the root:
//
//   prefix, causal:       num += Σ_f φ_n[f] (Σ_{j∈P(n)} D_{j→n}[f] ψ_j[f] v_j + D_n[f] S[f])     D: products of path gates
//   prefix, past_groups:  S, plus the open group So when ⌊(pos0−1)/C⌋ < ⌊a_n/C⌋, plus the path nodes of earlier groups
//   bounded:              lag l = 0..hi reads the l-th ancestor, or the committed ring at a_n − l past the root
import { lagRange } from '../../src/ir/masks.ts';
import type { Id, OutputItem, Term } from '../../src/ir/types.ts';
import { maskCondition } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { ringIndex } from './layout.ts';
import type { Block } from './wgsl-block.ts';
import { scratch, spread, stateRef, type TreeKernel, type TreePrefix } from './tree-analysis.ts';

/** Node n's item: its position an, output column col, the column's full index, and the item's sums. */
interface Walk {
  readonly n: string;
  readonly an: string;
  readonly col: string;
  readonly full: Index;
  readonly num: string;
  /** Only normalised items need the denominators (and so the z state). */
  readonly den: string | null;
}

export function emitPathWalks(T: TreeKernel, main: Block): void {
  const { a } = T;
  spread(main, `dims.t * ${a.NR}u`, (b, it) => {
    const n = b.let('n', `${it} / ${a.NR}u`);
    const col = b.let('col', `${it} % ${a.NR}u`);
    const an = b.let('an', `dims.pos0 + ${T.dep.name}[${n}] - 1u`);
    T.at(an, n);
    const full: Index = { ...T.head, ...b.split(a.L.rest, a.sizes, col, 'oc') };
    const acc = b.var('o_acc', '0.0');
    a.p.output.forEach((item) => outputItem(T, b, item, { n, an, col, full }, acc));
    b.line(`${T.kb.use(T.out)}[(b * dims.t + ${n}) * ${a.per}u + ${offset(a.p.outAxes, a.sizes, full)}] = ${acc};`);
  });
}

function outputItem(T: TreeKernel, b: Block, it: OutputItem, at: Omit<Walk, 'num' | 'den'>, acc: string): void {
  const names = it.kind === 'term' ? [it.term] : it.terms;
  b.block('', (g) => {
    g.comment(it.kind === 'norm' ? `normalize(${names.join(' + ')})` : names[0]);
    const num = g.var('num', '0.0');
    const den = it.kind === 'norm' ? g.var('den', '0.0') : null;
    const w: Walk = { ...at, num, den };
    for (const name of names) {
      const t = T.a.p.terms.find((x) => x.name === name)!;
      const q = T.a.prefix.find((x) => x.name === t.name);
      if (q && q.group) g.block('', (x) => groupPrefixWalk(T, x, q, t, w));
      else if (q) g.block('', (x) => causalPrefixWalk(T, x, q, t, w));
      else g.block('', (x) => boundedWalk(T, x, t, w));
    }
    g.line(it.kind === 'norm' ? `${acc} = ${acc} + ${num} / (${den} + ${it.eps});` : `${acc} = ${acc} + ${num};`);
  });
}

/** Element f of node `node`'s row in a per-head-slice region of F floats. */
const nodeRow = (T: TreeKernel, q: TreePrefix, node: string, f: string) => `((b * ${T.a.NS}u + s) * dims.t + ${node}) * ${q.F}u + ${f}`;

/**
 * `var jn = n; loop { … jn = par[jn]; }` over n's root path; `body` gets the path node ju and its position aJ.
 */
function walkPath(T: TreeKernel, b: Block, n: string, body: (l: Block, ju: string, aJ: string) => void): void {
  const jn = b.var('jn', `i32(${n})`, 'i32');
  b.block('loop', (l) => {
    l.line(`if (${jn} < 0) { break; }`);
    const ju = l.let('ju', `u32(${jn})`);
    const aJ = l.let('aJ', `dims.pos0 + ${T.dep.name}[${ju}] - 1u`);
    T.at(aJ, ju);
    body(l, ju, aJ);
    l.line(`${jn} = ${T.par.name}[${ju}];`);
  });
}

/** A causal prefix term: the path with its decay products, then the committed state decayed along the whole path. */
function causalPrefixWalk(T: TreeKernel, x: Block, q: TreePrefix, t: Term, w: Walk): void {
  const { a } = T;
  x.comment(`${t.name}: the path, then the committed state`);
  const gi = q.gateW === q.F && q.gate ? 'f' : '0u';
  let dacc: string | null = null;
  if (q.gate) {
    dacc = x.fresh('dacc');
    x.line(`var ${dacc}: array<f32, ${q.gateW}>;`, 'decay from each path node to n, per feature');
    x.for('f', '0u', (f) => `${f} < ${q.gateW}u`, (l, f) => l.line(`${dacc}[${f}] = 1.0;`));
  }
  const d = (f: string) => (dacc ? `${dacc}[${gi === 'f' ? f : '0u'}] * ` : '');
  walkPath(T, x, w.n, (l, ju, aJ) => {
    const v = new ExprGen(a.p, a.sizes, T.read, { i: w.an, j: aJ }).value(l, t.value, w.full, aJ);
    l.for('f', '0u', (f) => `${f} < ${q.F}u`, (m, f) => {
      const ph = m.let('ph', scratch(T, q.phi, nodeRow(T, q, w.n, f)));
      const wt = m.let('w', `${d(f)}${scratch(T, q.psi, nodeRow(T, q, ju, f))}`);
      m.line(`${w.num} = ${w.num} + ${ph} * ${wt} * ${v};${w.den ? ` ${w.den} = ${w.den} + ${ph} * ${wt};` : ''}`);
      if (dacc && gi === 'f') m.line(`${dacc}[${f}] = ${dacc}[${f}] * ${scratch(T, q.gate!, nodeRow(T, q, ju, f))};`);
    });
    if (dacc && gi === '0u') l.line(`${dacc}[0] = ${dacc}[0] * ${scratch(T, q.gate!, nodeRow(T, q, ju, '0u'))};`);
  });
  x.for('f', '0u', (f) => `${f} < ${q.F}u`, (l, f) => {
    const ph = l.let('ph', scratch(T, q.phi, nodeRow(T, q, w.n, f)));
    const S = stateRef(T, `state:S${q.k}`);
    const z = w.den ? ` ${w.den} = ${w.den} + ${ph} * ${d(f)}${stateRef(T, `state:z${q.k}`)}[(b * ${a.NS}u + s) * ${q.F}u + ${f}];` : '';
    l.line(`${w.num} = ${w.num} + ${ph} * ${d(f)}${S}[((b * ${a.NS}u + s) * ${q.F}u + ${f}) * ${a.NR}u + ${w.col}];${z}`);
  });
}

/** A past_groups(C) term: path nodes of earlier groups, then S (and the open group So once n has left it). */
function groupPrefixWalk(T: TreeKernel, x: Block, q: TreePrefix, t: Term, w: Walk): void {
  const { a } = T;
  const C = q.group;
  x.comment(`${t.name}: the path, then the committed state`);
  walkPath(T, x, w.n, (l, ju, aJ) => {
    l.block(`if (${aJ} / ${C}u < ${w.an} / ${C}u)`, (e) => {
      const v = new ExprGen(a.p, a.sizes, T.read, { i: w.an, j: aJ }).value(e, t.value, w.full, aJ);
      e.for('f', '0u', (f) => `${f} < ${q.F}u`, (m, f) => {
        const ph = m.let('ph', scratch(T, q.phi, nodeRow(T, q, w.n, f)));
        const wt = m.let('w', scratch(T, q.psi, nodeRow(T, q, ju, f)));
        m.line(`${w.num} = ${w.num} + ${ph} * ${wt} * ${v};${w.den ? ` ${w.den} = ${w.den} + ${ph} * ${wt};` : ''}`);
      });
    });
  });
  const withOpen = x.let('withOpen', `dims.pos0 > 0u && (dims.pos0 - 1u) / ${C}u < ${w.an} / ${C}u`);
  x.for('f', '0u', (f) => `${f} < ${q.F}u`, (l, f) => {
    const si = `((b * ${a.NS}u + s) * ${q.F}u + ${f}) * ${a.NR}u + ${w.col}`;
    const zi = `(b * ${a.NS}u + s) * ${q.F}u + ${f}`;
    const ph = l.let('ph', scratch(T, q.phi, nodeRow(T, q, w.n, f)));
    const sv = l.var('sv', `${stateRef(T, `state:S${q.k}`)}[${si}]`);
    const zv = w.den ? l.var('zv', `${stateRef(T, `state:z${q.k}`)}[${zi}]`) : null;
    l.block(`if (${withOpen})`, (o) => {
      o.line(`${sv} = ${sv} + ${stateRef(T, `state:So${q.k}`)}[${si}];`);
      if (zv) o.line(`${zv} = ${zv} + ${stateRef(T, `state:zo${q.k}`)}[${zi}];`);
    });
    l.line(`${w.num} = ${w.num} + ${ph} * ${sv};${w.den ? ` ${w.den} = ${w.den} + ${ph} * ${zv};` : ''}`);
  });
}

/** A bounded term: lag l reads the l-th ancestor, past the root the committed ring. */
function boundedWalk(T: TreeKernel, x: Block, t: Term, w: Walk): void {
  const { a } = T;
  const [lo, hi] = lagRange(t.mask)!;
  x.comment(`${t.name}: lag l reads the l-th ancestor, past the root the committed ring`);
  const jn = x.var('jn', `i32(${w.n})`, 'i32');
  x.for('lag', '0u', (lag) => `${lag} <= min(${hi}u, ${w.an})`, (l, lag) => {
    l.line(`if (${lag} > 0u && ${jn} >= 0) { ${jn} = ${T.par.name}[u32(${jn})]; }`);
    const aJ = l.let('aJ', `${w.an} - ${lag}`);
    if (lo > 0) l.line(`if (${lag} < ${lo}u) { continue; }`);
    l.line(`if (!(${maskCondition(t.mask, w.an, aJ)})) { continue; }`);
    const onPath = l.let('onPath', `${jn} >= 0`);
    const ju = l.let('ju', `u32(max(${jn}, 0))`);
    T.at(aJ, ju);
    const key = keyReader(T, w, aJ, ju, onPath);
    const sv = new ExprGen(a.p, a.sizes, key.read, { i: w.an, j: aJ }).value(l, t.score, w.full, aJ);
    l.line(`${w.num} = ${w.num} + ${sv} * ${key.at(t.value, w.full)};`);
    if (w.den) l.line(`${w.den} = ${w.den} + ${sv};`);
  });
}

/**
 * Reads for a bounded term at key position aJ: a ring node is the path node ju's staged copy while on the path,
 * the committed ring past the root; query features are node n's staged ones.
 */
function keyReader(T: TreeKernel, w: Walk, aJ: string, ju: string, onPath: string): { read: Resolver; at: (id: Id, idx: Index) => string } {
  const { a } = T;
  const at = (id: Id, idx: Index) => {
    const r = a.st.rings.find((x) => x.id === id)!;
    const off = offset(a.p.nodes[id].type.axes, a.sizes, idx);
    return `select(${stateRef(T, `state:ring${id}`)}[${ringIndex(r, a.st.ring, `${aJ} % ${a.st.ring}u`, off)}], ${scratch(T, a.nodes.get(id)!, `(b * dims.t + ${ju}) * ${r.per}u + ${off}`)}, ${onPath})`;
  };
  const read: Resolver = (n, idx, where, blk) => {
    const f = a.qf.get(n.id);
    if (f) return scratch(T, f.region, `((b * ${a.NS}u + s) * dims.t + ${w.n}) * ${f.W}u + ${offset(f.axes, a.sizes, idx)}`);
    if (n.type.side === 'key' && a.nodes.has(n.id)) return at(n.id, idx);
    return T.read(n, idx, where, blk);
  };
  return { read, at };
}
