// The tree kernel's analysis (tree.ts) and the prologue every workgroup runs. One workgroup verifies one node n
// of one (batch b, head slice s): its bindings, the parents in workgroup memory, n's root path as a list
// path[k] = the ancestor k steps above n (path[0] = n), its depth and position a_n, and the query-side values
// at n the term phases read (each prefix term's φ_n, the bounded terms' query features), staged once.
//
// The folded kernel (tree-fold.ts) emits the same body into its own builder (a TreeSite): there the path goes on
// above the root through the pending path, the previous step's accepted nodes (entries ≥ maxNodes in path[]:
// pending node path[k] − maxNodes), so depth counts them and a_n = pos0 + depth − 1 with pos0 the position before
// them; their inputs come from the nodes the previous step kept.
import type { PrefixForm } from '../../src/ir/terms.ts';
import { operands, type Id, type Program } from '../../src/ir/types.ts';
import { count, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Positions, type Resolver } from './expr.ts';
import { KernelBuilder, type Binding, type WorkgroupArray } from './kernel-builder.ts';
import { boundedFrontier, layoutOf, prefixGate, rowAxes, stateLayout, type Layout, type StateLayout } from './layout.ts';
import type { PlanBuffer } from './plan.ts';
import type { Block } from './wgsl-block.ts';
import { emitEarlyState, type EarlyRows } from './tree-early.ts';
import { SOFTWARE_TREE_SPLIT, TREE_TILE_DEFAULT, treeSplit, type TreeOptions, type TreeSplit } from './tree-split.ts';

/** Invocations of a tree workgroup on a software adapter (the split's default; tree-split.ts). */
export const TREE_WG = SOFTWARE_TREE_SPLIT.threads;
/**
 * Ancestors per tile of the commit's path staging and of a bounded term's lags, and a path tile's by default (the
 * split's `tile`: the scores of a path tile are tile × lanes threads, tile · lanes = the split's threads).
 */
export const TREE_TILE = TREE_TILE_DEFAULT;

/** The tree's parent indices, [b, N] as f32 (−1 for a child of the last committed token). */
export const TREE_PARENTS = 'tree:parents';
/** The accepted path of a commit, [b, P] as f32 node indices from the root down (P = dims.t, the longest path). */
export const TREE_PATH = 'tree:path';
import { definePerSequence } from './sequence-offsets.ts';

export { definePerSequence, sequenceBuffer, TREE_SEQ } from './sequence-offsets.ts';

export interface TreePrefix {
  readonly k: number;
  readonly name: string;
  readonly form: PrefixForm;
  readonly F: number;
  /** past_groups size (the group a node's path may leave open), 0 for a causal term. */
  readonly group: number;
  readonly gateId: Id | null;
  /** Gate values per node: F (one per feature) or 1 (one per head); 0 without a gate. */
  readonly gateW: number;
}

export interface TreeAnalysis {
  readonly p: Program;
  readonly sizes: Sizes;
  readonly maxNodes: number;
  readonly L: Layout;
  readonly st: StateLayout;
  readonly NS: number;
  readonly NR: number;
  readonly per: number;
  /** The workgroup's threads and the state phase's slices (tree-split.ts). */
  readonly split: TreeSplit;
  /** Feature lanes of a path tile's scores: split.threads / split.tile. */
  readonly lanes: number;
  readonly prefix: readonly TreePrefix[];
  /** Bounded terms' query features, staged at node n: [W] over `axes` (the head axes fixed). */
  readonly qf: ReadonlyMap<Id, { axes: readonly string[]; W: number }>;
}

/** The split of a tree step of `p` (tree-split.ts): a hardware adapter's when `hardware`, else the software one. */
export function treeSplitOf(p: Program, sizes: Sizes, opts: TreeOptions): TreeSplit {
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes);
  return treeSplit(count(L.rest, sizes), Math.max(1, ...st.prefix.map((q) => q.F)), !(opts.hardware ?? false), opts.threads, opts.tile);
}

export function analyseTree(p: Program, sizes: Sizes, maxNodes: number, split: TreeSplit = SOFTWARE_TREE_SPLIT): TreeAnalysis {
  if (split.threads % split.tile !== 0 || split.slices < 1) throw new Error(`analyseTree: a split of ${split.threads} threads, ${split.slices} slices does not tile ${split.tile} ancestors`);
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes); // refuses noncausal programs
  const prefix = st.prefix.map((q): TreePrefix => {
    const form = q.term.form as PrefixForm;
    const gate = prefixGate(p, form);
    const gateAxes = gate ? p.nodes[gate.id].type.axes : [];
    const stray = gateAxes.filter((a) => a !== form.feature && !L.head.includes(a));
    if (stray.length) throw new Error(`term ${q.term.name}: the tree kernel supports decay gates over the head axes [${L.head.join(', ')}] and the feature axis, not [${gateAxes.join(', ')}]`);
    return {
      k: q.k, name: q.term.name, form, F: q.F,
      group: q.open ? (q.term.mask[0] as { size: number }).size : 0,
      gateId: gate?.id ?? null, gateW: gate ? (gate.perFeature ? q.F : 1) : 0,
    };
  });
  const qf = new Map(
    boundedFrontier(p, p.terms, 'query').map((id) => {
      const axes = rowAxes(p, L, id);
      return [id, { axes, W: count(axes, sizes) }] as const;
    }),
  );
  return { p, sizes, maxNodes, L, st, NS: count(L.head, sizes), NR: count(L.rest, sizes), per: count(p.outAxes, sizes), split, lanes: split.threads / split.tile, prefix, qf };
}

