// Phase 1 of a chunk: stage its rows in workgroup memory — φ, ψ (and log-gates) of each prefix term, the bounded
// terms' query/key features and the values (with halo) — then the gates' cumulative sums.
//
// Each staged array is a list of slots, one element per invocation: position lets, the expression in a block of
// its own, a store. Up to MAX_UNROLL slots of an array are unrolled into straight-line code with clamped
// positions and `select` for the rows outside the sequence, and every slot of a batch computes before any
// stores: all their global loads are in flight together instead of one latency per loop trip.
import { Scope, Block } from '../wgsl-block.ts';
import { ExprGen, offset, type Index } from '../expr.ts';
import { ringIndex } from '../layout.ts';
import type { Id } from '../../../src/ir/types.ts';
import type { PrefixPlan, StagedFeature } from './analysis.ts';
import { stateRef, type ChunkKernel } from './declarations.ts';

/** At most this many slots of one array unrolled; more (or a heavy expression) stay in a loop. */
const MAX_UNROLL = 8;
/** An expression of more statements than this (a reduction per element) stages one slot per loop trip. */
const MAX_SLOT_EXPR_LINES = 5;
/** Slots per batch: each batch's loads are issued together, then stored (bounded register use). */
const BATCH = 16;

/** Where a slot's element sits: its index `x`, whether its row is in the sequence, its position, its axes. */
interface Place {
  readonly x: string;
  readonly ok: string;
  readonly tpos: string;
  readonly row?: string;
  readonly idx: Index;
}

/** One staged element kind; N elements per chunk. */
interface Slot {
  readonly N: number;
  /** Emits the lets that place element `xc` (a clamped flat index). */
  readonly place: (b: Block, xc: string) => Place;
  /** Emits the element's statements and returns the f32 expression to stage. */
  readonly value: (b: Block, at: Place) => string;
  readonly store: (b: Block, at: Place, val: string) => void;
}

export function emitStage(K: ChunkKernel, body: Block): void {
  const { WG } = K.a;
  const unrolled: { slot: Slot; xc: string; guard: string | null }[] = [];
  const looped: { slot: Slot; perTrip: number }[] = [];
  for (const slot of slots(K)) {
    const U = Math.ceil(slot.N / WG);
    const heavy = expressionLines(slot) > MAX_SLOT_EXPR_LINES;
    if (U > MAX_UNROLL || heavy) {
      // Heavy expressions and long arrays stay in a loop of a few slots per trip: straight-line code grows with
      // them, and so does the shader compiler's time.
      looped.push({ slot, perTrip: heavy ? 1 : MAX_UNROLL });
      continue;
    }
    for (let u = 0; u < U; u++) {
      const full = (u + 1) * WG <= slot.N;
      const xs = `(lid + ${u * WG}u)`;
      unrolled.push({ slot, xc: full ? xs : `min(${xs}, ${slot.N - 1}u)`, guard: full ? null : `${xs} < ${slot.N}u` });
    }
  }
  for (let s0 = 0; s0 < unrolled.length; s0 += BATCH) {
    body.block('', (b) => {
      const stores = unrolled.slice(s0, s0 + BATCH).map((u) => ({ store: computeSlot(b, u.slot, u.xc), guard: u.guard }));
      for (const { store, guard } of stores) {
        if (guard) b.block(`if (${guard})`, store);
        else store(b);
      }
    });
  }
  for (const { slot, perTrip } of looped) {
    const N = slot.N;
    const step = perTrip * WG;
    body.for('xb', 'lid', (xb) => `${xb} < ${N}u`, (b, xb) => {
      const stores = [...Array(perTrip).keys()].map((u) => {
        const xs = `(${xb} + ${u * WG}u)`;
        return { store: computeSlot(b, slot, step <= N && N % step === 0 ? xs : `min(${xs}, ${N - 1}u)`), guard: `${xs} < ${N}u` };
      });
      for (const { store, guard } of stores) b.block(`if (${guard})`, store);
    }, { step: (xb) => `${xb} += ${step}u` });
  }
}

/** Emits a slot's computation at `xc` into b; returns the emitter of its store (which reads the names declared here). */
function computeSlot(b: Block, slot: Slot, xc: string): (store: Block) => void {
  const at = slot.place(b, xc);
  const val = b.var('val', '0.0');
  // The expression in its own block: its helpers' names stay inside, only val leaves it.
  b.block('', (e) => e.line(`${val} = select(0.0, ${slot.value(e, at)}, ${at.ok});`));
  return (s) => slot.store(s, at, val);
}

/** Statements the slot's expression takes (generated into a scratch block that is thrown away). */
function expressionLines(slot: Slot): number {
  const scratch = Block.top(new Scope(null));
  slot.value(scratch, slot.place(Block.top(new Scope(null)), 'lid'));
  return scratch.lineCount();
}

/** The staged arrays in order: each prefix term's φ, ψ and gate, the query then key features, the values. */
function slots(K: ChunkKernel): Slot[] {
  const { a } = K;
  return [
    ...a.prefix.flatMap((q) => [featureSlot(K, q, 'phi'), featureSlot(K, q, 'psi'), ...(q.gateWidth ? [gateSlot(K, q)] : [])]),
    ...a.staged.filter((f) => !f.alias).map((f) => frontierSlot(K, f)),
    valueSlot(K),
  ];
}

