// How a program's terms map onto kernels, shared by every generator that walks the terms (chunked, recurrent,
// tree): which output axes index workgroups (head) and which index value columns (rest), what a bounded term
// stages per row (its query/key frontier), a prefix term's gate, and the decoding state's layout in global
// memory (S, z, open groups, rings), which the chunked kernel exports, the recurrent step updates and the tree
// reads.
import { lagRange } from '../../src/ir/masks.ts';
import { decayNode, type PrefixForm } from '../../src/ir/terms.ts';
import { operands, type Id, type Program, type Term } from '../../src/ir/types.ts';
import { count, type Sizes } from './common.ts';
import type { PlanBuffer } from './plan.ts';

/** How a kernel splits the output axes: `head` indexes workgroups, `rest` the value columns. */
export interface Layout {
  readonly head: readonly string[];
  readonly rest: readonly string[];
  readonly aTerms: readonly Term[]; // go through the chunk kernel's score matrix A
  readonly directTerms: readonly Term[]; // evaluated per (i, j, column)
  readonly halo: number;
}

export function scoreAxes(p: Program, t: Term): readonly string[] {
  return p.nodes[t.score].type.axes;
}

/**
 * `head`: the head axes to use when no prefix or quadratic term chooses them (a convolution only), so that its
 * kernel can share another's grid; with such terms it must be what they choose.
 */
export function layoutOf(p: Program, terms: readonly Term[], chunk?: number, want?: readonly string[]): Layout {
  const prefix = terms.filter((t) => t.form.kind === 'prefix');
  const headOf = (t: Term) => scoreAxes(p, t);
  const quadratic = terms.find((t) => t.form.kind === 'quadratic');
  const chosen = prefix.length ? headOf(prefix[0]) : quadratic ? headOf(quadratic) : null;
  const head = chosen ?? want ?? [];
  if (want && chosen && p.outAxes.filter((a) => chosen.includes(a)).join() !== p.outAxes.filter((a) => want.includes(a)).join()) {
    throw new Error(`${p.name}: its terms put head axes [${chosen}] on workgroups, not [${want}]`);
  }
  if (want && !want.every((a) => p.outAxes.includes(a))) throw new Error(`${p.name}: head axes [${want}] are not all output axes [${p.outAxes}]`);
  for (const t of prefix) {
    if (headOf(t).join() !== head.join()) throw new Error(`prefix terms with different score axes ([${headOf(t)}] vs [${head}]) cannot share a chunk kernel`);
  }
  const inHead = new Set(head);
  const same = (t: Term) => headOf(t).length === head.length && headOf(t).every((a) => inHead.has(a));
  const aTerms = terms.filter((t) => t.form.kind === 'prefix' || (t.form.kind === 'quadratic' && same(t)));
  const directTerms = terms.filter((t) => !aTerms.includes(t));
  let halo = 0;
  for (const t of terms) {
    if (t.form.kind === 'prefix') continue;
    const r = lagRange(t.mask);
    if (!r) throw new Error(`term ${t.name} has an unbounded mask`);
    halo = Math.max(halo, groupReach(t, chunk) ?? r[1]);
  }
  return { head: p.outAxes.filter((a) => inHead.has(a)), rest: p.outAxes.filter((a) => !inHead.has(a)), aTerms, directTerms, halo };
}

/**
 * How far before a chunk's first row a group term's keys can lie, where its groups and the chunks line up (chunk
 * kernels start at position 0): none where a chunk holds whole groups; where chunks divide a group, back to the
 * group's start, at most G − C rows (llama_linearized's and flash's local terms, G 64, at chunk 16: 48 rows, not the
 * mask's 63; their score tiles were 16 × 79 wide, 15 of the columns never in any of the chunk's groups). Undefined
 * for a term without a group, or one whose groups and chunks do not divide each other.
 */
export function groupReach(t: Term, chunk: number | undefined): number | undefined {
  const group = t.mask.find((m) => m.kind === 'group');
  if (!group || chunk === undefined) return undefined;
  if (chunk % group.size === 0) return 0;
  if (group.size % chunk === 0) return Math.min(lagRange(t.mask)![1], group.size - chunk);
  return undefined;
}

/** The axes of node `id` a kernel indexes per staged row: all but the head axes (fixed per workgroup). */
export function rowAxes(p: Program, L: Layout, id: Id): string[] {
  return p.nodes[id].type.axes.filter((a) => !L.head.includes(a));
}

