// The commit of an accepted path (tree.ts, treeCommitPlan): P accepted nodes, read by index from the tree's
// inputs, folded into the decoding state in one launch whose workgroups split every prefix term's state by
// (head slice, block of features, block of columns):
//
//   S[f, c] ← D_P[f] S[f, c] + Σ_p D_{p→P}[f] ψ_p[f] v_p[c]      z[f, c] alike with 1 for v      (D: gate products)
//
// (z is kept per column, as S is — layout.ts — so the invocation that owns S[f, c] owns z[f, c] too.)
// Each invocation keeps E = 4 elements S[f, c] in registers (1 in a hardware split's 256 threads: elementsOf) and runs the sum along the path in the recurrent
// step's own order and arithmetic (S ← exp(lg_p) S + ψ_p v_p; past_groups: S += So at a group start, So += ψ v),
// so the state it leaves is the one decoding the accepted tokens leaves (on lavapipe S to the bit, gated z within
// 3e-7: the driver may fuse the two kernels' exp and multiply-add differently), while nothing waits on memory
// between steps: ψ, log-gates and values of TILE path nodes are staged in workgroup memory at a time.
// The rings take the path's last RING positions (workgroup 0 of each head slice). A feature's row reductions
// (llama's ‖rope(k)‖ over d) are staged once per path entry first: element by element, ExprGen redid them per feature.
//
// The same body runs inside the folded tree kernel (tree-fold.ts) as extra workgroups: there it reads the state
// from one buffer and writes the folded state into another (a ping-pong pair), the path's inputs from the nodes
// the previous step kept, and writes every ring slot (the old ring's where the path does not reach).
import type { PrefixForm } from '../../src/ir/terms.ts';
import type { Id, Program } from '../../src/ir/types.ts';
import { count, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { KernelBuilder, type Binding, type WorkgroupArray } from './kernel-builder.ts';
import { layoutOf, prefixGate, ringIndex, rowAxes, stateLayout } from './layout.ts';
import type { Kernel } from './plan.ts';
import type { Block } from './wgsl-block.ts';
import { definePerSequence, rowReductions, TREE_PATH, TREE_SEQ, TREE_TILE, TREE_WG } from './tree-analysis.ts';

/**
 * State elements (features of one column) per invocation: 4 at TREE_WG threads, fewer with more threads (a hardware
 * split, tree-split.ts), so that a workgroup covers the same CB × FB block and each invocation's walk along the path
 * advances 4 · TREE_WG / threads elements instead of 4.
 */
function elementsOf(threads: number): number {
  return Math.max(1, Math.floor((4 * TREE_WG) / threads));
}

/** The commit's split of the state: CB columns × FB features per workgroup of `threads` invocations. */
function commitShape(p: Program, sizes: Sizes, threads: number): { NS: number; NR: number; CB: number; E: number; FB: number; ncb: number; blocks: number } {
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes);
  const NR = count(L.rest, sizes);
  const Fmax = Math.max(1, ...st.prefix.map((q) => q.F));
  // A past_groups term's zo is kept once per feature, read by every column's thread and written back by column 0's:
  // in place (the separate commits), a second column block could read zo after the first wrote it back, so such a
  // program keeps every column of a feature in one workgroup (as far as its threads reach).
  const cap = st.prefix.some((q) => q.open) ? threads : 16;
  let CB = 1;
  while (CB < cap && CB < NR) CB *= 2;
  const E = elementsOf(threads);
  const FB = (threads / CB) * E;
  const ncb = Math.ceil(NR / CB);
  return { NS: count(L.head, sizes), NR, CB, E, FB, ncb, blocks: st.prefix.length ? Math.ceil(Fmax / FB) * ncb : 1 };
}

/** The commit's workgroups: NS head slices × `blocks` blocks of CB columns and FB features, at `threads` invocations. */
export function commitBlocks(p: Program, sizes: Sizes, threads = TREE_WG): { NS: number; blocks: number } {
  const { NS, blocks } = commitShape(p, sizes, threads);
  return { NS, blocks };
}

