// Term stages of a gradient program on the GPU. A term stage is an ordinary program (masked terms summed), so
// it runs through the chunk kernel — each group of its terms that reads one value as one chunk section — with
// its own memory interface: inputs read reversed, shifted and padded (reader.ts), the sum stored at the
// tensor's own positions. A stage the chunk kernel cannot run — a noncausal term (the leaky ablation's
// convolution, bounded), or a bounded term decayed by a per-token gate — runs in the parallel form instead, one
// invocation per output element.
//
// The recompute of a normalised item's numerator n and denominator z (two stages: the same terms, valued v and
// 1) is one section: the chunk kernel's partial mode writes both, num = Σ_j s v and den = Σ_j s.
import { graphAsProgram, type Binding, type MapStage, type TermStage } from '../../../src/ir/grad.ts';
import { lagRange } from '../../../src/ir/masks.ts';
import { unboundedQuadratic } from '../../../src/ir/terms.ts';
import type { Id, OutputItem, Program, Term } from '../../../src/ir/types.ts';
import { itemsOver, valueGroups, type ChunkIo, type ChunkKernelSpec, type ChunkSchedule } from '../chunked/analysis.ts';
import { chunkSectionsKernel, sectionsFloats, type Section } from '../chunked/sections.ts';
import { count, maskCondition } from '../common.ts';
import { ExprGen, offset, type Index, type Resolver } from '../expr.ts';
import { KernelBuilder, flatIndex } from '../kernel-builder.ts';
import { frontier, layoutOf } from '../layout.ts';
import { grid } from '../plan.ts';
import type { Block } from '../wgsl-block.ts';
import { storedSlot, type Env } from './env.ts';
import type { GradKernel } from './plan.ts';
import { KernelBuffers, stageReader } from './reader.ts';

/** Where a group's result goes: a stage's sum, or (recompute) an item's numerator and denominator. */
export type GroupOut =
  | { readonly kind: 'sum'; readonly tensor: string; readonly accumulate: boolean }
  | { readonly kind: 'parts'; readonly num: string; readonly den: string; readonly denAxes: readonly string[]; readonly accumulate: boolean };

/** One chunk section to be: terms of a stage that read one value, in the stage's time, and where they store. */
export interface TermGroup {
  readonly stages: readonly string[];
  readonly program: Program;
  readonly terms: readonly Term[];
  readonly items: readonly OutputItem[];
  readonly partial: boolean;
  readonly time: 'forward' | 'reverse';
  readonly pad: number;
  readonly negated: boolean;
  readonly bindings: Readonly<Record<string, Binding>>;
  readonly out: GroupOut;
  /** Environment tensors the group reads (by binding) and writes. */
  readonly reads: readonly string[];
  readonly writes: readonly string[];
  /** Runs in the parallel form (the chunk kernel cannot run its terms). */
  readonly parallel: boolean;
  /** Map-stage outputs computed from this group's sum where it is stored (the token sweep's epilogue). */
  readonly epilogue?: readonly Epilogue[];
  /** Whether the sum itself is stored (false when only epilogues read it). Default true. */
  readonly storeSum?: boolean;
}

/**
 * A map stage's output written where a term group stores its sum `v`: out[b, t, …] (+)= expr, node `id` of the
 * stage's graph with its input `from` (the group's own output tensor) read as v and every other leaf read at the
 * row's own position. The output's axes are the group's, and expr reads `from` only elementwise.
 */
export interface Epilogue {
  readonly tensor: string;
  readonly stage: MapStage;
  readonly id: Id;
  readonly from: string;
  readonly accumulate: boolean;
}

/**
 * Can the chunk kernel run these terms? Not a noncausal one, nor a bounded one whose score decays by a per-token
 * gate, nor a quadratic one under the unbounded causal mask (softmax attention's gradient terms).
 */
function chunkable(p: Program): boolean {
  if (p.terms.some((t) => t.noncausal || unboundedQuadratic(t))) return false;
  try {
    for (const t of p.terms) if (t.form.kind !== 'prefix') frontier(p, t.score);
    return true;
  } catch {
    return false;
  }
}

/**
 * A term stage (`passed`: its program after the passes) as groups; groups after the first add into the sum.
 * `parallel`: one group in the parallel form, whether or not the chunk kernel could run it.
 */
