// Staging rows of a chunk into workgroup memory, as data: each staged array is a Slot (where element x sits, how
// its value is computed, where it is stored), one element per invocation. Up to MAX_UNROLL slots of an array
// are unrolled into straight-line code with clamped positions and `select` for the rows outside the sequence,
// and every slot of a batch computes before any stores: all their global loads are in flight together instead
// of one latency per loop trip. A slot past the array's end computes nothing (each element once per chunk). Longer arrays, and expressions too heavy to unroll, stay in a loop.
// Where every slot is unrolled and few, prefetchSlots goes further: the loads of chunk c + 1 are issued while
// chunk c computes, held in registers, and only the feature maps and stores run at the top of chunk c + 1.
import type { Index, Resolver } from '../expr.ts';
import { Block, Scope } from '../wgsl-block.ts';

/** At most this many slots of one array unrolled; more (or a heavy expression) stay in a loop. */
const MAX_UNROLL = 8;
/** An expression of more statements than this (a reduction per element) stages one slot per loop trip. */
const MAX_SLOT_EXPR_LINES = 5;
/** Slots per batch: each batch's loads are issued together, then stored (bounded register use). */
const BATCH = 16;

/** Where a slot's element sits: its index `x`, whether its row is in the sequence, its position, its axes. */
export interface Place {
  readonly x: string;
  readonly ok: string;
  readonly tpos: string;
  /** The row from the chunk start (i32; negative in the halo). */
  readonly row: string;
  readonly idx: Index;
}

/** The chunk a slot is placed in: u32 names of its first position and its row count (< C only for the last). */
export interface ChunkAt {
  readonly c0: string;
  readonly n: string;
}

/** The chunk the loop is on (the kernel's `c0` and `n`). */
export const THIS_CHUNK: ChunkAt = { c0: 'c0', n: 'n' };

/** One staged array: N elements per chunk. */
export interface Slot {
  readonly N: number;
  /** Emits the lets that place element `xc` (a clamped flat index) in chunk `chunk` (default THIS_CHUNK). */
  readonly place: (b: Block, xc: string, chunk?: ChunkAt) => Place;
  /**
   * Emits the element's statements and returns the f32 expression to stage. `read` replaces the kernel's reader
   * of inputs, parameters and materialised features (the global loads): prefetching records and replays them.
   */
  readonly value: (b: Block, at: Place, read?: Resolver) => string;
  readonly store: (b: Block, at: Place, val: string) => void;
  /**
   * A vec4 slot: each element is 4 values (consecutive features of one row), and this gives their places, which
   * share the element's `ok`, `tpos` and `row`. Each value is computed (its loads held, when prefetched) as a
   * scalar slot's is, into one vec4<f32> that `store` receives. Absent: one f32 per element.
   */
  readonly lanes?: (at: Place) => readonly Place[];
}

/** The places of a slot's element: its 4 lanes for a vec4 slot, else itself. */
const lanesOf = (slot: Slot, at: Place): readonly Place[] => slot.lanes?.(at) ?? [at];

interface Unrolled {
  readonly slot: Slot;
  readonly xc: string;
  readonly guard: string | null;
}

/** The slots unrolled into straight-line code and those left in a loop. */
function layOut(WG: number, slots: readonly Slot[]): { unrolled: Unrolled[]; looped: { slot: Slot; perTrip: number }[] } {
  const unrolled: Unrolled[] = [];
  const looped: { slot: Slot; perTrip: number }[] = [];
  for (const slot of slots) {
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
  return { unrolled, looped };
}

/** Stages `slots`, in order, with WG invocations: the unrolled ones in batches, then the looped ones. */
export function emitSlots(body: Block, WG: number, slots: readonly Slot[]): void {
  const { unrolled, looped } = layOut(WG, slots);
  for (let s0 = 0; s0 < unrolled.length; s0 += BATCH) {
    body.block('', (b) => {
      const stores = unrolled.slice(s0, s0 + BATCH).map((u) => ({ store: computeSlot(b, u.slot, u.xc, u.guard), guard: u.guard }));
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
        const guard = `${xs} < ${N}u`;
        const exact = step <= N && N % step === 0; // every trip's slots in range: nothing to skip
        return { store: computeSlot(b, slot, exact ? xs : `min(${xs}, ${N - 1}u)`, exact ? null : guard), guard };
      });
      for (const { store, guard } of stores) b.block(`if (${guard})`, store);
    }, { step: (xb) => `${xb} += ${step}u` });
  }
}

/**
 * Emits a slot's computation at `xc` into b; returns the emitter of its store (which reads the names declared here).
 * Past the array's end (`guard` false) the clamped index repeats the last element: the expression is skipped there,
 * so each element's value — a feature map's transcendentals included — is computed once per chunk.
 */
function computeSlot(b: Block, slot: Slot, xc: string, guard: string | null, read?: (at: Place) => Resolver): (store: Block) => void {
  const at = slot.place(b, xc);
  const lanes = lanesOf(slot, at);
  if (!slot.lanes) {
    const val = b.var('val', '0.0');
    // The expression in its own block: its helpers' names stay inside, only val leaves it.
    b.block(guard ? `if (${guard})` : '', (e) => e.line(`${val} = select(0.0, ${slot.value(e, at, read?.(at))}, ${at.ok});`));
    return (s) => slot.store(s, at, val);
  }
  const val = b.var('val', 'vec4<f32>(0.0)', 'vec4<f32>');
  // Each lane's expression in a block of its own (their helpers' names would clash), a constant component each.
  b.block(guard ? `if (${guard})` : '', (e) =>
    lanes.forEach((lp, l) => e.block('', (el) => el.line(`${val}.${'xyzw'[l]} = select(0.0, ${slot.value(el, lp, read?.(lp))}, ${lp.ok});`))),
  );
  return (s) => slot.store(s, at, val);
}

