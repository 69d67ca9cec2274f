// Staging rows of a chunk into workgroup memory, as data: each staged array is a Slot (where element x sits, how
// its value is computed, where it is stored), one element per invocation. Up to MAX_UNROLL slots of an array
// are unrolled into straight-line code with clamped positions and `select` for the rows outside the sequence,
// and every slot of a batch computes before any stores: all their global loads are in flight together instead
// of one latency per loop trip. A slot past the array's end computes nothing (each element once per chunk). Longer arrays, and expressions too heavy to unroll, stay in a loop.
import type { Index } from '../expr.ts';
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

/** One staged array: N elements per chunk. */
export interface Slot {
  readonly N: number;
  /** Emits the lets that place element `xc` (a clamped flat index). */
  readonly place: (b: Block, xc: string) => Place;
  /** Emits the element's statements and returns the f32 expression to stage. */
  readonly value: (b: Block, at: Place) => string;
  readonly store: (b: Block, at: Place, val: string) => void;
}

/** Stages `slots`, in order, with WG invocations: the unrolled ones in batches, then the looped ones. */
export function emitSlots(body: Block, WG: number, slots: readonly Slot[]): void {
  const unrolled: { slot: Slot; xc: string; guard: string | null }[] = [];
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
function computeSlot(b: Block, slot: Slot, xc: string, guard: string | null): (store: Block) => void {
  const at = slot.place(b, xc);
  const val = b.var('val', '0.0');
  // The expression in its own block: its helpers' names stay inside, only val leaves it.
  b.block(guard ? `if (${guard})` : '', (e) => e.line(`${val} = select(0.0, ${slot.value(e, at)}, ${at.ok});`));
  return (s) => slot.store(s, at, val);
}

/** Statements the slot's expression takes (generated into a scratch block that is thrown away). */
function expressionLines(slot: Slot): number {
  const scratch = Block.top(new Scope(null));
  slot.value(scratch, slot.place(Block.top(new Scope(null)), 'lid'));
  return scratch.lineCount();
}