export function stageGroups(st: TermStage, passed: Program, parallel = false): TermGroup[] {
  const tensor = st.writes;
  const common = { stages: [st.name], program: passed, time: st.time, pad: st.pad, negated: st.positions === 'negated', bindings: st.bindings, reads: Object.values(st.bindings).map((b) => b.tensor), writes: [tensor] };
  if (parallel || !chunkable(passed)) {
    return [{ ...common, terms: passed.terms, items: passed.output, partial: false, out: { kind: 'sum', tensor, accumulate: false }, parallel: true }];
  }
  return valueGroups(passed).map((terms, k) => ({
    ...common,
    terms,
    items: itemsOver(passed.output, terms),
    partial: false,
    out: { kind: 'sum', tensor, accumulate: k > 0 },
    parallel: false,
  }));
}

/**
 * recompute.n.k and recompute.z.k as one group when z's terms are n's with value 1 (what autodiff derives): n's
 * program with its terms as one normalised item, run partial. Undefined when the two do not pair up.
 */
export function recomputeGroups(n: TermStage, z: TermStage, passedN: Program, passedZ: Program): TermGroup[] | undefined {
  const same = passedN.terms.length === passedZ.terms.length && passedN.terms.every((t, k) => t.name === passedZ.terms[k].name && JSON.stringify(t.mask) === JSON.stringify(passedZ.terms[k].mask));
  if (!same || n.time !== 'forward' || z.time !== 'forward' || !chunkable(passedN)) return undefined;
  const program: Program = { ...passedN, output: [{ kind: 'norm', terms: passedN.terms.map((t) => t.name), eps: 0 }] };
  const num = n.writes;
  const den = z.writes;
  const reads = [...new Set([...Object.values(n.bindings), ...Object.values(z.bindings)].map((b) => b.tensor))];
  return valueGroups(program).map((terms, k) => ({
    stages: [n.name, z.name],
    program,
    terms,
    items: itemsOver(program.output, terms),
    partial: true,
    time: 'forward',
    pad: 1,
    negated: false,
    bindings: n.bindings,
    out: { kind: 'parts', num, den, denAxes: z.program.outAxes, accumulate: k > 0 },
    reads,
    writes: [num, den],
    parallel: false,
  }));
}

/** The head axes a group's terms put on workgroups, or null when they leave the choice open (convolutions only). */
export function groupHead(g: TermGroup, chunk: number): readonly string[] | null {
  if (!g.terms.some((t) => t.form.kind === 'prefix' || t.form.kind === 'quadratic')) return null;
  return layoutOf(g.program, g.terms, chunk).head;
}

/** The chunk section of a group in a kernel whose head axes are `head` and whose buffers are `buffers(kb)`. */
function section(env: Env, g: TermGroup, schedule: ChunkSchedule, head: readonly string[], buffers: (kb: KernelBuilder) => KernelBuffers, afterStores: boolean, label: string, segmented?: 'state' | 'output'): Section {
  const L = layoutOf(g.program, g.terms, schedule.chunk, head);
  const NR = count(L.rest, env.sizes);
  const io = (kb: KernelBuilder): ChunkIo => {
    const bufs = buffers(kb);
    return { read: stageReader({ env, buffers: bufs }, g.bindings, { reverse: g.time === 'reverse', batch: 'b' }), store: groupStore(env, g, bufs) };
  };
  const spec: ChunkKernelSpec = {
    program: g.program,
    sizes: env.sizes,
    terms: g.terms,
    items: g.items,
    partial: g.partial,
    schedule: { chunk: schedule.chunk, cols: Math.min(schedule.cols, NR), threads: schedule.threads, ...(segmented ? { segment: schedule.segment } : {}) },
    materialised: new Set(),
    label,
    io,
    ...(segmented ? { segmented, segmentBuffer: (what: 'S' | 'z', k: number) => segmentBuffer(g, what, k) } : {}),
    ...(g.negated ? { positionOffset: '-f32(dims.t - 1u)' } : {}),
    ...(head.length ? { head } : {}),
  };
  return { spec, afterStores };
}