/** Query- and key-side subexpressions of a bounded term's score that are staged per row. */
export function frontier(p: Program, root: Id): { query: Id[]; key: Id[] } {
  const query = new Set<Id>();
  const key = new Set<Id>();
  const visit = (id: Id) => {
    const n = p.nodes[id];
    if (n.type.side === 'query') return void query.add(id);
    if (n.type.side === 'key') return void key.add(id);
    if (n.type.side !== 'pair') return;
    if (n.op === 'decay' && p.nodes[n.x].type.side === 'token') throw new Error(`decay by a per-token gate inside a bounded term is not supported by the chunked kernel`);
    for (const o of operands(n)) visit(o);
  };
  visit(root);
  return { query: [...query], key: [...key] };
}

/** The query (or key) frontier nodes of every bounded term, each once, in term order. */
export function boundedFrontier(p: Program, terms: readonly Term[], side: 'query' | 'key'): Id[] {
  const ids = new Set<Id>();
  for (const t of terms) if (t.form.kind !== 'prefix') for (const id of frontier(p, t.score)[side]) ids.add(id);
  return [...ids];
}

/** A prefix term's feature count F (1 without a feature axis). */
export const featureCount = (f: PrefixForm, sizes: Sizes) => (f.feature ? sizes[f.feature] : 1);

/** A prefix term's decay gate: its node, and whether it holds one value per feature (else one per head). */
export function prefixGate(p: Program, f: PrefixForm): { id: Id; perFeature: boolean } | null {
  if (!f.decay) return null;
  const id = decayNode(f.decay);
  return { id, perFeature: !!f.feature && p.nodes[id].type.axes.includes(f.feature) };
}

/** The decoding state of a program in global memory, per batch row. */
export interface StateLayout {
  readonly prefix: readonly { term: Term; k: number; F: number; open: boolean }[];
  /**
   * Nodes kept in rings (bounded terms' values and key features), with their width per ring slot. A node
   * without the head axes (a position, say) keeps one copy per head slice (`sliced`: the node's own width),
   * so that workgroups of different heads, which run through a call's tokens at their own pace, never write
   * a slot another is about to read.
   */
  readonly rings: readonly { id: Id; per: number; sliced: number }[];
  readonly ring: number; // RING: positions kept
  readonly buffers: readonly PlanBuffer[];
}

/**
 * WGSL index into ring `r` at slot `slot` (a u32 expression < RING), `off` within the node's axes. Reads the
 * kernel's `b` (batch) and `s` (head slice) variables.
 */
export function ringIndex(r: StateLayout['rings'][number], RING: number, slot: string, off: string): string {
  return `(b * ${RING}u + ${slot}) * ${r.per}u + ${r.sliced ? `s * ${r.sliced}u + ` : ''}${off}`;
}

/**
 * State per prefix term: S [b, NS, F, NR] and z [b, NS, F, NR] (past_groups terms keep the open group in So
 * [b, NS, F, NR] and zo [b, NS, F]). z does not depend on the value column, yet it keeps a copy per column, laid out
 * as S is: whatever owns a column of S (a decode step's column block, a tree commit's thread, a chunk kernel's
 * column tile) reads and writes that column's z too, so a kernel split over columns advances z without any other
 * workgroup reading what it writes — the decode step needs no second launch for it (recurrent.ts). Every copy
 * holds the same value; a reader not split over columns reads any (tree-prefix.ts reads its column's).
 */
export function stateLayout(p: Program, sizes: Sizes): StateLayout {
  const L = layoutOf(p, p.terms);
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  const prefix: StateLayout['prefix'][number][] = [];
  const ringIds = new Set<Id>();
  for (const t of p.terms) {
    if (t.noncausal) throw new Error(`term ${t.name} is noncausal (it reads future positions): ${p.name} cannot be decoded; it runs in the parallel form only`);
    if (t.form.kind === 'prefix') {
      prefix.push({ term: t, k: prefix.length, F: featureCount(t.form, sizes), open: t.mask[0].kind === 'past_groups' });
    } else {
      ringIds.add(t.value);
      for (const id of frontier(p, t.score).key) ringIds.add(id);
    }
  }
  const ring = L.halo + 1;
  const rings = [...ringIds].sort((a, b) => a - b).map((id) => {
    const axes = p.nodes[id].type.axes;
    const w = count(axes, sizes);
    const sliced = NS > 1 && !L.head.every((a) => axes.includes(a)) ? w : 0;
    return { id, per: sliced ? NS * w : w, sliced };
  });
  const buffers: PlanBuffer[] = [];
  const add = (name: string, per: number) => buffers.push({ name, role: 'state', floats: (b) => b * per, shape: (b) => [b, per] });
  for (const q of prefix) {
    add(`state:S${q.k}`, NS * q.F * NR);
    add(`state:z${q.k}`, NS * q.F * NR);
    if (q.open) {
      add(`state:So${q.k}`, NS * q.F * NR);
      add(`state:zo${q.k}`, NS * q.F);
    }
  }
  for (const r of rings) add(`state:ring${r.id}`, ring * r.per);
  return { prefix, rings, ring, buffers };
}
