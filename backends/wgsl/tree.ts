// The tree form on the GPU (speculative verification): two launches with several workgroups per (batch b, head
// slice s) verify N draft nodes against the committed decoding state, which it reads and never writes. Node n has
// a parent par[n] (−1: a child of the last committed token, otherwise an earlier node), a depth δ_n and the
// absolute position a_n = pos0 + δ_n − 1. Per node, with P(n) its root path (ancestors and itself):
//
//   prefix, causal:       num += Σ_f φ_n[f] (Σ_{j∈P(n)} D_{j→n}[f] ψ_j[f] v_j + D_n[f] S[f])     D: products of path gates
//   prefix, past_groups:  S, plus the open group So when ⌊(pos0−1)/C⌋ < ⌊a_n/C⌋, plus the path nodes of earlier groups
//   bounded:              lag l = 0..hi reads the l-th ancestor, or the committed ring at a_n − l past the root
//
// Launch 1 (phase 1) stages every node's φ, ψ and gate (prefix terms) and query/key features and values (bounded
// terms) in one scratch buffer 'tmp:tree'; launch 2 (phase 2) walks each node's path per output column. Both
// spread their items over up to 64 workgroups per (b, s): one workgroup per head left 132 SMs nearly idle. No per-node
// state: a node's sums over its ancestors are recomputed from the staged features (O(depth) per node and
// column; depth is small in speculation), so any tree shape works and nothing depends on node order but
// parents coming first.
//
// Buffers: the tree's inputs 'in:X' [b, N, …axes] (node n's token inputs in row n), 'tree:parents' [b, N]
// (f32 holding the parent index, −1 for a root; a parent that is not an earlier node is read as −1),
// params, the state buffers of recurrentPlan (bound read only), scratch 'tmp:tree', output 'out:o' [b, N, …outAxes].
// Dims: b, t = N (≤ maxNodes), pos0 = the committed position.
//
// The commit (treeCommitPlan) gathers the accepted path's inputs into a [b, P, …] scratch and runs the
// recurrent step kernel over them: the state afterwards is exactly what decoding the accepted tokens leaves.
import { lagRange } from '../../src/ir/masks.ts';
import type { Id, Program, Term } from '../../src/ir/types.ts';
import { frontier, layoutOf } from './chunked.ts';
import { count, maskCondition, programBuffers, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { bindingDecls, DIMS_WGSL, FLAT_INDEX, grid, wgslName, type Kernel, type Plan, type PlanBuffer } from './plan.ts';
import { recurrentPlan, ringIndex, stateLayout } from './recurrent.ts';

const WG = 64;

/** The tree's parent indices, [b, N] as f32 (−1 for a child of the last committed token). */
export const TREE_PARENTS = 'tree:parents';
/** The accepted path of a commit, [b, P] as f32 node indices from the root down. */
export const TREE_PATH = 'tree:path';

type PrefixForm = Extract<Term['form'], { kind: 'prefix' }>;

/** WGSL lines that split `flat` over `axes` into `TAG_AXIS` u32s. */
function split(axes: readonly string[], sizes: Sizes, flat: string, tag: string): { lines: string[]; idx: Record<string, string> } {
  const idx: Record<string, string> = {};
  const lines: string[] = [];
  let stride = 1;
  for (let k = axes.length - 1; k >= 0; k--) {
    lines.unshift(`let ${tag}_${axes[k]} = (${flat} / ${stride}u) % ${sizes[axes[k]]}u;`);
    idx[axes[k]] = `${tag}_${axes[k]}`;
    stride *= sizes[axes[k]];
  }
  return { lines, idx };
}

export function treePlan(p: Program, sizes: Sizes, maxNodes: number): Plan {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treePlan: maxNodes must be a positive integer, got ${maxNodes}`);
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes); // refuses noncausal programs
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  const per = count(p.outAxes, sizes);
  const RING = st.ring;
  const used = new Set<string>([TREE_PARENTS]);
  const use = (name: string) => {
    used.add(name);
    return wgslName(name);
  };
  // All scratch lives in one buffer 'tmp:tree' (storage bindings per kernel are few: 16 on some adapters),
  // one region per staged quantity, of `width` floats per (b, node) each: region k starts at b·N·Σ_{k'<k} width.
  let scratchWidth = 0;
  type Access = (i: string) => string;
  /** A scratch region of `w` floats per (b, node), times NS when each head slice stages its own. */
  const tmp = (w: number, sliced: boolean): Access => {
    const start = scratchWidth;
    scratchWidth += sliced ? NS * w : w;
    return (i) => `${use('tmp:tree')}[dims.b * dims.t * ${start}u + ${i}]`;
  };
  // Token inputs are read at a tree node: `where` names a position variable, and each position variable in
  // this kernel belongs to one node variable (an → n for the node being computed, aJ → ju for a path node).
  const nodeOf: Readonly<Record<string, string>> = { an: 'n', aJ: 'ju' };
  const base: Resolver = (n, idx, where) => {
    if (n.op === 'input') {
      const node = nodeOf[where];
      if (!node) throw new Error(`internal: ${p.name}: input ${n.name} read at '${where}', which is no tree node`);
      return `${use(`in:${n.name}`)}[${offset(n.type.axes, sizes, idx, `b * dims.t + ${node}`)}]`;
    }
    if (n.op === 'param') return `${use(`param:${n.name}`)}[${offset(n.type.axes, sizes, idx)}]`;
    return null;
  };
  const head: Record<string, string> = {};
  const headLines: string[] = [];
  {
    const { lines, idx } = split(L.head, sizes, 's', 'hx');
    headLines.push(...lines.map((l) => '  ' + l));
    Object.assign(head, idx);
  }
  const decls: string[] = [`var<workgroup> par: array<i32, ${maxNodes}>;`, `var<workgroup> dep: array<u32, ${maxNodes}>;`];
  const body: string[] = [];
  const line = (s: string) => body.push(s);
  const gen = (indent: number, tag: string, r: Resolver = base) => new ExprGen(p, sizes, r, { i: 'an', j: 'aJ' }, indent, tag);
  const nodeGen = (indent: number, tag: string) => new ExprGen(p, sizes, base, { i: 'an', j: 'an' }, indent, tag);

  // Phase 0: parents (sanitised to earlier nodes) and depths.
  line('  for (var n: u32 = lid; n < dims.t; n += WG) {');
  line(`    let pv = i32(round(${use(TREE_PARENTS)}[b * dims.t + n]));`);
  line('    par[n] = select(-1, pv, pv >= 0 && pv < i32(n));');
  line('  }');
  line('  workgroupBarrier();');
  line('  for (var n: u32 = lid; n < dims.t; n += WG) {');
  line('    var d: u32 = 1u;');
  line('    var up: i32 = par[n];');
  line('    loop { if (up < 0) { break; } d++; up = par[u32(up)]; }');
  line('    dep[n] = d;');
  line('  }');
  line('  workgroupBarrier();');
  const phase0End = body.length;

  // Phase 1: per-node features of prefix terms.
  const prefixBufs = new Map<number, { phi: Access; psi: Access; gate: Access | null; F: number; gateW: number }>();
  for (const q of st.prefix) {
    const f = q.term.form as PrefixForm;
    const gateId = f.decay ? (f.decay.kind === 'constant' ? f.decay.gamma : f.decay.alpha) : null;
    const gateAxes = gateId === null ? [] : p.nodes[gateId].type.axes;
    const gatePerF = !!f.feature && gateAxes.includes(f.feature);
    const stray = gateAxes.filter((a) => a !== f.feature && !L.head.includes(a));
    if (stray.length) throw new Error(`term ${q.term.name}: the tree kernel supports decay gates over the head axes [${L.head.join(', ')}] and the feature axis, not [${gateAxes.join(', ')}]`);
    const names = {
      phi: tmp(q.F, true),
      psi: tmp(q.F, true),
      gate: gateId === null ? null : tmp(q.F, true),
      F: q.F,
      gateW: gatePerF ? q.F : 1,
    };
    prefixBufs.set(q.k, names);
    line(`  for (var it: u32 = lid; it < dims.t * ${q.F}u; it += WG) { // ${q.term.name}: φ, ψ${gateId === null ? '' : ', gate'} at every node`);
    line(`    let n = it / ${q.F}u; let x = it % ${q.F}u; let an = dims.pos0 + dep[n] - 1u;`);
    const g = nodeGen(2, `p${q.k}_`);
    const idx: Record<string, string> = { ...head };
    if (f.feature) idx[f.feature] = 'x';
    const phi = g.value(f.phi, idx, 'an');
    const psi = g.value(f.psi, idx, 'an');
    const gate = gateId !== null ? g.value(gateId, gatePerF ? idx : { ...head }, 'an') : null;
    body.push(g.code());
    const o = `((b * ${NS}u + s) * dims.t + n) * ${q.F}u + x`;
    line(`    ${names.phi(o)} = ${phi}; ${names.psi(o)} = ${psi};${gate ? ` ${names.gate!(o)} = ${gate};` : ''}`);
    line('  }');
  }
  // Phase 1: query features of bounded terms, and key features and values (the nodes the rings keep).
  const qf = new Map<Id, { buf: Access; axes: string[]; W: number }>();
  for (const t of p.terms) {
    if (t.form.kind === 'prefix') continue;
    for (const id of frontier(p, t.score).query) {
      if (qf.has(id)) continue;
      const axes = p.nodes[id].type.axes.filter((a) => !L.head.includes(a));
      const W = count(axes, sizes);
      qf.set(id, { buf: tmp(W, true), axes, W });
    }
  }
  for (const [id, f] of qf) {
    line(`  for (var it: u32 = lid; it < dims.t * ${f.W}u; it += WG) { // query features %${id}`);
    line(`    let n = it / ${f.W}u; let x = it % ${f.W}u; let an = dims.pos0 + dep[n] - 1u;`);
    const { lines, idx } = split(f.axes, sizes, 'x', `q${id}`);
    for (const l of lines) line('    ' + l);
    const g = nodeGen(2, `q${id}_`);
    const v = g.value(id, { ...head, ...idx }, 'an');
    body.push(g.code());
    line(`    ${f.buf(`((b * ${NS}u + s) * dims.t + n) * ${f.W}u + ${offset(f.axes, sizes, idx)}`)} = ${v};`);
    line('  }');
  }
  const nodeBuf = new Map<Id, Access>();
  for (const r of st.rings) {
    const n = p.nodes[r.id];
    const own = n.type.axes.filter((a) => !L.head.includes(a));
    const W = count(own, sizes);
    nodeBuf.set(r.id, tmp(r.per, false));
    line(`  for (var it: u32 = lid; it < dims.t * ${W}u; it += WG) { // %${r.id} at every node (what the ring keeps)`);
    line(`    let n = it / ${W}u; let x = it % ${W}u; let an = dims.pos0 + dep[n] - 1u;`);
    const { lines, idx } = split(own, sizes, 'x', `r${r.id}`);
    for (const l of lines) line('    ' + l);
    const full = { ...head, ...idx };
    const g = nodeGen(2, `r${r.id}_`);
    const v = g.value(r.id, full, 'an');
    body.push(g.code());
    line(`    ${nodeBuf.get(r.id)!(`(b * dims.t + n) * ${r.per}u + ${offset(n.type.axes, sizes, full)}`)} = ${v};`);
    line('  }');
  }
  // Phase 1 and phase 2 are two launches: phase 2 reads what every workgroup of phase 1 staged.
  const phase2At = body.length;

  // Phase 2: one invocation per (node, output column) walks the node's path.
  /** A node read in a bounded term at key position aJ: the path node ju while on the path, the ring past the root. */
  const keyRead = (id: Id, idx: Index) => {
    const r = st.rings.find((x) => x.id === id)!;
    const off = offset(p.nodes[id].type.axes, sizes, idx);
    return `select(${use(`state:ring${id}`)}[${ringIndex(r, RING, `aJ % ${RING}u`, off)}], ${nodeBuf.get(id)!(`(b * dims.t + ju) * ${r.per}u + ${off}`)}, onPath)`;
  };
  const boundedRead: Resolver = (n, idx, where) => {
    const f = qf.get(n.id);
    if (f) return f.buf(`((b * ${NS}u + s) * dims.t + n) * ${f.W}u + ${offset(f.axes, sizes, idx)}`);
    if (n.type.side === 'key' && nodeBuf.has(n.id)) return keyRead(n.id, idx);
    return base(n, idx, where);
  };
  line(`  for (var it: u32 = lid; it < dims.t * ${NR}u; it += WG) {`);
  line(`    let n = it / ${NR}u; let col = it % ${NR}u; let an = dims.pos0 + dep[n] - 1u;`);
  const { lines: cl, idx: cidx } = split(L.rest, sizes, 'col', 'oc');
  for (const l of cl) line('    ' + l);
  const full: Record<string, string> = { ...head, ...cidx };
  line('    var o_acc: f32 = 0.0;');
  p.output.forEach((it, gi) => {
    const names = it.kind === 'term' ? [it.term] : it.terms;
    line(`    { // ${it.kind === 'norm' ? `normalize(${names.join(' + ')})` : names[0]}`);
    // Only normalised items need the denominators (and so the z state).
    const norm = it.kind === 'norm';
    line(`      var num: f32 = 0.0;${norm ? ' var den: f32 = 0.0;' : ''}`);
    for (const name of names) {
      const t = p.terms.find((x) => x.name === name)!;
      const tag = `g${gi}_${name.replace(/\W/g, '_')}_`;
      if (t.form.kind === 'prefix') {
        const q = st.prefix.find((x) => x.term === t)!;
        const B = prefixBufs.get(q.k)!;
        const at = (node: string, f: string) => `((b * ${NS}u + s) * dims.t + ${node}) * ${q.F}u + ${f}`;
        const si = `((b * ${NS}u + s) * ${q.F}u + f) * ${NR}u + col`;
        const zi = `(b * ${NS}u + s) * ${q.F}u + f`;
        const S = use(`state:S${q.k}`);
        const z = () => use(`state:z${q.k}`);
        line(`      { // ${t.name}: the path, then the committed state`);
        if (q.open) {
          const C = (t.mask[0] as { size: number }).size;
          line('        var jn: i32 = i32(n);');
          line('        loop {');
          line('          if (jn < 0) { break; }');
          line('          let ju = u32(jn); let aJ = dims.pos0 + dep[ju] - 1u;');
          line(`          if (aJ / ${C}u < an / ${C}u) {`);
          const vg = gen(6, `${tag}v`);
          const v = vg.value(t.value, full, 'aJ');
          body.push(vg.code());
          line(`            for (var f: u32 = 0u; f < ${q.F}u; f++) {`);
          line(`              let ph = ${B.phi(at('n', 'f'))}; let w = ${B.psi(at('ju', 'f'))};`);
          line(`              num = num + ph * w * ${v};${norm ? ' den = den + ph * w;' : ''}`);
          line('            }');
          line('          }');
          line('          jn = par[ju];');
          line('        }');
          line(`        let withOpen = dims.pos0 > 0u && (dims.pos0 - 1u) / ${C}u < an / ${C}u;`);
          line(`        for (var f: u32 = 0u; f < ${q.F}u; f++) {`);
          line(`          let ph = ${B.phi(at('n', 'f'))};`);
          line(`          var sv = ${S}[${si}];${norm ? ` var zv = ${z()}[${zi}];` : ''}`);
          line(`          if (withOpen) { sv = sv + ${use(`state:So${q.k}`)}[${si}];${norm ? ` zv = zv + ${use(`state:zo${q.k}`)}[${zi}];` : ''} }`);
          line(`          num = num + ph * sv;${norm ? ' den = den + ph * zv;' : ''}`);
          line('        }');
        } else {
          const gi2 = B.gateW === q.F && B.gate ? 'f' : '0u';
          if (B.gate) {
            line(`        var dacc: array<f32, ${B.gateW}>; // decay from each path node to n, per feature`);
            line(`        for (var f: u32 = 0u; f < ${B.gateW}u; f++) { dacc[f] = 1.0; }`);
          }
          const d = B.gate ? `dacc[${gi2}] * ` : '';
          line('        var jn: i32 = i32(n);');
          line('        loop {');
          line('          if (jn < 0) { break; }');
          line('          let ju = u32(jn); let aJ = dims.pos0 + dep[ju] - 1u;');
          const vg = gen(5, `${tag}v`);
          const v = vg.value(t.value, full, 'aJ');
          body.push(vg.code());
          line(`          for (var f: u32 = 0u; f < ${q.F}u; f++) {`);
          line(`            let ph = ${B.phi(at('n', 'f'))}; let w = ${d}${B.psi(at('ju', 'f'))};`);
          line(`            num = num + ph * w * ${v};${norm ? ' den = den + ph * w;' : ''}`);
          if (B.gate && gi2 === 'f') line(`            dacc[f] = dacc[f] * ${B.gate(at('ju', 'f'))};`);
          line('          }');
          if (B.gate && gi2 === '0u') line(`          dacc[0] = dacc[0] * ${B.gate(at('ju', '0u'))};`);
          line('          jn = par[ju];');
          line('        }');
          line(`        for (var f: u32 = 0u; f < ${q.F}u; f++) {`);
          line(`          let ph = ${B.phi(at('n', 'f'))};`);
          line(`          num = num + ph * ${d}${S}[${si}];${norm ? ` den = den + ph * ${d}${z()}[${zi}];` : ''}`);
          line('        }');
        }
        line('      }');
      } else {
        const r = lagRange(t.mask)!;
        line(`      { // ${t.name}: lag l reads the l-th ancestor, past the root the committed ring`);
        line('        var jn: i32 = i32(n);');
        line(`        for (var lag: u32 = 0u; lag <= min(${r[1]}u, an); lag++) {`);
        line('          if (lag > 0u && jn >= 0) { jn = par[u32(jn)]; }');
        line('          let aJ = an - lag;');
        if (r[0] > 0) line(`          if (lag < ${r[0]}u) { continue; }`);
        line(`          if (!(${maskCondition(t.mask, 'an', 'aJ')})) { continue; }`);
        line('          let onPath = jn >= 0; let ju = u32(max(jn, 0));');
        const g2 = gen(5, tag, boundedRead);
        const sv = g2.value(t.score, full, 'aJ');
        body.push(g2.code());
        line(`          num = num + ${sv} * ${keyRead(t.value, full)};`);
        if (norm) line(`          den = den + ${sv};`);
        line('        }');
        line('      }');
      }
    }
    line(it.kind === 'norm' ? `      o_acc = o_acc + num / (den + ${it.eps});` : '      o_acc = o_acc + num;');
    line('    }');
  });
  line(`    out_o[(b * dims.t + n) * ${per}u + ${offset(p.outAxes, sizes, full)}] = o_acc;`);
  line('  }');

  const parents: PlanBuffer = { name: TREE_PARENTS, role: 'input', floats: (b, t) => b * t, shape: (b, t) => [b, t] };
  const width = scratchWidth;
  const scratch: PlanBuffer = { name: 'tmp:tree', role: 'scratch', floats: (b, t) => Math.max(1, b * t * width), shape: (b, t) => [b, t, width] };
  const buffers = [...programBuffers(p, sizes), parents, ...st.buffers, scratch];
  const bindings = buffers
    .filter((b) => used.has(b.name) || b.name === 'out:o')
    .map((b) => ({ buffer: b.name, write: b.role === 'output' || b.role === 'scratch' }));
  // Both launches spread their items over `nsplit` workgroups per (b, head slice), nsplit from the grid: the
  // per-(node, column) path walks of a 64-node tree were 4096 items for 64 invocations of one workgroup per head.
  const spread = (lines: readonly string[]) => lines.map((l) => l.replace(/for \(var it: u32 = lid; (.*?); it \+= WG\)/, 'for (var it: u32 = part * WG + lid; $1; it += WG * nsplit)'));
  const phase0 = body.slice(0, phase0End);
  const kernelCode = (what: string, lines: readonly string[]) => `// tree verification kernel of ${p.name} (${what}): N draft nodes (parents in ${TREE_PARENTS}) against the committed state, read only
${DIMS_WGSL}
${bindingDecls(bindingsOf(lines))}
const WG = ${WG}u;
${decls.join('\n')}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3u) {
  let nsplit = nwg.x / ${NS}u;
  let s = wid.x / nsplit;
  let part = wid.x % nsplit;
  let b = wid.y;
${headLines.join('\n')}
${phase0.join('\n')}
${spread(lines).join('\n')}
}
`;
  const bindingsOf = (lines: readonly string[]) => {
    const text = [...phase0, ...lines].join('\n');
    return bindings.filter((b) => b.buffer === 'tmp:tree' || b.buffer === 'out:o' || text.includes(wgslName(b.buffer)));
  };
  const splits = (t: number, items: number) => Math.max(1, Math.min(64, Math.ceil((t * items) / (2 * WG))));
  const stageItems = Math.max(1, ...[...prefixBufs.values()].map((q) => q.F), scratchWidth / Math.max(1, NS));
  const stage: Kernel = {
    label: `${p.name}.tree-stage`,
    code: kernelCode('phase 1: node features', body.slice(phase0End, phase2At)),
    bindings: bindingsOf(body.slice(phase0End, phase2At)),
    workgroups: (b, t) => [NS * splits(t, stageItems), b, 1],
  };
  const kernel: Kernel = {
    label: `${p.name}.tree`,
    code: kernelCode('phase 2: path walks', body.slice(phase2At)),
    bindings: bindingsOf(body.slice(phase2At)),
    workgroups: (b, t) => [NS * splits(t, NR), b, 1],
  };
  return { variant: p.name, form: 'tree', kernels: [stage, kernel], buffers, outAxes: p.outAxes, sizes, schedule: { workgroup: WG, maxNodes } };
}

/**
 * Folds an accepted path into the state: a gather kernel copies the path's node inputs into [b, P, …] scratch,
 * then the recurrent step kernel runs over them. Dims: b, t = P (the accepted length), pos0 = the committed
 * position, pad = N (the node count of the tree inputs 'in:X' [b, N, …]). 'tree:path' [b, P] holds node indices.
 */
export function treeCommitPlan(p: Program, sizes: Sizes, maxNodes: number): Plan {
  if (!Number.isInteger(maxNodes) || maxNodes < 1) throw new Error(`treeCommitPlan: maxNodes must be a positive integer, got ${maxNodes}`);
  const rec = recurrentPlan(p, sizes);
  const gathered = (name: string) => `tmp:path:${name.slice(name.indexOf(':') + 1)}`;
  const ins = p.inputs.map((d) => ({ name: `in:${d.name}`, per: count(d.axes, sizes) }));
  const maxPer = Math.max(1, ...ins.map((d) => d.per));
  const gatherBindings = [
    { buffer: TREE_PATH, write: false },
    ...ins.map((d) => ({ buffer: d.name, write: false })),
    ...ins.map((d) => ({ buffer: gathered(d.name), write: true })),
  ];
  const copies = ins.map((d) => `  if (x < ${d.per}u) { ${wgslName(gathered(d.name))}[row * ${d.per}u + x] = ${wgslName(d.name)}[(bb * dims.pad + node) * ${d.per}u + x]; }`);
  const gatherCode = `// gathers the accepted path's node inputs of ${p.name}: row (b, p) ← tree row (b, path[b, p]); dims.pad = tree nodes N
${DIMS_WGSL}
${bindingDecls(gatherBindings)}
const WG = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${FLAT_INDEX}
  if (flat >= dims.b * dims.t * ${maxPer}u) { return; }
  let x = flat % ${maxPer}u;
  let row = flat / ${maxPer}u;
  let bb = row / dims.t;
  let node = min(u32(max(round(${wgslName(TREE_PATH)}[row]), 0.0)), max(dims.pad, 1u) - 1u);
${copies.join('\n')}
}
`;
  const gather: Kernel = { label: `${p.name}.tree-gather`, code: gatherCode, bindings: gatherBindings, workgroups: (b, t) => grid(b * t * maxPer, WG), launch: { kind: 'grid', perToken: maxPer, size: WG } };
  const step = rec.kernels[0];
  const renamed: Kernel = {
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
  return { variant: p.name, form: 'tree-commit', kernels: [gather, renamed], buffers, outAxes: p.outAxes, sizes, schedule: { workgroup: WG, maxNodes } };
}
