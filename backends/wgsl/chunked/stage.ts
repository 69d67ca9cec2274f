// Phase 1 of a chunk: stage its rows in workgroup memory — φ, ψ (and log-gates) of each prefix term, the bounded
// terms' query/key features and the values (with halo) — then the gates' cumulative sums. What each staged
// array holds is a Slot here; staging.ts turns the slots into unrolled batches and loops.
import type { Id, Node } from '../../../src/ir/types.ts';
import { ExprGen, offset, type Resolver, type StatsResolver } from '../expr.ts';
import { ringIndex } from '../layout.ts';
import type { Block } from '../wgsl-block.ts';
import { psiRowStride, type PrefixPlan, type StagedFeature } from './analysis.ts';
import { positions, psiStride, stateRef, type ChunkKernel, type StagedRow } from './declarations.ts';
import { emitSlots, prefetchSlots, THIS_CHUNK, type PrefetchedSlots, type Place, type Slot } from './staging.ts';

export function emitStage(K: ChunkKernel, body: Block): void {
  emitReductions(K, body);
  emitSlots(body, K.a.WG, slots(K));
}

/**
 * The chunk's staging with its global loads issued a chunk ahead (staging.ts prefetchSlots), or null where the
 * kernel stages as emitStage does: when the spec turns it off, when a row quantity is staged first (its levels read
 * the chunk's own rows from workgroup memory, so the slots' values cannot be computed before it), when the kernel
 * reads through a memory interface of its own (a gradient stage's reader may emit statements), and wherever
 * prefetchSlots declines (a slot in a loop, too many registers held).
 */
export function prefetchStage(K: ChunkKernel): PrefetchedSlots | null {
  if (K.a.spec.prefetch === false || K.arrays.reductions.size || K.a.spec.io) return null;
  return prefetchSlots(K.a.WG, slots(K), K.io.read);
}

/**
 * Each row quantity the slots read (row-reductions.ts), once per row of the chunk and the halo it needs (a value
 * with feature axes once per element of its row), at the row's position clamped as the slots clamp theirs; level
 * by level, a barrier after each, each level reading the ones before it as staged; then the slots read them all
 * (`reading`).
 */
function emitReductions(K: ChunkKernel, body: Block): void {
  const { a } = K;
  const all = [...K.arrays.reductions.values()];
  const levels = Math.max(0, ...all.map((r) => r.level));
  for (let level = 1; level <= levels; level++) {
    const below = new Map([...K.arrays.reductions].filter(([, r]) => r.level < level));
    for (const r of all.filter((x) => x.level === level)) {
      const { W } = r;
      body.strided('r', `${(a.C + r.halo) * W}u`, (b, x) => {
        const rowOf = W > 1 ? b.let('rr', `${x} / ${W}u`) : x;
        const tposi = b.let('tposi', `i32(c0) + i32(${rowOf}) - ${r.halo}`);
        const ok = b.let('ok', `${tposi} >= 0 && u32(${tposi}) < dims.t`);
        const tpos = b.let('tpos', `select(0u, u32(${tposi}), ${ok})`);
        const at = { tpos, row: `(i32(${rowOf}) - ${r.halo})` };
        const g = new ExprGen(a.p, a.sizes, reading(K, at, below), positions(K, tpos, tpos), statsReading(K, at, below));
        const idx = W > 1 ? { ...K.head, ...b.split(r.axes, a.sizes, `${x} % ${W}u`, `rx${r.id}`) } : K.head;
        if (r.kind === 'stats') {
          const s = g.softmaxStats(b, a.p.nodes[r.id] as Extract<Node, { op: 'softmax' }>, idx, tpos);
          b.line(`${r.max.name}[${x}] = ${s.max};`);
          b.line(`${r.sum.name}[${x}] = ${s.sum};`);
        } else {
          b.line(`${r.array.name}[${x}] = ${g.value(b, r.id, idx, tpos)};`);
        }
      });
    }
    body.line('workgroupBarrier();');
  }
}

/** Where a row quantity is read: the element's position and its row from the chunk start (i32). */
type RowAt = Pick<Place, 'tpos' | 'row'>;

/** `read` (default K.io.read), with the staged row quantities (default all) read from their arrays at the element's row (`at.row`). */
function reading(K: ChunkKernel, at: RowAt, staged: ReadonlyMap<Id, StagedRow> = K.arrays.reductions, read: Resolver = K.io.read): Resolver {
  return (n, idx, where, blk) => {
    const r = staged.get(n.id);
    if (!r || r.kind !== 'value' || where !== at.tpos) return read(n, idx, where, blk);
    const row = `u32(${at.row}${r.halo ? ` + ${r.halo}` : ''})`;
    return r.W > 1 ? `${r.array.name}[${row} * ${r.W}u + ${offset(r.axes, K.a.sizes, idx)}]` : `${r.array.name}[${row}]`;
  };
}