/** Stores of a group's outputs at the tensors' own positions (a reversed stage's row p is position dims.t − 1 − p). */
function groupStore(env: Env, g: TermGroup, bufs: KernelBuffers): ChunkIo['store'] {
  const outAxes = g.program.outAxes;
  return (b: Block, what, _item, ia, idx: Index, v) => {
    const row = g.time === 'reverse' ? b.let('tw', `dims.t - 1u - ${ia}`) : ia;
    const conds = g.time === 'reverse' ? [`${row} < dims.pad`] : [];
    let tensor: string;
    let axes = outAxes;
    const out = g.out;
    if (out.kind === 'sum') {
      if (what !== 'o') throw new Error(`internal: a stage's sum stores 'o', not '${what}'`);
      tensor = out.tensor;
    } else if (what === 'num') tensor = out.num;
    else if (what === 'den') {
      tensor = out.den;
      axes = out.denAxes;
      // z is one value per row over its own axes: stored from the columns at index 0 of the others
      for (const a of outAxes) if (!axes.includes(a)) conds.push(`${idx[a]} == 0u`);
    } else throw new Error(`internal: an item's parts store num and den, not '${what}'`);
    const store = (s: Block) => {
      if (g.storeSum !== false || out.kind !== 'sum') {
        const at = bufs.out(tensor, offset(axes, env.sizes, idx, `b * dims.pad + ${row}`));
        s.line(out.accumulate ? `${at} = ${at} + ${v};` : `${at} = ${v};`);
      }
      for (const e of g.epilogue ?? []) epilogueStore(env, bufs, e, s, row, idx, v);
    };
    if (conds.length) b.block(`if (${conds.join(' && ')})`, store);
    else store(b);
  };
}

/** An epilogue's element at the tensors' own position `row`, its input `from` being the group's value v. */
function epilogueStore(env: Env, bufs: KernelBuffers, e: Epilogue, b: Block, row: string, idx: Index, v: string): void {
  const program = graphAsProgram(e.stage.name, e.stage.graph);
  const rest = stageReader({ env, buffers: bufs }, e.stage.bindings, { reverse: false, batch: 'b' });
  const read: Resolver = (n, i, where, at) => (n.op === 'input' && n.name === e.from ? v : rest(n, i, where, at));
  b.block('', (s) => {
    s.comment(`epilogue: ${e.tensor} of ${e.stage.name}`);
    const val = new ExprGen(program, env.sizes, read, { i: row, j: row }).value(s, e.id, idx, row);
    const at = bufs.out(e.tensor, offset(storedSlot(env, e.tensor).axes, env.sizes, idx, `b * dims.pad + ${row}`));
    s.line(e.accumulate ? `${at} = ${at} + ${val};` : `${at} = ${val};`);
  });
}

export interface TermKernelRequest {
  readonly env: Env;
  readonly groups: readonly TermGroup[];
  readonly schedule: ChunkSchedule;
  readonly label: string;
  /** Groups after the first that add into what an earlier group of this kernel stored wait for those stores. */
  readonly barriers: boolean;
  /** One launch of a segmented kernel (grad/segmented-terms.ts); schedule.segment chunks per segment. */
  readonly segmented?: 'state' | 'output';
}

/** A group's segment states of its prefix term k: [b, NS, nseg, F, NR] (S) and [b, NS, nseg, F] (z). */
export const segmentBuffer = (g: TermGroup, what: 'S' | 'z' | 'g', k: number) => `seg:${g.stages.join('+')}:${what}${k}`;

/** The head axes the groups share (a convolution-only group takes the others'), or null when they disagree. */
export function sharedHead(groups: readonly TermGroup[], chunk: number): readonly string[] | null {
  const heads = groups.map((g) => groupHead(g, chunk)).filter((h): h is readonly string[] => h !== null);
  const head = heads[0] ?? [];
  if (heads.some((h) => h.join() !== head.join())) return null;
  if (!groups.every((g) => head.every((a) => g.program.outAxes.includes(a)))) return null;
  return head;
}

export function sections(r: TermKernelRequest): Section[] {
  const head = sharedHead(r.groups, r.schedule.chunk);
  if (!head) throw new Error(`internal: ${r.label}: its groups put different head axes on workgroups`);
  const writes = new Set(r.groups.flatMap((g) => g.writes));
  let bufs: KernelBuffers | undefined;
  const buffers = (kb: KernelBuilder) => (bufs && bufs.kb === kb ? bufs : (bufs = new KernelBuffers(kb, r.env, writes)));
  const written = new Set<string>();
  return r.groups.map((g, k) => {
    const adds = [...(g.out.accumulate ? g.writes : []), ...(g.epilogue ?? []).filter((e) => e.accumulate).map((e) => e.tensor)];
    const after = r.barriers && adds.some((w) => written.has(w));
    g.writes.forEach((w) => written.add(w));
    return section(r.env, g, r.schedule, head, buffers, after, `${r.label}.${k}:${g.stages.join('+')}`, r.segmented);
  });
}