/** Statements the slot's expression takes (generated into a scratch block that is thrown away). */
function expressionLines(slot: Slot): number {
  const scratch = Block.top(new Scope(null));
  slot.value(scratch, slot.place(Block.top(new Scope(null)), 'lid'));
  return scratch.lineCount();
}

/**
 * At most this many unrolled slots, and as many held loads, per invocation for prefetching: every held load is a
 * register live across the whole chunk (scores, outputs, the fold), on top of what those phases keep. Past it
 * the kernel stages as before (one batch of BATCH slots is what today's code keeps in flight anyway).
 */
export const MAX_PREFETCH = BATCH;

/**
 * Staging with the global loads software-pipelined: `load` issues the loads of the chunk at `chunk` (the next
 * one, placed with its own start and row count) into registers held across the chunk loop, and `stage` — at the
 * top of that chunk — computes each element from the held loads (the feature map, `select` outside the
 * sequence) and stores it. The loads are in flight while the current chunk's scores, outputs and fold run,
 * instead of the whole workgroup waiting one DRAM latency at the staging barrier.
 */
export interface PrefetchedSlots {
  /** Global loads held per invocation. */
  readonly held: number;
  /** Declares the held loads (before the chunk loop, where both `load` and `stage` see them). */
  declare(b: Block): void;
  /** Issues the loads of chunk `chunk` into the held registers. */
  load(b: Block, chunk: ChunkAt): void;
  /** Stages this chunk (THIS_CHUNK) from the held loads. */
  stage(b: Block): void;
}

/**
 * The prefetching form of emitSlots, or null where it does not apply and emitSlots stages as before: a slot left
 * in a loop (long arrays, heavy expressions), more than MAX_PREFETCH unrolled slots or held loads per invocation,
 * or a load that `read` does not return as an expression of the element's place alone (one read inside a loop of
 * the expression, or whose index uses the expression's own statements). `read` is the reader the slots' values
 * use by default; each leaf it answers (not null) is one held load.
 */
export function prefetchSlots(WG: number, slots: readonly Slot[], read: Resolver): PrefetchedSlots | null {
  const { unrolled, looped } = layOut(WG, slots);
  if (looped.length || !unrolled.length || unrolled.length > MAX_PREFETCH) return null;
  /** The loads of each unrolled slot (expressions), placed at `chunk` in b; null when one cannot be held. */
  const capture = (b: Block, chunk: ChunkAt, skip?: readonly boolean[]): string[][] | null => {
    const loads: string[][] = [];
    for (const [i, u] of unrolled.entries()) {
      // A slot without loads (a position, say) is computed where it is staged: nothing to place here.
      const at = u.slot.place(skip?.[i] ? Block.top(new Scope(b.scope)) : b, u.xc, chunk);
      // The value is generated into a block thrown away: only its loads are kept.
      const scratch = Block.top(new Scope(b.scope));
      const mine: string[] = [];
      let held = true;
      // a vec4 slot's lanes in order, as computeSlot replays them
      for (const lp of lanesOf(u.slot, at)) {
        u.slot.value(scratch, lp, (n, idx, where, blk) => {
          const r = read(n, idx, where, blk);
          if (r === null) return null;
          const own = (r.match(/[A-Za-z_][A-Za-z0-9_]*/g) ?? []).some((id) => scratch.scope.declares(id));
          if (blk !== scratch || own) held = false;
          mine.push(r);
          return r;
        });
      }
      if (!held) return null;
      loads.push(mine);
    }
    return loads;
  };
  const dry = capture(Block.top(new Scope(null)), THIS_CHUNK);
  if (!dry) return null;
  const held = dry.reduce((m, l) => m + l.length, 0);
  if (held > MAX_PREFETCH) return null;
  let names: string[][] = [];
  return {
    held,
    declare: (b) => {
      names = dry.map((l) => l.map(() => b.var('pf', '0.0')));
    },
    load: (b, chunk) => {
      const loads = capture(b, chunk, dry.map((l) => !l.length));
      if (!loads || loads.some((l, i) => l.length !== names[i].length)) throw new Error('internal: prefetched loads differ from the dry run');
      unrolled.forEach((u, i) => {
        if (!loads[i].length) return;
        const emit = (s: Block) => loads[i].forEach((r, j) => s.line(`${names[i][j]} = ${r};`));
        if (u.guard) b.block(`if (${u.guard})`, emit);
        else emit(b);
      });
    },
    stage: (body) =>
      body.block('', (b) => {
        const stores = unrolled.map((u, i) => {
          let j = 0;
          // The same leaves in the same order as `load` saw them: each is its held load.
          const replay = (): Resolver => (n, idx, where, blk) => (read(n, idx, where, blk) === null ? null : names[i][j++]);
          const store = computeSlot(b, u.slot, u.xc, u.guard, replay);
          if (j !== names[i].length) throw new Error('internal: prefetched loads replayed out of step');
          return { store, guard: u.guard };
        });
        for (const { store, guard } of stores) {
          if (guard) b.block(`if (${guard})`, store);
          else store(b);
        }
      }),
  };
}