/** Where a tree body is emitted and what it reads (treeKernel): the plain kernel's own builder, or the fold's. */
export interface TreeSite {
  readonly kb: KernelBuilder;
  readonly main: Block;
  /** The tree's node count N, a u32 expression (the plain kernel's dims.t). */
  readonly nodes: string;
  /** WGSL reading state buffer `name` ('state:S0', …) at `index`. */
  readonly load: (name: string, index: string) => string;
  /** The pending path above the root (the folded kernel). */
  readonly pending?: PendingPath;
  /**
   * Code that reads n's inputs (at position 'an') and no workgroup memory (the folded kernel's copy of n's
   * inputs): with loadsFirst, emitted before the path walk, its loads first and the rest in the function it
   * returns, emitted after the early query-side staging; otherwise after phase 1, as it was.
   */
  readonly prologue?: (read: Resolver, main: Block, loadsFirst: boolean) => ((main: Block) => void) | void;
}

/** The previous step's accepted path, not yet in the state the kernel reads: the oldest ancestors of every node. */
export interface PendingPath {
  /** Its length P, a u32 expression. */
  readonly length: string;
  /** The node index (u32 < maxNodes) of entry k, from the root down. */
  readonly node: (k: string) => string;
  /** WGSL of input `name` of pending node `node` at offset `off` within its row. */
  readonly input: (name: string, node: string, off: string) => string;
}

/** The kernel's declarations and prologue: what the term phases read. */
export interface TreeKernel {
  readonly a: TreeAnalysis;
  readonly kb: KernelBuilder;
  /** Inputs at the node a position variable belongs to (see `at`), and parameters. */
  readonly read: Resolver;
  /** Registers that position variable `pos` belongs to node variable `node`, for reading token inputs. */
  readonly at: (pos: string, node: string) => void;
  /** WGSL reading state buffer `name` at `index` (stateAt). */
  readonly load: (name: string, index: string) => string;
  readonly out: Binding;
  /** The node count N, a u32 expression. */
  readonly nodes: string;
  /** path[k]: the ancestor k steps above n (u32), k < depth; in the fold, ≥ maxNodes for pending nodes. */
  readonly path: WorkgroupArray;
  /** φ_n of each prefix term, [F]. */
  readonly phi: readonly WorkgroupArray[];
  /** Query features at n of the bounded terms, [W] each. */
  readonly qf: ReadonlyMap<Id, WorkgroupArray>;
  readonly head: Index;
  /** Prefix term k's rows of S (and z) loaded before the first barrier (tree-early.ts); absent: loaded where used. */
  readonly early: ReadonlyMap<number, EarlyRows>;
}

/**
 * A launch's builder with its bindings declared and its prologue emitted: after it, `n` (the node), `depth`
 * (uniform), `an` (its position), path[] and the staged query-side values are ready for every invocation.
 * `loadsFirst`: the state rows each thread walks go into registers before the first barrier (tree-early.ts).
 */