/** Where the commit body is emitted: its own kernel (treeCommitKernel) or the folded tree kernel's extra workgroups. */
export interface CommitSite {
  readonly kb: KernelBuilder;
  readonly main: Block;
  /** This workgroup's index among the commit's NS · blocks workgroups of sequence `wid.y`. */
  readonly group: string;
  /** The accepted path, [b, P] f32 node indices (TREE_PATH). */
  readonly path: Binding;
  /** Rows per sequence of the buffer the path's nodes are read from (a u32 expression ≥ 1). */
  readonly rows: string;
  /** The resolver of inputs and params, given the variable holding the node row each position belongs to. */
  readonly reader: (rowOf: (where: string) => string) => Resolver;
  /** WGSL reading and writing state buffer `name` ('state:S0', …) at `index`. */
  readonly load: (name: string, index: string) => string;
  readonly store: (name: string, index: string) => string;
  /** Write every ring slot (the fold's new buffer): the path's positions where it reaches, the old ring's elsewhere. */
  readonly wholeRing: boolean;
}

export function treeCommitKernel(p: Program, sizes: Sizes, threads = TREE_WG): Kernel {
  const kb = new KernelBuilder(threads, ['wid', 'lid']);
  const st = stateLayout(p, sizes);
  const path = kb.storage(TREE_PATH, false, { always: true });
  const state = new Map(st.buffers.map((b) => [b.name, kb.storage(b.name, true)]));
  const at = (name: string, index: string) => `${kb.use(state.get(name)!)}[${index}]`;
  const { NS, blocks } = commitBlocks(p, sizes, threads);
  emitCommit(p, sizes, {
    kb, main: kb.body, group: 'wid.x', path, rows: 'max(dims.pad, 1u)',
    reader: (rowOf) => programReader(kb, p, sizes, (where) => `b * dims.pad + ${rowOf(where)}`),
    load: at, store: at, wholeRing: false,
  });
  return kb.build({
    label: `${p.name}.tree-commit`,
    comment: [
      `tree commit kernel of ${p.name}: the accepted path (node indices in ${TREE_PATH}) folded into the state, ${blocks} workgroup(s) per head slice`,
      'dims.t = P (the longest path: the row stride of the paths), dims.pad = N (the rows of the tree inputs), dims.pos0 = the committed position;',
      `${TREE_SEQ}[b] = (sequence b's position past dims.pos0, its path length)`,
    ],
    workgroups: (b) => [NS * blocks, b, 1],
  });
}

/**
 * The commit's body at `site`, sequence b = wid.y: dims.t = P (the longest path, the paths' row stride), dims.pos0 = the
 * committed position; sequence b's own path length and position come from TREE_SEQ (definePerSequence: plen, pos0).
 */