/** The staged softmax statistics (default all) at the element's row. */
function statsReading(K: ChunkKernel, at: RowAt, staged: ReadonlyMap<Id, StagedRow> = K.arrays.reductions): StatsResolver {
  return (n, idx, where) => {
    const r = staged.get(n.id);
    if (!r || r.kind !== 'stats' || where !== at.tpos) return null;
    const row = `u32(${at.row}${r.halo ? ` + ${r.halo}` : ''})`;
    const el = r.W > 1 ? `${row} * ${r.W}u + ${offset(r.axes, K.a.sizes, idx)}` : row;
    return { max: `${r.max.name}[${el}]`, sum: `${r.sum.name}[${el}]` };
  };
}

/**
 * The staged arrays in order: each prefix term's φ, ψ and gate, the query then key features, the values. A
 * segment-state launch writes no outputs: it folds ψ ⊗ v into S and z only, so it stages neither φ nor the bounded
 * terms' features (computing them there read q a second time and evaluated φ twice per row across the plan).
 */
function slots(K: ChunkKernel): Slot[] {
  const { a } = K;
  const outputs = a.segmented !== 'state';
  return [
    ...a.prefix.flatMap((q) => [...(outputs ? [featureSlot(K, q, 'phi')] : []), featureSlot(K, q, 'psi'), ...(q.gateWidth ? [gateSlot(K, q)] : [])]),
    ...(outputs ? a.staged.filter((f) => !f.alias).map((f) => frontierSlot(K, f)) : []),
    K.arrays.vs.type === 'vec4<f32>' ? valueVecSlot(K) : valueSlot(K),
  ];
}

/** The element's value, computed by a generator of its own at position `tpos`, its row reductions read as staged. */
const valueOf = (K: ChunkKernel, id: Id) => (b: Block, at: Place, read?: Resolver) =>
  new ExprGen(K.a.p, K.a.sizes, reading(K, at, K.arrays.reductions, read), positions(K, at.tpos, at.tpos), statsReading(K, at)).value(b, id, at.idx, at.tpos);

/** A store into the decoding state's ring of node `id` (state export: decoding needs the last RING rows). */
function ringStore(K: ChunkKernel, id: Id, b: Block, at: Place, val: string, cond: string): void {
  const st = K.a.state;
  const r = st?.rings.find((x) => x.id === id);
  if (!st || !r) return;
  const ring = stateRef(K, `state:ring${id}`);
  b.block(`if (${cond})`, (s) => s.line(`${ring}[${ringIndex(r, st.ring, `${at.tpos} % ${st.ring}u`, offset(K.a.p.nodes[id].type.axes, K.a.sizes, at.idx))}] = ${val};`));
}

/** Where element x of rows of W lands in an array whose rows are `stride` apart (row x / W, column x % W). */
function paddedElement(x: string, W: number, stride: number): string {
  return stride === W ? x : `(${x} / ${W}u) * ${stride}u + ${x} % ${W}u`;
}

/** φ_k or ψ_k ([C + halo][F]); ψ of a prefix term no bounded term reads is stored transposed. */
function featureSlot(K: ChunkKernel, q: PrefixPlan, which: 'phi' | 'psi'): Slot {
  if (which === 'phi' ? q.vec4 : q.psiVec4) return featureVecSlot(K, q, which);
  const { a } = K;
  const id = which === 'phi' ? q.form.phi : q.form.psi;
  const halo = which === 'phi' ? 0 : q.psiHalo;
  const array = K.arrays.prefix[q.k][which].name;
  return {
    N: (a.C + halo) * q.F,
    place: (b, xc, { c0, n } = THIS_CHUNK) => {
      const x = b.let('x', xc);
      const row = b.let('row', `i32(${x} / ${q.F}u) - ${halo}`);
      const ok = b.let('ok', `${row} < i32(${n}) && i32(${c0}) + ${row} >= 0`);
      const tpos = b.let('tpos', `select(0u, u32(i32(${c0}) + ${row}), ${ok})`);
      return { x, ok, tpos, row, idx: { ...K.head, ...(q.feature ? { [q.feature]: `(${x} % ${q.F}u)` } : {}) } };
    },
    value: valueOf(K, id),
    store: (b, at, val) => {
      // A bounded term reads this feature as its key (through the alias): decoding needs its last rows too.
      ringStore(K, id, b, at, val, `${at.ok} && tile == 0u && ${at.row} >= 0 && ${at.tpos} + ${a.state?.ring}u >= dims.t`);
      const el = which === 'psi' && q.transposed ? `(${at.x} % ${q.F}u) * ${a.C + 1}u + ${at.x} / ${q.F}u` : paddedElement(at.x, q.F, which === 'psi' ? psiRowStride(q) : q.F);
      b.line(`${array}[${el}] = ${val};`);
    },
  };
}