export function treeKernel(a: TreeAnalysis, given?: TreeSite, loadsFirst = true): TreeKernel {
  const site = given ?? ownSite(a);
  const { kb, nodes: N, pending } = site;
  const nodeOf = new Map<string, string>();
  const base = programReader(kb, a.p, a.sizes, (where) => {
    const node = nodeOf.get(where);
    if (!node) throw new Error(`internal: ${a.p.name}: an input read at '${where}', which is no tree node's position`);
    return `b * ${N} + ${node}`;
  });
  // In the fold a path entry ≥ maxNodes is a pending node, whose inputs the previous step kept. Both buffers are read,
  // at indices clamped into range, and a select keeps one: no branch, so the loads of a tile's ancestors (unrolled
  // below: tree-prefix.ts) issue together instead of each waiting behind its own branch.
  const read: Resolver = !pending ? base : (n, idx, where, blk) => {
    const node = nodeOf.get(where);
    if (n.op !== 'input' || node === 'n' || node === undefined) return base(n, idx, where, blk);
    nodeOf.set(CLAMPED, `min(${node}, ${N} - 1u)`); // base reads the row of the position's node: this one, clamped
    const own = base(n, idx, CLAMPED, blk);
    const old = pending.input(n.name, `min(${node} - min(${node}, ${a.maxNodes}u), ${a.maxNodes - 1}u)`, offset(n.type.axes, a.sizes, idx));
    return `select(${own}, ${old}, ${node} >= ${a.maxNodes}u)`;
  };
  const at = (pos: string, node: string) => void nodeOf.set(pos, node);
  const out = kb.storage('out:o', true, { always: true });
  const parents = kb.storage(TREE_PARENTS, false, { always: true });
  const par = kb.workgroup('par', a.maxNodes, 'parents, sanitised to earlier nodes', 'i32');
  const path = kb.workgroup('path', pending ? 2 * a.maxNodes : a.maxNodes, `path[k]: n's ancestor k steps up${pending ? ' (≥ maxNodes: a pending node)' : ''}`, 'u32');
  const wdepth = kb.workgroup('wdepth', 1, "the path's length", 'u32');
  const phi = a.prefix.map((q) => kb.workgroup(`phi${q.k}`, q.F, `φ_n of ${q.name}`));
  const qf = new Map([...a.qf].map(([id, f]) => [id, kb.workgroup(`qf${id}`, f.W, `query features %${id} at n`)] as const));
  const main = site.main;
  main.define('s', `wid.x / ${N}`, 'head slice');
  main.define('n', `wid.x % ${N}`, 'the node this workgroup verifies');
  main.define('b', 'wid.y');
  definePerSequence(kb, main, !!pending);
  const head = main.split(a.L.head, a.sizes, 's', 'hx');
  const early = loadsFirst ? emitEarlyState(a, main, site.load) : new Map<number, EarlyRows>();
  const T: TreeKernel = { a, kb, read, at, load: site.load, out, nodes: N, path, phi, qf, head, early };
  at('an', 'n');
  // Loads first: the query-side values that do not read n's position (known only after the path) are staged
  // before the path walk, their loads of n's inputs issued before its barriers, which also publish them.
  const roots = [...a.prefix.map((q) => q.form.phi), ...a.qf.keys()];
  const free = new Set(loadsFirst ? roots.filter((id) => !readsPosition(a.p, id)) : []);
  const finish = loadsFirst ? site.prologue?.(read, main, true) : undefined;
  if (free.size) stageQuerySide(T, main, free, 'phase 1, before the path: the query-side values at n that do not read its position (the path\'s barriers publish them)', false);
  if (finish) finish(main);
  emitPath(main, kb.use(parents), N, par.name, path.name, wdepth.name, pending && { ...pending, offset: a.maxNodes });
  main.define('an', 'pos0 + depth - 1u', "n's absolute position");
  stageQuerySide(T, main, new Set(roots.filter((id) => !free.has(id))), free.size ? 'phase 1: the query-side values at n that read its position' : 'phase 1: query-side values at n', true);
  if (!loadsFirst) site.prologue?.(read, main, false);
  return T;
}

/** The key under which treeKernel's reader finds a path entry's tree row clamped into range (no WGSL variable). */
const CLAMPED = '#clamped';

/** Whether node `root` depends on a position (a position, rope or decay node below it): in the tree kernel, n's. */
function readsPosition(p: Program, root: Id): boolean {
  const seen = new Set<Id>();
  const walk = (id: Id): boolean => {
    if (seen.has(id)) return false;
    seen.add(id);
    const n = p.nodes[id];
    return n.op === 'position' || n.op === 'rope' || n.op === 'decay' || operands(n).some(walk);
  };
  return walk(root);
}

/**
 * The reductions inside node `root` at position `where` that give one value per row (their axes among the head
 * axes, which a workgroup fixes): an L2 norm or a sum over a feature axis, like llama_linearized's ‖rope(k)‖ over d.
 * ExprGen computes a node once per element it is asked for, so a feature map q/‖q‖ staged element by element
 * redoes the norm's whole loop for every element — d² per row. Computed first at the row (`value` at the head
 * index), ExprGen reuses it inside the element loop. The outermost reductions only, each with the position
 * it is read at (an `at` moves it to the query or key position).
 */
export function rowReductions(p: Program, root: Id, where: string, pos: Positions, head: readonly string[]): { id: Id; where: string }[] {
  const found = new Map<string, { id: Id; where: string }>();
  const seen = new Set<string>();
  const walk = (id: Id, w: string): void => {
    const key = `${id}|${w}`;
    if (seen.has(key)) return;
    seen.add(key);
    const n = p.nodes[id];
    if ((n.op === 'sum' || n.op === 'norm' || n.op === 'matmul') && n.type.axes.every((x) => head.includes(x))) {
      found.set(key, { id, where: w });
      return;
    }
    if (n.op === 'at') return walk(n.x, n.which === 'i' ? pos.i : pos.j);
    for (const x of operands(n)) walk(x, w);
  };
  walk(root, where);
  return [...found.values()];
}