export function emitCommit(p: Program, sizes: Sizes, site: CommitSite): void {
  const { kb } = site;
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes);
  const { NS, NR, CB, E, FB, ncb, blocks } = commitShape(p, sizes, kb.workgroupSize);
  const TP = TREE_TILE;

  const nodeOf = new Map<string, string>();
  const read = site.reader((where) => {
    const node = nodeOf.get(where);
    if (!node) throw new Error(`internal: ${p.name}: an input read at '${where}', which is no path node's position`);
    return node;
  });
  const path = site.path;
  const psiT = kb.workgroup('psi', TP * FB, 'ψ of the tile, [TILE, features of this workgroup]');
  const lgT = st.prefix.some((q) => prefixGate(p, q.term.form as PrefixForm)) ? kb.workgroup('lg', TP * FB, 'log-gates of the tile') : null;
  const vT = kb.workgroup('vt', TP * CB, 'values of the tile, [TILE, columns of this workgroup]');
  /** The row reductions inside `id` at a path entry's position, each staged per entry in a workgroup array. */
  const reductionsOf = (id: Id) => rowReductions(p, id, 'j', { i: 'j', j: 'j' }, L.head).filter((r) => r.where === 'j').map((r) => r.id);
  const staged = new Map<string, WorkgroupArray>();
  const stagedArray = (r: Id, rows: number, tag: string) => {
    const key = `${tag}${r}`;
    if (!staged.has(key)) staged.set(key, kb.workgroup(`red${key}`, rows, `%${r} per path entry (${tag === 'p' ? 'the tile' : 'the rings'})`));
    return staged.get(key)!;
  };
  /**
   * Stages `reds` for path entries first … first + rows (below `limit`) into their arrays; returns the resolver an
   * element of entry `row` computed at `pos` reads them through.
   */
  const stageReductions = (at: Block, reds: readonly Id[], arrays: ReadonlyMap<Id, WorkgroupArray>, n: string, entry: (i: string) => string) => {
    at.strided('r', n, (b, i) => {
      const k = b.let('k', entry(i));
      const node = b.let('node', nodeAt(k));
      const pos = b.let('pos', `pos0 + ${k}`);
      nodeOf.set(pos, node);
      const g = new ExprGen(p, sizes, read, { i: pos, j: pos });
      for (const r of reds) b.line(`${arrays.get(r)!.name}[${i}] = ${g.value(b, r, head, pos)};`);
    });
    at.line('workgroupBarrier();');
  };
  const reading = (reds: readonly Id[], arrays: ReadonlyMap<Id, WorkgroupArray>, pos: string, row: string): Resolver => (n, idx, where, blk) =>
    where === pos && reds.includes(n.id) ? `${arrays.get(n.id)!.name}[${row}]` : read(n, idx, where, blk);

  const main = site.main;
  main.define('s', `(${site.group}) / ${blocks}u`, 'head slice');
  main.define('blk', `(${site.group}) % ${blocks}u`);
  main.define('b', 'wid.y');
  definePerSequence(kb, main, true);
  const head = main.split(L.head, sizes, 's', 'hx');
  const f0 = main.let('f0', `(blk / ${ncb}u) * ${FB}u`, "this workgroup's first feature");
  const c = main.let('c', `(blk % ${ncb}u) * ${CB}u + lid % ${CB}u`, "this invocation's column");
  const fr = main.let('fr', `(lid / ${CB}u) * ${E}u`, "its first feature in the workgroup's block");
  /** Node index of path entry `k` (clamped to the tree). */
  const nodeAt = (k: string) => `min(u32(max(round(${kb.use(path)}[b * dims.t + ${k}]), 0.0)), ${site.rows} - 1u)`;

  for (const q of st.prefix) {
    const form = q.term.form as PrefixForm;
    const gate = prefixGate(p, form);
    const C = q.open ? (q.term.mask[0] as { size: number }).size : 0;
    main.block('', (t) => {
      t.comment(`${q.term.name}: S${C ? ', So' : ''} and z along the path`);
      const cc = t.let('cc', `min(${c}, ${NR - 1}u)`);
      const at = (f: string) => `((b * ${NS}u + s) * ${q.F}u + ${f}) * ${NR}u + ${cc}`;
      const zAt = (f: string) => `(b * ${NS}u + s) * ${q.F}u + ${f}`;
      const fe = [...Array(E).keys()].map((e) => t.let('f', `${f0} + ${fr} + ${e}u`));
      const owns = fe.map((f) => t.let('own', `${c} < ${NR}u && ${f} < ${q.F}u`));
      const ownsZ = C ? fe.map((f) => t.let('ownZ', `${c} == 0u && ${f} < ${q.F}u`)) : [];
      const sv = fe.map((f, e) => t.var('sv', `select(0.0, ${site.load(`state:S${q.k}`, at(`min(${f}, ${q.F - 1}u)`))}, ${owns[e]})`));
      const so = C ? fe.map((f, e) => t.var('so', `select(0.0, ${site.load(`state:So${q.k}`, at(`min(${f}, ${q.F - 1}u)`))}, ${owns[e]})`)) : [];
      // z is kept per column like S (layout.ts): each thread advances its own column's copy.
      const zv = fe.map((f, e) => t.var('zv', `select(0.0, ${site.load(`state:z${q.k}`, at(`min(${f}, ${q.F - 1}u)`))}, ${owns[e]})`));
      // Every column's thread follows zo (its z joins it at a group start); column 0's writes it back.
      const zo = C ? fe.map((f, e) => t.var('zo', `select(0.0, ${site.load(`state:zo${q.k}`, zAt(`min(${f}, ${q.F - 1}u)`))}, ${owns[e]})`)) : [];
      const reds = reductionsOf(form.psi);
      const redT = new Map(reds.map((r) => [r, stagedArray(r, TP, 'p')] as const));
      t.for('p0', '0u', (p0) => `${p0} < plen`, (l, p0) => {
        if (reds.length) stageReductions(l, reds, redT, `min(${TP}u, plen - ${p0})`, (i) => `${p0} + ${i}`);
        l.comment(`stage ψ${gate && !C ? ', log-gate' : ''} and v of path entries p0 …`);
        l.strided('e', `${TP * FB}u`, (b, e) => {
          const k = b.let('k', `${p0} + ${e} / ${FB}u`);
          const f = b.let('f', `${f0} + ${e} % ${FB}u`);
          b.block(`if (${k} < plen && ${f} < ${q.F}u)`, (x) => {
            const node = x.let('node', nodeAt(k));
            const pos = x.let('pos', `pos0 + ${k}`);
            nodeOf.set(pos, node);
            const g = new ExprGen(p, sizes, reading(reds, redT, pos, `${e} / ${FB}u`), { i: pos, j: pos });
            const idx: Index = { ...head, ...(form.feature ? { [form.feature]: f } : {}) };
            x.line(`${psiT.name}[${e}] = ${g.value(x, form.psi, idx, pos)};`);
            if (lgT && gate && !C) x.line(`${lgT.name}[${e}] = log(max(${g.value(x, gate.id, gate.perFeature ? idx : { ...head }, pos)}, 1e-30));`);
          });
        });
        l.strided('e', `${TP * CB}u`, (b, e) => {
          const k = b.let('k', `${p0} + ${e} / ${CB}u`);
          const col = b.let('col', `(blk % ${ncb}u) * ${CB}u + ${e} % ${CB}u`);
          b.block(`if (${k} < plen && ${col} < ${NR}u)`, (x) => {
            const node = x.let('node', nodeAt(k));
            const pos = x.let('pos', `pos0 + ${k}`);
            nodeOf.set(pos, node);
            const full: Index = { ...head, ...x.split(L.rest, sizes, col, 'oc') };
            x.line(`${vT.name}[${e}] = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(x, q.term.value, full, pos)};`);
          });
        });
        l.line('workgroupBarrier();');
        l.for('kk', '0u', (kk) => `${kk} < min(${TP}u, plen - ${p0})`, (m, kk) => {
          const pos = m.let('pos', `pos0 + ${p0} + ${kk}`);
          const v = m.let('v', `${vT.name}[${kk} * ${CB}u + lid % ${CB}u]`);
          const starts = C ? m.let('starts', `${pos} % ${C}u == 0u && ${pos} > 0u`) : null;
          fe.forEach((_, e) => {
            const at = `${kk} * ${FB}u + ${fr} + ${e}u`;
            const ps = m.let('ps', `${psiT.name}[${at}]`);
            if (C) {
              m.line(`if (${starts}) { ${sv[e]} = ${sv[e]} + ${so[e]}; ${so[e]} = 0.0; ${zv[e]} = ${zv[e]} + ${zo[e]}; ${zo[e]} = 0.0; }`);
              m.line(`${so[e]} = ${so[e]} + ${ps} * ${v}; ${zo[e]} = ${zo[e]} + ${ps};`);
            } else {
              const dec = m.let('dec', gate ? `exp(${lgT!.name}[${at}])` : '1.0');
              m.line(`${sv[e]} = ${dec} * ${sv[e]} + ${ps} * ${v}; ${zv[e]} = ${dec} * ${zv[e]} + ${ps};`);
            }
          });
        });
        l.line('workgroupBarrier();');
      }, { step: (p0) => `${p0} += ${TP}u` });
      fe.forEach((f, e) => {
        t.line(`if (${owns[e]}) { ${site.store(`state:S${q.k}`, at(f))} = ${sv[e]};${C ? ` ${site.store(`state:So${q.k}`, at(f))} = ${so[e]};` : ''} }`);
        t.line(`if (${owns[e]}) { ${site.store(`state:z${q.k}`, at(f))} = ${zv[e]}; }`);
        if (C) t.line(`if (${ownsZ[e]}) { ${site.store(`state:zo${q.k}`, zAt(f))} = ${zo[e]}; }`);
      });
    });
  }
  if (st.rings.length) {
    main.block('if (blk == 0u)', (blk) => {
      blk.comment(site.wholeRing ? `rings: every slot, from the path's last ${st.ring} positions or the old ring` : `rings: the last ${st.ring} positions of the path`);
      const kept = blk.let('kept', `min(plen, ${st.ring}u)`);
      const reds = [...new Set(st.rings.flatMap((r) => reductionsOf(r.id)))];
      const arrays = new Map(reds.map((x) => [x, stagedArray(x, st.ring, 'r')] as const));
      if (reds.length) stageReductions(blk, reds, arrays, kept, (i) => `plen - ${kept} + ${i}`);
      for (const r of st.rings) (site.wholeRing ? emitWholeRing : emitRing)(blk, r, kept, reds, arrays);
    });
  }
  function emitRing(blk: Block, r: { id: Id; per: number; sliced: number }, kept: string, reds: readonly Id[], arrays: ReadonlyMap<Id, WorkgroupArray>): void {
    const own = rowAxes(p, L, r.id);
    const W = count(own, sizes);
    blk.strided('e', `${kept} * ${W}u`, (b, e) => {
      const k = b.let('k', `plen - ${kept} + ${e} / ${W}u`);
      const node = b.let('node', nodeAt(k));
      const pos = b.let('pos', `pos0 + ${k}`);
      nodeOf.set(pos, node);
      const full = { ...head, ...b.split(own, sizes, `${e} % ${W}u`, `r${r.id}`) };
      const v = new ExprGen(p, sizes, reading(reds, arrays, pos, `${e} / ${W}u`), { i: pos, j: pos }).value(b, r.id, full, pos);
      b.line(`${site.store(`state:ring${r.id}`, ringIndex(r, st.ring, `${pos} % ${st.ring}u`, offset(p.nodes[r.id].type.axes, sizes, full)))} = ${v};`);
    });
  }
  /**
   * Every slot of ring `r`: slot σ holds the latest position p ≡ σ (mod RING) below pos0 + P, which is path entry
   * p − pos0 when the path reaches it (d = pos0 + P − 1 − p < P), else the old ring's value, copied.
   */
  function emitWholeRing(blk: Block, r: { id: Id; per: number; sliced: number }, kept: string, reds: readonly Id[], arrays: ReadonlyMap<Id, WorkgroupArray>): void {
    const own = rowAxes(p, L, r.id);
    const W = count(own, sizes);
    const R = st.ring;
    blk.strided('e', `${R * W}u`, (b, e) => {
      const slot = b.let('slot', `${e} / ${W}u`);
      const d = b.let('d', `(pos0 + plen - 1u + ${R}u - ${slot}) % ${R}u`, 'how far before the last path position the slot lies');
      const full = { ...head, ...b.split(own, sizes, `${e} % ${W}u`, `r${r.id}`) };
      const idx = b.let('ri', ringIndex(r, R, slot, offset(p.nodes[r.id].type.axes, sizes, full)));
      b.ifChain([
        [`plen > 0u && ${d} < plen`, (x) => {
          const k = x.let('k', `plen - 1u - ${d}`);
          const node = x.let('node', nodeAt(k));
          const pos = x.let('pos', `pos0 + ${k}`);
          nodeOf.set(pos, node);
          const v = new ExprGen(p, sizes, reading(reds, arrays, pos, `${kept} - 1u - ${d}`), { i: pos, j: pos }).value(x, r.id, full, pos);
          x.line(`${site.store(`state:ring${r.id}`, idx)} = ${v};`);
        }],
        [null, (x) => x.line(`${site.store(`state:ring${r.id}`, idx)} = ${site.load(`state:ring${r.id}`, idx)};`)],
      ]);
    });
  }
}
