// The tree kernels' analysis (tree.ts): what each node stages in the scratch buffer 'tmp:tree' — one region per
// staged quantity, `width` floats per (b, node) each, region k starting at b·N·Σ_{k'<k} width — and the
// declarations and prologue both launches share: bindings, the parent and depth arrays, the head slice, and
// phase 0 (parents sanitised to earlier nodes, depths).
import type { PrefixForm } from '../../src/ir/terms.ts';
import type { Id, Program } from '../../src/ir/types.ts';
import { count, programReader, type Sizes } from './common.ts';
import type { Index, Resolver } from './expr.ts';
import { KernelBuilder, type Binding, type WorkgroupArray } from './kernel-builder.ts';
import { boundedFrontier, layoutOf, prefixGate, rowAxes, stateLayout, type Layout, type StateLayout } from './layout.ts';
import type { Block } from './wgsl-block.ts';

export const TREE_WG = 64;

/** The tree's parent indices, [b, N] as f32 (−1 for a child of the last committed token). */
export const TREE_PARENTS = 'tree:parents';
/** The accepted path of a commit, [b, P] as f32 node indices from the root down. */
export const TREE_PATH = 'tree:path';

/** A region of 'tmp:tree': `start` counts floats per (b, node) before it. */
export interface Region {
  readonly start: number;
}

export interface TreePrefix {
  readonly k: number;
  readonly name: string;
  readonly form: PrefixForm;
  readonly F: number;
  /** past_groups size (the group a node's path may leave open), 0 for a causal term. */
  readonly group: number;
  readonly phi: Region; // [b, NS, N, F]
  readonly psi: Region;
  readonly gate: Region | null; // [b, NS, N, F]: the decay gate at each node
  readonly gateId: Id | null;
  readonly gateW: number; // 1 or F
  readonly gatePerFeature: boolean;
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
  readonly prefix: readonly TreePrefix[];
  /** Bounded terms' query features at every node: [b, NS, N, W]. */
  readonly qf: ReadonlyMap<Id, { region: Region; axes: readonly string[]; W: number }>;
  /** Nodes the rings keep (values, key features) at every node: [b, N, per]. */
  readonly nodes: ReadonlyMap<Id, Region>;
  readonly scratchWidth: number;
}

export function analyseTree(p: Program, sizes: Sizes, maxNodes: number): TreeAnalysis {
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes); // refuses noncausal programs
  const NS = count(L.head, sizes);
  let width = 0;
  /** A region of `w` floats per (b, node), times NS when each head slice stages its own. */
  const region = (w: number, sliced: boolean): Region => {
    const start = width;
    width += sliced ? NS * w : w;
    return { start };
  };
  const prefix = st.prefix.map((q): TreePrefix => {
    const form = q.term.form as PrefixForm;
    const gate = prefixGate(p, form);
    const gateAxes = gate ? p.nodes[gate.id].type.axes : [];
    const stray = gateAxes.filter((a) => a !== form.feature && !L.head.includes(a));
    if (stray.length) throw new Error(`term ${q.term.name}: the tree kernel supports decay gates over the head axes [${L.head.join(', ')}] and the feature axis, not [${gateAxes.join(', ')}]`);
    const phi = region(q.F, true);
    const psi = region(q.F, true);
    return {
      k: q.k, name: q.term.name, form, F: q.F,
      group: q.open ? (q.term.mask[0] as { size: number }).size : 0,
      phi, psi, gate: gate ? region(q.F, true) : null,
      gateId: gate?.id ?? null, gateW: gate?.perFeature ? q.F : 1, gatePerFeature: gate?.perFeature ?? false,
    };
  });
  const qf = new Map(
    boundedFrontier(p, p.terms, 'query').map((id) => {
      const axes = rowAxes(p, L, id);
      const W = count(axes, sizes);
      return [id, { region: region(W, true), axes, W }] as const;
    }),
  );
  const nodes = new Map(st.rings.map((r) => [r.id, region(r.per, false)] as const));
  return { p, sizes, maxNodes, L, st, NS, NR: count(L.rest, sizes), per: count(p.outAxes, sizes), prefix, qf, nodes, scratchWidth: width };
}