/**
 * φ_k or ψ_k of a vec4 term ([C][F/4] vec4, ψ's rows padded: psiStride): element x is row x / (F/4), features
 * 4·(x % (F/4)) … + 3, one invocation computing all four (their global loads, four neighbouring floats, held together
 * when prefetched) and storing one vec4, where the f32 form stored four floats at a stride of WG.
 */
function featureVecSlot(K: ChunkKernel, q: PrefixPlan, which: 'phi' | 'psi'): Slot {
  const F4 = q.F / 4;
  const id = which === 'phi' ? q.form.phi : q.form.psi;
  const array = K.arrays.prefix[q.k][which].name;
  const stride = which === 'phi' ? F4 : psiStride(q);
  const feature = (x: string, l: number) => `((${x} % ${F4}u) * 4u + ${l}u)`;
  const lanes = (at: Place): Place[] => [0, 1, 2, 3].map((l) => ({ ...at, idx: { ...at.idx, [q.feature!]: feature(at.x, l) } }));
  return {
    N: K.a.C * F4,
    place: (b, xc, { c0, n } = THIS_CHUNK) => {
      const x = b.let('x', xc);
      const row = b.let('row', `i32(${x} / ${F4}u)`);
      const ok = b.let('ok', `${row} < i32(${n})`);
      const tpos = b.let('tpos', `select(0u, u32(i32(${c0}) + ${row}), ${ok})`);
      return { x, ok, tpos, row, idx: { ...K.head, [q.feature!]: feature(x, 0) } };
    },
    lanes,
    value: valueOf(K, id),
    store: (b, at, val) => {
      // the node as a bounded term's key feature too (another term's ψ): decoding needs its last rows, lane by lane
      lanes(at).forEach((lp, l) => ringStore(K, id, b, lp, `${val}.${'xyzw'[l]}`, `${at.ok} && tile == 0u && ${at.tpos} + ${K.a.state?.ring}u >= dims.t`));
      b.line(`${array}[${paddedElement(at.x, F4, stride)}] = ${val};`);
    },
  };
}

/** log(decay) of each row of the chunk ([C][gateWidth]), summed up along the chunk afterwards. */
function gateSlot(K: ChunkKernel, q: PrefixPlan): Slot {
  const gw = q.gateWidth;
  const lg = K.arrays.prefix[q.k].lg!.name;
  const gate = valueOf(K, q.gateId!);
  return {
    N: K.a.C * gw,
    place: (b, xc, { c0, n } = THIS_CHUNK) => {
      const x = b.let('x', xc);
      const row = b.let('row', `${x} / ${gw}u`);
      const ok = b.let('ok', `${row} < ${n}`);
      const tpos = b.let('tpos', `select(0u, ${c0} + ${row}, ${ok})`);
      return { x, ok, tpos, row: `i32(${row})`, idx: { ...K.head, ...(q.gatePerFeature ? { [q.feature!]: `(${x} % ${gw}u)` } : {}) } };
    },
    value: (b, at, read) => `log(max(${gate(b, at, read)}, 1e-30))`,
    store: (b, at, val) => b.line(`${lg}[${at.x}] = ${val};`),
  };
}

/** A bounded term's query feature ([C][W]) or key feature ([CH][W], with the halo). */
function frontierSlot(K: ChunkKernel, f: StagedFeature): Slot {
  const { a } = K;
  const base = f.side === 'query' ? 0 : a.HALO;
  return {
    N: (f.side === 'query' ? a.C : a.CH) * f.W,
    place: (b, xc, { c0 } = THIS_CHUNK) => {
      const x = b.let('x', xc);
      const row = b.let('row', `i32(${x} / ${f.W}u) - ${base}`);
      const tposi = b.let('tposi', `i32(${c0}) + ${row}`);
      const ok = b.let('ok', `${tposi} >= 0 && u32(${tposi}) < dims.t`);
      const tpos = b.let('tpos', `select(0u, u32(${tposi}), ${ok})`);
      return { x, ok, tpos, row, idx: { ...K.head, ...b.split(f.axes, a.sizes, `(${x} % ${f.W}u)`, `fx${f.id}`) } };
    },
    value: valueOf(K, f.id),
    store: (b, at, val) => {
      if (f.side === 'key') ringStore(K, f.id, b, at, val, `${at.ok} && tile == 0u && ${at.tpos} + ${a.state?.ring}u >= dims.t`);
      b.line(`${K.arrays.staged.get(f.id)}[${paddedElement(at.x, f.W, f.stride)}] = ${val};`);
    },
  };
}

