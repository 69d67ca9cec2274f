// Loads first in the tree kernels (TreeOptions.loadsFirst, the default; the pattern of recurrent.ts's): the rows of
// the committed state S (and z) a thread walks in a prefix term's state phase (tree-prefix.ts) depend on nothing
// the kernel computes — not on n's path, not on any store (the state is read only in a tree launch; the fold's
// commit writes the other buffer of its ping-pong pair) — only on b, the head slice and the thread's column and
// slice of rows. So they are issued before the kernel's first barrier, into registers, and the state phase reads
// the registers: the loads' round trip overlaps the path walk, the staging and the path tiles instead of
// following them. Capped at MAX_EARLY_LOADS held loads a thread over all prefix terms (a term that would pass it,
// or whose columns a thread walks more than one of, keeps its loads where they are used). past_groups terms' So
// and zo stay where they are: So is loaded only once n has left the open group, which needs n's depth.
// treeKernel (tree-analysis.ts) also stages, before the path, the query-side values at n that read no position
// (elu_dwconv's φ_n; not llama_linearized's, whose rope reads a_n) and the folded kernel's copy of n's inputs
// (tree-fold.ts: into registers with these loads, stored after that staging).
import type { OutputItem } from '../../src/ir/types.ts';
import type { Block } from './wgsl-block.ts';

/**
 * What the early loads read of the tree's analysis: tree-analysis.ts's TreeAnalysis and TreePrefix satisfy these
 * structurally (tree-analysis.ts calls emitEarlyState, so this file does not import it back).
 */
export interface EarlyTerm {
  readonly k: number;
  readonly name: string;
  readonly F: number;
}
export interface EarlyAnalysis {
  readonly p: { readonly output: readonly OutputItem[] };
  readonly prefix: readonly EarlyTerm[];
  readonly split: { readonly slices: number; readonly threads: number };
  readonly NR: number;
  readonly NS: number;
}

/** The comment emitted before the early loads (a test finds it before the first workgroupBarrier). */
export const EARLY_STATE_MARKER = "loads first: the committed state's rows this thread walks";
/** Held loads a thread may carry from the prologue to the state phases (registers), over all prefix terms. */
export const MAX_EARLY_LOADS = 32;

/** Slices of a term of F features: the largest power of two up to the split's that divides F. */
export function slicesOf(F: number, slices: number): number {
  let n = 1;
  while (n * 2 <= slices && F % (n * 2) === 0) n *= 2;
  return n;
}

/** Rows of S a thread reads before using any (as the recurrent step does); a divisor of F. */
export function unrollOf(F: number): number {
  let u = Math.min(16, F);
  while (F % u !== 0) u--;
  return u;
}

/** How a term's state phase spreads its rows: SL slices of `rows` rows, columns `columnThreads` at a time. */
export function stateWalk(a: EarlyAnalysis, q: EarlyTerm): { readonly SL: number; readonly rows: number; readonly columnThreads: number } {
  const SL = a.prefix.length > 0 && a.split.slices > 1 ? slicesOf(q.F, a.split.slices) : 1;
  return SL > 1 ? { SL, rows: q.F / SL, columnThreads: a.split.threads / a.split.slices } : { SL: 1, rows: q.F, columnThreads: a.split.threads };
}

/** A term's registers: row r of the thread's walk (r < rows) of S, and of z where the term normalises. */
export interface EarlyRows {
  readonly S: readonly string[];
  readonly z: readonly string[] | null;
}

/** Whether term q's sums have a denominator (its output item normalises): then its phase reads z too. */
function normalised(a: EarlyAnalysis, q: EarlyTerm): boolean {
  return a.p.output.some((it) => it.kind === 'norm' && it.terms.includes(q.name));
}

/**
 * The early loads, into `main` before its first barrier: for each prefix term within the cap, its registers
 * (keyed by term k). `load(name, index)` reads state buffer `name`.
 */
export function emitEarlyState(a: EarlyAnalysis, main: Block, load: (name: string, index: string) => string): Map<number, EarlyRows> {
  const regs = new Map<number, EarlyRows>();
  let held = 0;
  const chosen = a.prefix.flatMap((q) => {
    const w = stateWalk(a, q);
    const den = normalised(a, q);
    const n = w.rows * (den ? 2 : 1);
    if (a.NR > w.columnThreads || held + n > MAX_EARLY_LOADS) return [];
    held += n;
    return [{ q, w, den }];
  });
  if (!chosen.length) return regs;
  main.comment(`${EARLY_STATE_MARKER} (S, z), into registers before any barrier: ${held} load${held === 1 ? '' : 's'} a thread (at most ${MAX_EARLY_LOADS}; past it, loaded where used)`);
  for (const { q, w, den } of chosen) {
    // A thread past the last slice or column loads a valid row it never uses (clamped where there are such threads).
    const c = w.SL > 1 ? `lid % ${w.columnThreads}u` : 'lid';
    const col = a.NR === w.columnThreads ? c : `min(${c}, ${a.NR - 1}u)`;
    const first = `(lid / ${w.columnThreads}u) * ${w.rows}u`;
    const row = (u: number) => (w.SL === 1 ? `${u}u` : w.SL === a.split.slices ? `${first} + ${u}u` : `min(${first} + ${u}u, ${q.F - 1}u)`);
    const idx = (u: number) => `((b * ${a.NS}u + s) * ${q.F}u + ${row(u)}) * ${a.NR}u + ${col}`;
    const rows = [...Array(w.rows).keys()];
    regs.set(q.k, {
      S: rows.map((u) => main.var(`es${q.k}r${u}`, load(`state:S${q.k}`, idx(u)))),
      z: den ? rows.map((u) => main.var(`ez${q.k}r${u}`, load(`state:z${q.k}`, idx(u)))) : null,
    });
  }
  return regs;
}