/** One launch's declarations, and what its phase reads. */
export interface TreeKernel {
  readonly a: TreeAnalysis;
  readonly kb: KernelBuilder;
  /** Inputs at the node a position variable belongs to (see `at`), and parameters. */
  readonly read: Resolver;
  /** Registers that position variable `pos` (a_n) belongs to node variable `node`, for reading token inputs. */
  readonly at: (pos: string, node: string) => void;
  readonly state: ReadonlyMap<string, Binding>;
  readonly out: Binding;
  readonly tmp: Binding;
  readonly par: WorkgroupArray;
  readonly dep: WorkgroupArray;
  readonly head: Index;
}

/** A launch's builder with its bindings and arrays declared and its prologue and phase 0 emitted. */
export function treeKernel(a: TreeAnalysis): TreeKernel {
  const kb = new KernelBuilder(TREE_WG, ['wid', 'lid', 'nwg']);
  const nodeOf = new Map<string, string>();
  const read = programReader(kb, a.p, a.sizes, (where) => {
    const node = nodeOf.get(where);
    if (!node) throw new Error(`internal: ${a.p.name}: an input read at '${where}', which is no tree node's position`);
    return `b * dims.t + ${node}`;
  });
  const out = kb.storage('out:o', true, { always: true });
  const parents = kb.storage(TREE_PARENTS, false, { always: true });
  const state = new Map(a.st.buffers.map((b) => [b.name, kb.storage(b.name, false)]));
  const tmp = kb.storage('tmp:tree', true, { always: true });
  const par = kb.workgroup('par', a.maxNodes, undefined, 'i32');
  const dep = kb.workgroup('dep', a.maxNodes, undefined, 'u32');
  const main = kb.body;
  main.define('nsplit', `nwg.x / ${a.NS}u`);
  main.define('s', 'wid.x / nsplit');
  main.define('part', 'wid.x % nsplit');
  main.define('b', 'wid.y');
  const head = main.split(a.L.head, a.sizes, 's', 'hx');
  emitParents(main, kb.use(parents), par.name, dep.name);
  return { a, kb, read, at: (pos, node) => void nodeOf.set(pos, node), state, out, tmp, par, dep, head };
}

/** Phase 0: parents (sanitised to earlier nodes) and depths, in every launch's workgroup memory. */
function emitParents(main: Block, parents: string, par: string, dep: string): void {
  main.strided('n', 'dims.t', (b, n) => {
    const pv = b.let('pv', `i32(round(${parents}[b * dims.t + ${n}]))`);
    b.line(`${par}[${n}] = select(-1, ${pv}, ${pv} >= 0 && ${pv} < i32(${n}));`);
  });
  main.line('workgroupBarrier();');
  main.strided('n', 'dims.t', (b, n) => {
    const d = b.var('d', '1u', 'u32');
    const up = b.var('up', `${par}[${n}]`, 'i32');
    b.block('loop', (l) => {
      l.line(`if (${up} < 0) { break; }`);
      l.line(`${d}++;`);
      l.line(`${up} = ${par}[u32(${up})];`);
    });
    b.line(`${dep}[${n}] = ${d};`);
  });
  main.line('workgroupBarrier();');
}

/** The loop over `items` work items of a (b, head slice), spread over the launch's nsplit workgroups of it. */
export function spread(main: Block, items: string, body: (b: Block, it: string) => void): void {
  main.for('it', 'part * WG + lid', (it) => `${it} < ${items}`, body, { step: (it) => `${it} += WG * nsplit` });
}

/** Element `i` of a scratch region. */
export function scratch(T: TreeKernel, r: Region, i: string): string {
  return `${T.kb.use(T.tmp)}[dims.b * dims.t * ${r.start}u + ${i}]`;
}

/** The WGSL name of a state buffer ('state:S0', …), bound (read only) from here on. */
export function stateRef(T: TreeKernel, buffer: string): string {
  return T.kb.use(T.state.get(buffer)!);
}