/** The values of the chunk and its halo, this tile's R columns ([CH][R]). */
function valueSlot(K: ChunkKernel): Slot {
  const { a } = K;
  return {
    N: a.CH * a.R,
    place: (b, xc, { c0 } = THIS_CHUNK) => {
      const x = b.let('x', xc);
      const col = b.let('col', `tile * ${a.R}u + ${x} % ${a.R}u`);
      const row = b.let('row', `i32(${x} / ${a.R}u) - ${a.HALO}`);
      const tposi = b.let('tposi', `i32(${c0}) + ${row}`);
      const ok = b.let('ok', `${tposi} >= 0 && u32(${tposi}) < dims.t && ${col} < ${a.NR}u`);
      const tpos = b.let('tpos', `select(0u, u32(${tposi}), ${ok})`);
      return { x, ok, tpos, row, idx: { ...K.head, ...b.split(a.L.rest, a.sizes, col, 'vc') } };
    },
    value: valueOf(K, a.valueId),
    store: (b, at, val) => {
      ringStore(K, a.valueId, b, at, val, `${at.ok} && ${at.tpos} + ${a.state?.ring}u >= dims.t`);
      b.line(`${K.arrays.vs.name}[${at.x}] = ${val};`);
    },
  };
}

/**
 * The values as vec4 (declarations.ts valuesVec4): element x is row x / (R/4), columns 4·(x % (R/4)) … + 3, one
 * invocation loading all four (held together when prefetched) and storing one vec4. Each lane guards its own column
 * (a last tile may reach past the value axis) and reads at a column clamped to it.
 */
function valueVecSlot(K: ChunkKernel): Slot {
  const { a } = K;
  const R4 = a.R / 4;
  const column = (x: string, l: number) => `(tile * ${a.R}u + (${x} % ${R4}u) * 4u + ${l}u)`;
  // The column's index over the value axes, inline (lanes are pure: no statements of their own), clamped to the axis.
  const split = (col: string) => {
    const idx: Record<string, string> = {};
    let stride = 1;
    for (let k = a.L.rest.length - 1; k >= 0; k--) {
      const axis = a.L.rest[k];
      idx[axis] = `((min(${col}, ${a.NR - 1}u) / ${stride}u) % ${a.sizes[axis]}u)`;
      stride *= a.sizes[axis];
    }
    return idx;
  };
  const lanes = (at: Place): Place[] => [0, 1, 2, 3].map((l) => ({ ...at, ok: `(${at.ok} && ${column(at.x, l)} < ${a.NR}u)`, idx: { ...K.head, ...split(column(at.x, l)) } }));
  return {
    N: a.CH * R4,
    place: (b, xc, { c0 } = THIS_CHUNK) => {
      const x = b.let('x', xc);
      const row = b.let('row', `i32(${x} / ${R4}u) - ${a.HALO}`);
      const tposi = b.let('tposi', `i32(${c0}) + ${row}`);
      const ok = b.let('ok', `${tposi} >= 0 && u32(${tposi}) < dims.t`);
      const tpos = b.let('tpos', `select(0u, u32(${tposi}), ${ok})`);
      return { x, ok, tpos, row, idx: { ...K.head, ...split(column(x, 0)) } };
    },
    lanes,
    value: valueOf(K, a.valueId),
    store: (b, at, val) => {
      lanes(at).forEach((lp, l) => ringStore(K, a.valueId, b, lp, `${val}.${'xyzw'[l]}`, `${lp.ok} && ${lp.tpos} + ${a.state?.ring}u >= dims.t`));
      b.line(`${K.arrays.vs.name}[${at.x}] = ${val};`);
    },
  };
}

/** Inclusive cumulative log-decay along the chunk, one invocation per gate column. */
export function emitDecayPrefix(K: ChunkKernel, body: Block): void {
  const gated = K.a.prefix.filter((q) => q.gateWidth);
  for (const q of gated) {
    const lg = K.arrays.prefix[q.k].lg!.name;
    const gw = q.gateWidth;
    body.strided('x', `${gw}u`, (b, x) => {
      const acc = b.var('acc', '0.0');
      b.for('r', '0u', (r) => `${r} < ${K.a.C}u`, (l, r) => {
        l.line(`${acc} = ${acc} + ${lg}[${r} * ${gw}u + ${x}];`);
        l.line(`${lg}[${r} * ${gw}u + ${x}] = ${acc};`);
      });
    });
  }
  if (gated.length) body.line('workgroupBarrier();');
}
