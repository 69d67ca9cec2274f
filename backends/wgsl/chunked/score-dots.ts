// A bounded term's dot products over the score tile, register-blocked like a matmul: llama_linearized's
// relu(q̂_i·k̂_j)², flash's relu(q_i·k_j / C + b)², based's exp(q_i·k_j). Evaluated cell by cell (scores.ts
// boundedCell), each of an invocation's TI × TJ cells ran its own loop over the feature axis, two workgroup loads a
// product; here one loop takes every cell's product a step, the TI query rows' and TJ key rows' features loaded once:
// (TI + TJ) loads for TI · TJ products. The sums run over the axis in the same order as before, so each is the same
// float. The cells' masks are not looked at inside the loop: an invocation whose cells are all masked out skips it.
import { operands, type Id, type Node } from '../../../src/ir/types.ts';
import { maskCondition } from '../common.ts';
import type { Block } from '../wgsl-block.ts';
import type { StagedFeature } from './analysis.ts';
import { stagedResolver, type ChunkKernel } from './declarations.ts';

/** Σ_axis q[i, axis] · k[j, axis] of a staged query feature and a staged key feature of one row axis. */
interface StagedDot {
  readonly id: Id;
  readonly axis: string;
  readonly q: StagedFeature;
  readonly k: StagedFeature;
}

/** The cells' precomputed dot products: the WGSL name of node `id`'s value at cell (m, n). */
export type CellDots = ReadonlyMap<Id, (m: number, n: number) => string>;

/** The staged dot products in the scores of the kernel's bounded score-matrix terms, each once. */
function stagedDots(K: ChunkKernel): StagedDot[] {
  const { a } = K;
  const staged = new Map(a.staged.map((f) => [f.id, f]));
  const out = new Map<Id, StagedDot>();
  const visit = (id: Id, seen: Set<Id>): void => {
    if (seen.has(id)) return;
    seen.add(id);
    const n: Node = a.p.nodes[id];
    if (n.op === 'sum') {
      const x = a.p.nodes[n.x];
      if (x.op === 'binary' && x.fn === 'mul') {
        const [l, r] = [staged.get(x.a), staged.get(x.b)];
        const q = l?.side === 'query' ? l : r?.side === 'query' ? r : undefined;
        const k = l?.side === 'key' ? l : r?.side === 'key' ? r : undefined;
        if (q && k && q !== k && q.axes.length === 1 && k.axes.length === 1 && q.axes[0] === n.axis && k.axes[0] === n.axis) {
          out.set(id, { id, axis: n.axis, q, k });
          return;
        }
      }
    }
    for (const o of operands(n)) visit(o, seen);
  };
  for (const t of a.L.aTerms) if (t.form.kind !== 'prefix') visit(t.score, new Set());
  return [...out.values()];
}

/**
 * Emits into `b` (the score phase's per-invocation block, rows ti + m·NTI, key columns tj + n·NTJ) the invocation's
 * dot products of every staged dot of its bounded terms, and returns where each cell's value is.
 */
export function emitCellDots(K: ChunkKernel, b: Block, ti: string, tj: string): CellDots {
  const dots = stagedDots(K);
  if (!dots.length) return new Map();
  const { a } = K;
  const { TI, TJ, NTI, NTJ } = a.tile;
  const rows = [...Array(TI).keys()].map((m) => b.let(`dil_${m}`, `${ti} + ${m * NTI}u`));
  // a column past the score matrix is never stored: its key row is clamped onto the last one
  const cols = [...Array(TJ).keys()].map((n) => b.let(`djj_${n}`, `min(${tj} + ${n * NTJ}u, ${a.CA - 1}u)`));
  const keyRows = cols.map((jj, n) => b.let(`djr_${n}`, `${jj} + ${a.HALO - a.AH}u`));
  const names = new Map(dots.map((d) => [d.id, [...Array(TI).keys()].map((m) => [...Array(TJ).keys()].map((n) => b.var(`dt${d.id}_${m}_${n}`, '0.0')))]));
  // whether any of the invocation's cells is in a bounded term's mask (and in the chunk): else the loop is skipped
  const terms = a.L.aTerms.filter((t) => t.form.kind !== 'prefix');
  const cell = (m: number, n: number) => {
    const ia = `(c0 + ${rows[m]})`;
    const jai = `(i32(c0) + i32(${tj} + ${n * NTJ}u) - ${a.AH})`;
    const ja = `u32(max(${jai}, 0))`;
    const masks = terms.map((t) => `(${maskCondition(t.mask, ia, ja)})`).join(' || ');
    return `(${rows[m]} < n && ${tj} + ${n * NTJ}u < ${a.CA}u && ${jai} >= 0 && (${masks}))`;
  };
  const any = b.let('dany', [...Array(TI).keys()].flatMap((m) => [...Array(TJ).keys()].map((n) => cell(m, n))).join(' || '));
  b.block(`if (${any})`, (w) => {
    for (const d of dots) {
      const size = a.sizes[d.axis];
      w.for('l', '0u', (l) => `${l} < ${size}u`, (l, at) => {
        const idx = { ...K.head, [d.axis]: at };
        const qs = rows.map((il, m) => l.let(`dq_${m}`, stagedResolver(K, il, '0u')(a.p.nodes[d.q.id], idx, 'c0', l)!));
        const ks = keyRows.map((jr, n) => l.let(`dk_${n}`, stagedResolver(K, '0u', jr)(a.p.nodes[d.k.id], idx, 'c0', l)!));
        const acc = names.get(d.id)!;
        for (let m = 0; m < TI; m++) for (let n = 0; n < TJ; n++) l.line(`${acc[m][n]} = ${acc[m][n]} + ${qs[m]} * ${ks[n]};`);
      });
    }
  });
  return new Map(dots.map((d) => [d.id, (m: number, n: number) => names.get(d.id)![m][n]]));
}