/** The element's value, computed by a generator of its own at position `tpos`. */
const valueOf = (K: ChunkKernel, id: Id) => (b: Block, at: Place) => new ExprGen(K.a.p, K.a.sizes, K.io.read, { i: at.tpos, j: at.tpos }).value(b, id, at.idx, at.tpos);

/** A store into the decoding state's ring of node `id` (state export: decoding needs the last RING rows). */
function ringStore(K: ChunkKernel, id: Id, b: Block, at: Place, val: string, cond: string): void {
  const st = K.a.state;
  const r = st?.rings.find((x) => x.id === id);
  if (!st || !r) return;
  const ring = stateRef(K, `state:ring${id}`);
  b.block(`if (${cond})`, (s) => s.line(`${ring}[${ringIndex(r, st.ring, `${at.tpos} % ${st.ring}u`, offset(K.a.p.nodes[id].type.axes, K.a.sizes, at.idx))}] = ${val};`));
}

/** φ_k or ψ_k ([C + halo][F]); ψ of a prefix term no bounded term reads is stored transposed. */
function featureSlot(K: ChunkKernel, q: PrefixPlan, which: 'phi' | 'psi'): Slot {
  const { a } = K;
  const id = which === 'phi' ? q.form.phi : q.form.psi;
  const halo = which === 'phi' ? 0 : q.psiHalo;
  const array = K.arrays.prefix[q.k][which].name;
  return {
    N: (a.C + halo) * q.F,
    place: (b, xc) => {
      const x = b.let('x', xc);
      const row = b.let('row', `i32(${x} / ${q.F}u) - ${halo}`);
      const ok = b.let('ok', `${row} < i32(n) && i32(c0) + ${row} >= 0`);
      const tpos = b.let('tpos', `select(0u, u32(i32(c0) + ${row}), ${ok})`);
      return { x, ok, tpos, row, idx: { ...K.head, ...(q.feature ? { [q.feature]: `(${x} % ${q.F}u)` } : {}) } };
    },
    value: valueOf(K, id),
    store: (b, at, val) => {
      // A bounded term reads this feature as its key (through the alias): decoding needs its last rows too.
      ringStore(K, id, b, at, val, `${at.ok} && tile == 0u && ${at.row} >= 0 && ${at.tpos} + ${a.state?.ring}u >= dims.t`);
      b.line(which === 'psi' && q.transposed ? `${array}[(${at.x} % ${q.F}u) * ${a.C + 1}u + ${at.x} / ${q.F}u] = ${val};` : `${array}[${at.x}] = ${val};`);
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
    place: (b, xc) => {
      const x = b.let('x', xc);
      const row = b.let('row', `${x} / ${gw}u`);
      const ok = b.let('ok', `${row} < n`);
      const tpos = b.let('tpos', `select(0u, c0 + ${row}, ${ok})`);
      return { x, ok, tpos, idx: { ...K.head, ...(q.gatePerFeature ? { [q.feature!]: `(${x} % ${gw}u)` } : {}) } };
    },
    value: (b, at) => `log(max(${gate(b, at)}, 1e-30))`,
    store: (b, at, val) => b.line(`${lg}[${at.x}] = ${val};`),
  };
}

/** A bounded term's query feature ([C][W]) or key feature ([CH][W], with the halo). */
function frontierSlot(K: ChunkKernel, f: StagedFeature): Slot {
  const { a } = K;
  const base = f.side === 'query' ? 0 : a.HALO;
  return {
    N: (f.side === 'query' ? a.C : a.CH) * f.W,
    place: (b, xc) => {
      const x = b.let('x', xc);
      const tposi = b.let('tposi', `i32(c0) + i32(${x} / ${f.W}u) - ${base}`);
      const ok = b.let('ok', `${tposi} >= 0 && u32(${tposi}) < dims.t`);
      const tpos = b.let('tpos', `select(0u, u32(${tposi}), ${ok})`);
      return { x, ok, tpos, idx: { ...K.head, ...b.split(f.axes, a.sizes, `(${x} % ${f.W}u)`, `fx${f.id}`) } };
    },
    value: valueOf(K, f.id),
    store: (b, at, val) => {
      if (f.side === 'key') ringStore(K, f.id, b, at, val, `${at.ok} && tile == 0u && ${at.tpos} + ${a.state?.ring}u >= dims.t`);
      b.line(`${K.arrays.staged.get(f.id)}[${at.x}] = ${val};`);
    },
  };
}

/** The values of the chunk and its halo, this tile's R columns ([CH][R]). */
function valueSlot(K: ChunkKernel): Slot {
  const { a } = K;
  return {
    N: a.CH * a.R,
    place: (b, xc) => {
      const x = b.let('x', xc);
      const col = b.let('col', `tile * ${a.R}u + ${x} % ${a.R}u`);
      const tposi = b.let('tposi', `i32(c0) + i32(${x} / ${a.R}u) - ${a.HALO}`);
      const ok = b.let('ok', `${tposi} >= 0 && u32(${tposi}) < dims.t && ${col} < ${a.NR}u`);
      const tpos = b.let('tpos', `select(0u, u32(${tposi}), ${ok})`);
      return { x, ok, tpos, idx: { ...K.head, ...b.split(a.L.rest, a.sizes, col, 'vc') } };
    },
    value: valueOf(K, a.valueId),
    store: (b, at, val) => {
      ringStore(K, a.valueId, b, at, val, `${at.ok} && ${at.tpos} + ${a.state?.ring}u >= dims.t`);
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