/** Workgroup memory (f32s) of the groups as one kernel. */
export function termKernelFloats(r: TermKernelRequest): number {
  return sectionsFloats(sections(r));
}

/**
 * One launch running the groups as chunk sections, all in the same time direction. A reverse-time kernel pads T
 * to a multiple of every group's padding (a group may run over more padding than it needs: what it sums at
 * padded positions is multiplied by a cotangent read there, zero, see passes/autodiff/term-stage.ts).
 */
export function termKernel(r: TermKernelRequest): GradKernel {
  const g0 = r.groups[0];
  for (const g of r.groups) {
    if (g.time !== g0.time || g.parallel) throw new Error(`internal: ${r.label}: groups of one chunk kernel share their time direction and run chunked`);
  }
  const k = chunkSectionsKernel(sections(r), r.label);
  return { ...k, pad: padOf(r.groups), stages: [...new Set(r.groups.flatMap((g) => [...g.stages, ...(g.epilogue ?? []).map((e) => e.stage.name)]))] };
}

/** The padding a kernel running these groups needs: a multiple of each one's. */
export function padOf(groups: readonly TermGroup[]): number {
  const gcd = (a: number, b: number): number => (b ? gcd(b, a % b) : a);
  return groups.reduce((m, g) => (m * g.pad) / gcd(m, g.pad), 1);
}

const WG = 64;

/**
 * A stage in the parallel form: one invocation per output element at kernel position p,
 * o[p] = Σ_terms Σ_{j ∈ M(p)} s(p, j) v_j over the mask's lags (all j ≤ p for an unbounded causal mask), stored
 * at the tensors' own positions.
 */
export function naiveTermKernel(env: Env, g: TermGroup, label: string): GradKernel {
  const p = g.program;
  const sizes = env.sizes;
  const per = count(p.outAxes, sizes);
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const bufs = new KernelBuffers(kb, env, g.writes);
  const read = stageReader({ env, buffers: bufs }, g.bindings, { reverse: g.time === 'reverse', batch: 'b' });
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * dims.t * ${per}u) { return; }`);
  const e = main.let('e_flat', `${flat} % ${per}u`);
  main.define('i', `(${flat} / ${per}u) % dims.t`);
  main.define('b', `${flat} / (${per}u * dims.t)`);
  const idx = main.split(p.outAxes, sizes, e, 'ix');
  const acc = main.var('o_acc', '0.0');
  const pos = (j: string) => (g.negated ? { i: 'i', j, offset: '-f32(dims.t - 1u)' } : { i: 'i', j });
  for (const t of g.terms) {
    const r = lagRange(t.mask);
    const lo = r ? `u32(max(i32(i) - ${r[1]}, 0))` : '0u';
    const hi = r ? `u32(clamp(i32(i) - ${r[0]} + 1, 0, i32(dims.t)))` : t.noncausal ? 'dims.t' : 'i + 1u';
    main.comment(`term ${t.name}`);
    main.for('j', lo, (j) => `${j} < ${hi}`, (l, j) => {
      l.line(`if (!(${maskCondition(t.mask, 'i', j)})) { continue; }`);
      const gen = new ExprGen(p, sizes, read, pos(j));
      l.line(`${acc} = ${acc} + ${gen.value(l, t.score, idx, j)} * ${gen.value(l, t.value, idx, j)};`);
    });
  }
  groupStore(env, g, bufs)(main, 'o', 0, 'i', idx, acc);
  const kernel = kb.build({
    label,
    comment: [`${g.stages.join(', ')} of ${p.name} in the parallel form, ${g.time} time`],
    workgroups: (b, t) => grid(b * t * per, WG),
    launch: { kind: 'grid', perToken: per, size: WG },
  });
  return { ...kernel, pad: g.pad, stages: [...new Set([...g.stages, ...(g.epilogue ?? []).map((e) => e.stage.name)])] };
}