/** Computes `root`'s row reductions into `at` with `g`, so that elements computed inside `at` reuse them. */
export function hoistRowReductions(T: TreeKernel, g: ExprGen, at: Block, root: Id, where: string): void {
  for (const r of rowReductions(T.a.p, root, where, g.pos, T.a.L.head)) g.value(at, r.id, T.head, r.where);
}

/** The plain kernel's site: a builder of its own, N = dims.t, the state buffers bound read only. */
function ownSite(a: TreeAnalysis): TreeSite {
  const kb = new KernelBuilder(a.split.threads, ['wid', 'lid']);
  const state = new Map(a.st.buffers.map((b) => [b.name, kb.storage(b.name, false)]));
  return { kb, main: kb.body, nodes: 'dims.t', load: (name, index) => `${kb.use(state.get(name)!)}[${index}]` };
}

/**
 * Parents (sanitised: a parent that is not an earlier node reads as −1), then n's root path and depth; with a
 * pending path, its entries after the root's, youngest first, each as maxNodes + its node.
 */
function emitPath(main: Block, parents: string, N: string, par: string, path: string, wdepth: string, pending: (PendingPath & { offset: number }) | undefined): void {
  main.comment("phase 0: n's root path");
  main.strided('m', 'n + 1u', (b, m) => {
    const pv = b.let('pv', `i32(round(${parents}[b * ${N} + ${m}]))`);
    b.line(`${par}[${m}] = select(-1, ${pv}, ${pv} >= 0 && ${pv} < i32(${m}));`);
  });
  main.line('workgroupBarrier();');
  main.block('if (lid == 0u)', (b) => {
    const k = b.var('k', '0u', 'u32');
    const up = b.var('up', 'i32(n)', 'i32');
    b.block('loop', (l) => {
      l.line(`if (${up} < 0) { break; }`);
      l.line(`${path}[${k}] = u32(${up});`);
      l.line(`${k}++;`);
      l.line(`${up} = ${par}[u32(${up})];`);
    });
    b.line(`${wdepth}[0] = ${k};`);
  });
  if (!pending) {
    main.define('depth', `workgroupUniformLoad(&${wdepth}[0])`, 'uniform: loops around barriers run to it');
    return;
  }
  // One entry a thread: in lid 0's loop each entry waited for its own load of the path buffer.
  const root = main.let('rootDepth', `workgroupUniformLoad(&${wdepth}[0])`, "n's depth in this step's tree");
  main.comment('the pending path above the root, youngest first');
  main.strided('i', pending.length, (b, i) => b.line(`${path}[${root} + ${i}] = ${pending.offset}u + ${pending.node(`${pending.length} - 1u - ${i}`)};`));
  main.line('workgroupBarrier();');
  main.define('depth', `${root} + ${pending.length}`, 'uniform: loops around barriers run to it');
}

/**
 * Each prefix term's φ_n and the bounded terms' query features at n, in workgroup memory. Their row reductions
 * (a norm over d) come first, once per invocation, then every element reuses them. `only`: the roots staged here;
 * `barrier`: a barrier after them (without one, a later barrier must publish them before they are read).
 */
function stageQuerySide(T: TreeKernel, main: Block, only: ReadonlySet<Id>, what: string, barrier: boolean): void {
  const { a } = T;
  main.comment(what);
  const g = new ExprGen(a.p, a.sizes, T.read, { i: 'an', j: 'an' });
  for (const id of [...a.prefix.map((q) => q.form.phi), ...a.qf.keys()]) if (only.has(id)) hoistRowReductions(T, g, main, id, 'an');
  a.prefix.forEach((q, i) => {
    if (!only.has(q.form.phi)) return;
    main.strided('f', `${q.F}u`, (b, f) => {
      const idx: Index = { ...T.head, ...(q.form.feature ? { [q.form.feature]: f } : {}) };
      b.line(`${T.phi[i].name}[${f}] = ${g.value(b, q.form.phi, idx, 'an')};`);
    });
  });
  for (const [id, f] of a.qf) {
    if (!only.has(id)) continue;
    main.strided('x', `${f.W}u`, (b, x) => {
      const idx = b.split(f.axes, a.sizes, x, `q${id}`);
      b.line(`${T.qf.get(id)!.name}[${x}] = ${g.value(b, id, { ...T.head, ...idx }, 'an')};`);
    });
  }
  if (barrier) main.line('workgroupBarrier();');
}

/** WGSL reading a state buffer ('state:S0', …) at `index`: the committed state, read only. */
export function stateAt(T: TreeKernel, buffer: string, index: string): string {
  return T.load(buffer, index);
}
