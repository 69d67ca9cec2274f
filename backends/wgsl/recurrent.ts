// The recurrent form on the GPU: one workgroup per (batch b, head slice s) walks the call's tokens one by one,
// reading and writing the state in global memory. What decoding runs (t = 1 per call); also the GPU's
// `--form recurrent`. State per prefix term: S [b, NS, F, NR] and z [b, NS, F] (past_groups terms keep the
// open group in So, zo); per bounded term: rings of the last RING positions' values and key features
// (layout.ts, stateLayout).
//
//   S ← decay_t ⊙ S + ψ_t ⊗ v_t,   o_t = Σ φ_t·S (+ window/group taps read from the rings), normalised per group.
//
// Per token two phases: stage (each prefix term's φ, ψ, log-decay and updated z in workgroup memory, the
// bounded terms' query features, the ring slots of this position), then one invocation per output column
// updates S and accumulates every output item. Where the staged features do not fit the adapter's workgroup memory
// (based's 4161 Taylor features at d 64: four [F] arrays, 66 KB) they are staged in a scratch buffer instead,
// [b, heads, 4, F]: every column thread reads them in the same order, so they stay in cache.
import { lagRange } from '../../src/ir/masks.ts';
import type { PrefixForm } from '../../src/ir/terms.ts';
import type { Id, Program, Term } from '../../src/ir/types.ts';
import { count, maskCondition, programBuffers, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { KernelBuilder, type Binding, type WorkgroupArray } from './kernel-builder.ts';
import { boundedFrontier, layoutOf, prefixGate, ringIndex, rowAxes, stateLayout, type Layout, type StateLayout } from './layout.ts';
import type { Plan, PlanBuffer } from './plan.ts';
import { isSoftmaxProgram } from './softmax-analysis.ts';
import { softmaxDecodePlan } from './softmax-decode.ts';
import type { Block } from './wgsl-block.ts';

export { ringIndex, stateLayout, type StateLayout } from './layout.ts';

const WG = 64;
/** Rows of S a thread reads before writing any (registers per thread); a divisor of the feature count. */
const MAX_STATE_UNROLL = 16;

function stateUnroll(F: number): number {
  let u = Math.min(MAX_STATE_UNROLL, F);
  while (F % u !== 0) u--;
  return u;
}

type StatePrefix = StateLayout['prefix'][number];

/** The step kernel's analysis and declarations: what its two phases read. */
interface StepKernel {
  readonly p: Program;
  readonly sizes: Sizes;
  readonly L: Layout;
  readonly st: StateLayout;
  readonly NS: number;
  readonly NR: number;
  readonly kb: KernelBuilder;
  /** Inputs at row (position − pos0) of this call's buffers, and parameters. */
  readonly read: Resolver;
  readonly state: ReadonlyMap<string, Binding>;
  /** Per prefix term: φ, ψ, log-decay and the updated z at this token ([F] each), element i as WGSL. */
  readonly staged: readonly Staged[];
  /** Query features of bounded terms at this token ([W] each, head axes fixed). */
  readonly qf: ReadonlyMap<Id, { array: WorkgroupArray; axes: readonly string[]; W: number }>;
  readonly head: Index;
}

type Staged = Readonly<Record<'phi' | 'psi' | 'lg' | 'zn', (i: string) => string>>;
const STAGED = ['phi', 'psi', 'lg', 'zn'] as const;

/**
 * `maxLength`: the positions softmax attention's key/value cache holds (softmax-decode.ts; ignored otherwise).
 * `maxWorkgroupBytes`: the adapter's workgroup memory; prefix features that would not fit it are staged in global
 * memory (absent: always in workgroup memory).
 */
export function recurrentPlan(p: Program, sizes: Sizes, maxLength?: number, opts: { readonly maxWorkgroupBytes?: number } = {}): Plan {
  if (isSoftmaxProgram(p)) return softmaxDecodePlan(p, sizes, maxLength);
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes);
  const NS = count(L.head, sizes);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + (${where} - dims.pos0)`);
  const out = kb.storage('out:o', true, { always: true });
  const state = new Map(st.buffers.map((b) => [b.name, kb.storage(b.name, true)]));
  const queryFloats = boundedFrontier(p, p.terms, 'query').reduce((n, id) => n + count(rowAxes(p, L, id), sizes), 0);
  const stagedFloats = st.prefix.reduce((n, q) => n + STAGED.length * q.F, 0);
  const inGlobal = opts.maxWorkgroupBytes !== undefined && 4 * (stagedFloats + queryFloats) > opts.maxWorkgroupBytes;
  const scratch: PlanBuffer[] = [];
  const staged = st.prefix.map((q): Staged => {
    if (!inGlobal) {
      const arrays = STAGED.map((what) => kb.workgroup(`${what}${q.k}`, q.F).name);
      return Object.fromEntries(STAGED.map((what, k) => [what, (i: string) => `${arrays[k]}[${i}]`])) as Staged;
    }
    const name = `scratch:stage${q.k}`;
    scratch.push({ name, role: 'scratch', floats: (b) => b * NS * STAGED.length * q.F, shape: (b) => [b, NS, STAGED.length, q.F] });
    const buf = kb.storage(name, true);
    return Object.fromEntries(STAGED.map((what, k) => [what, (i: string) => `${kb.use(buf)}[((b * ${NS}u + s) * ${STAGED.length}u + ${k}u) * ${q.F}u + ${i}]`])) as Staged;
  });
  const qf = new Map(
    boundedFrontier(p, p.terms, 'query').map((id) => {
      const axes = rowAxes(p, L, id);
      const W = count(axes, sizes);
      return [id, { array: kb.workgroup(`qf${id}`, W), axes, W }] as const;
    }),
  );
  const main = kb.body;
  main.define('s', 'wid.x');
  main.define('b', 'wid.y');
  const K: StepKernel = { p, sizes, L, st, NS, NR: count(L.rest, sizes), kb, read, state, staged, qf, head: main.split(L.head, sizes, 's', 'hx') };
  main.for('tok', '0u', (tok) => `${tok} < dims.t`, (step) => {
    step.define('pos', 'dims.pos0 + tok');
    for (const q of st.prefix) stagePrefix(K, step, q);
    for (const id of qf.keys()) stageQueryFeature(K, step, id);
    for (const r of st.rings) pushRing(K, step, r);
    step.line('storageBarrier();');
    step.line('workgroupBarrier();');
    step.strided('col', `${K.NR}u`, (c, col) => emitColumn(K, c, col, kb.use(out)));
    step.line('storageBarrier();');
    step.line('workgroupBarrier();');
  }, { fixed: true });
  const kernel = kb.build({
    label: `${p.name}.recurrent`,
    comment: [`recurrent step kernel of ${p.name}: tokens of this call in order, state in global memory`],
    workgroups: (b) => [K.NS, b, 1],
  });
  const buffers = [...programBuffers(p, sizes), ...st.buffers, ...scratch];
  return { variant: p.name, form: 'recurrent', kernels: [kernel], buffers, outAxes: p.outAxes, sizes, schedule: { workgroup: WG } };
}

/** The WGSL name of a state buffer ('state:S0', …), bound from here on. */
function stateRef(K: StepKernel, buffer: string): string {
  return K.kb.use(K.state.get(buffer)!);
}

/** A prefix term's φ, ψ and log-decay at this token, and z folded: z ← decay ⊙ z + ψ (the open group's zo instead). */
function stagePrefix(K: StepKernel, step: Block, q: StatePrefix): void {
  const f = q.term.form as PrefixForm;
  const gate = prefixGate(K.p, f);
  const { phi, psi, lg, zn } = K.staged[q.k];
  step.strided('x', `${q.F}u`, (b, x) => {
    b.comment(`${q.term.name}: φ, ψ, decay at this token`);
    const g = new ExprGen(K.p, K.sizes, K.read, { i: 'pos', j: 'pos' });
    const idx: Index = { ...K.head, ...(f.feature ? { [f.feature]: x } : {}) };
    const ph = g.value(b, f.phi, idx, 'pos');
    const ps = g.value(b, f.psi, idx, 'pos');
    const gv = gate ? g.value(b, gate.id, gate.perFeature ? idx : { ...K.head }, 'pos') : null;
    b.line(`${phi(x)} = ${ph}; ${psi(x)} = ${ps};`);
    b.line(`${lg(x)} = ${gv ? `log(max(${gv}, 1e-30))` : '0.0'};`);
    const zi = `(b * ${K.NS}u + s) * ${q.F}u + ${x}`;
    const z = stateRef(K, `state:z${q.k}`);
    if (q.open) {
      const zo = stateRef(K, `state:zo${q.k}`);
      b.block(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u)`, (j) => j.line(`${z}[${zi}] += ${zo}[${zi}]; ${zo}[${zi}] = 0.0;`));
      b.line(`${zo}[${zi}] += ${psi(x)};`);
      b.line(`${zn(x)} = ${z}[${zi}];`);
    } else {
      const zv = b.let('zv', `exp(${lg(x)}) * ${z}[${zi}] + ${psi(x)}`);
      b.line(`${z}[${zi}] = ${zv}; ${zn(x)} = ${zv};`);
    }
  });
}

/** A bounded term's query feature at this token. */
function stageQueryFeature(K: StepKernel, step: Block, id: Id): void {
  const f = K.qf.get(id)!;
  step.strided('x', `${f.W}u`, (b, x) => {
    const idx = b.split(f.axes, K.sizes, x, `q${id}`);
    const v = new ExprGen(K.p, K.sizes, K.read, { i: 'pos', j: 'pos' }).value(b, id, { ...K.head, ...idx }, 'pos');
    b.line(`${f.array.name}[${x}] = ${v};`);
  });
}

/** This position's slot of a ring (a bounded term's value or key feature). */
function pushRing(K: StepKernel, step: Block, r: StateLayout['rings'][number]): void {
  const n = K.p.nodes[r.id];
  const own = rowAxes(K.p, K.L, r.id);
  step.strided('x', `${count(own, K.sizes)}u`, (b, x) => {
    b.comment(`ring of %${r.id}`);
    const full = { ...K.head, ...b.split(own, K.sizes, x, `r${r.id}`) };
    const v = new ExprGen(K.p, K.sizes, K.read, { i: 'pos', j: 'pos' }).value(b, r.id, full, 'pos');
    b.line(`${stateRef(K, `state:ring${r.id}`)}[${ringIndex(r, K.st.ring, `pos % ${K.st.ring}u`, offset(n.type.axes, K.sizes, full))}] = ${v};`);
  });
}

/** Output column `col`: every output item, updating S as the prefix terms read it. */
function emitColumn(K: StepKernel, c: Block, col: string, out: string): void {
  const full: Index = { ...K.head, ...c.split(K.L.rest, K.sizes, col, 'oc') };
  const acc = c.var('o_acc', '0.0');
  const vg = new ExprGen(K.p, K.sizes, K.read, { i: 'pos', j: 'pos' });
  const vcur = new Map<Id, string>();
  for (const t of K.p.terms) if (t.form.kind === 'prefix' && !vcur.has(t.value)) vcur.set(t.value, vg.value(c, t.value, full, 'pos'));
  K.p.output.forEach((it) => {
    const names = it.kind === 'term' ? [it.term] : it.terms;
    c.block('', (g) => {
      g.comment(it.kind === 'norm' ? `normalize(${names.join(' + ')})` : names[0]);
      const num = g.var('num', '0.0');
      const den = g.var('den', '0.0');
      const sums = { num, den, col, full };
      for (const name of names) {
        const t = K.p.terms.find((x) => x.name === name)!;
        const q = K.st.prefix.find((x) => x.term === t);
        if (q && q.open) openPrefixTerm(K, g, q, vcur.get(t.value)!, sums);
        else if (q) prefixTerm(K, g, q, vcur.get(t.value)!, sums);
        else boundedTerm(K, g, t, sums);
      }
      g.line(it.kind === 'norm' ? `${acc} = ${acc} + ${num} / (${den} + ${it.eps});` : `${acc} = ${acc} + ${num};`);
    });
  });
  c.line(`${out}[(b * dims.t + tok) * ${count(K.p.outAxes, K.sizes)}u + ${offset(K.p.outAxes, K.sizes, full)}] = ${acc};`);
}

interface Sums {
  readonly num: string;
  readonly den: string;
  readonly col: string;
  readonly full: Index;
}

/**
 * S ← decay ⊙ S + ψ ⊗ v, num += φ·S, den += φ·z. U rows of S are read before any is written, so a step waits
 * for F / U memory round trips, not F (a store to S between the loads would keep the compiler from issuing the
 * next load early).
 */
function prefixTerm(K: StepKernel, g: Block, q: StatePrefix, v: string, { num, den, col }: Sums): void {
  const { phi, psi, lg, zn } = K.staged[q.k];
  const U = stateUnroll(q.F);
  const perF = prefixGate(K.p, q.term.form as PrefixForm)?.perFeature ?? false;
  const S = stateRef(K, `state:S${q.k}`);
  g.for('f0', '0u', (f0) => `${f0} < ${q.F}u`, (l, f0) => {
    l.comment(`${q.term.name}: ${U} rows of S in flight`);
    const at = (u: number) => `((b * ${K.NS}u + s) * ${q.F}u + ${f0} + ${u}u) * ${K.NR}u + ${col}`;
    const rows = [...Array(U).keys()].map((u) => l.let(`s${u}`, `${S}[${at(u)}]`));
    rows.forEach((su, u) => {
      const f = `${f0} + ${u}u`;
      l.block('', (r) => {
        const sv = r.let('sv', `exp(${lg(perF ? f : '0u')}) * ${su} + ${psi(f)} * ${v}`);
        r.line(`${S}[${at(u)}] = ${sv};`);
        r.line(`${num} = ${num} + ${phi(f)} * ${sv};`);
        r.line(`${den} = ${den} + ${phi(f)} * ${zn(f)};`);
      });
    });
  }, { step: (f0) => `${f0} += ${U}u` });
}

/** A past_groups term: the open group So collects ψ ⊗ v and joins S when the next group starts; num += φ·S. */
function openPrefixTerm(K: StepKernel, g: Block, q: StatePrefix, v: string, { num, den, col }: Sums): void {
  const { phi, psi, zn } = K.staged[q.k];
  const S = stateRef(K, `state:S${q.k}`);
  const So = stateRef(K, `state:So${q.k}`);
  g.for('f', '0u', (f) => `${f} < ${q.F}u`, (l, f) => {
    l.comment(q.term.name);
    const si = `((b * ${K.NS}u + s) * ${q.F}u + ${f}) * ${K.NR}u + ${col}`;
    l.block(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u)`, (j) => j.line(`${S}[${si}] += ${So}[${si}]; ${So}[${si}] = 0.0;`));
    l.line(`${So}[${si}] += ${psi(f)} * ${v};`);
    l.line(`${num} = ${num} + ${phi(f)} * ${S}[${si}]; ${den} = ${den} + ${phi(f)} * ${zn(f)};`);
  });
}

/** A window or group term: lag l reads the rings at position pos − l. */
function boundedTerm(K: StepKernel, g: Block, t: Term, { num, den, full }: Sums): void {
  const [lo, hi] = lagRange(t.mask)!;
  const vr = K.st.rings.find((r) => r.id === t.value)!;
  g.for('lag', `${Math.max(0, lo)}u`, (lag) => `${lag} <= min(${hi}u, pos)`, (l, lag) => {
    l.comment(t.name);
    const ja = l.let('ja', `pos - ${lag}`);
    l.line(`if (!(${maskCondition(t.mask, 'pos', ja)})) { continue; }`);
    const sv = new ExprGen(K.p, K.sizes, ringReader(K, ja), { i: 'pos', j: ja }).value(l, t.score, full, ja);
    l.line(`${num} = ${num} + ${sv} * ${stateRef(K, `state:ring${vr.id}`)}[${ringIndex(vr, K.st.ring, `${ja} % ${K.st.ring}u`, offset(K.p.nodes[t.value].type.axes, K.sizes, full))}];`);
    l.line(`${den} = ${den} + ${sv};`);
  });
}

/** Query features from workgroup memory, key-side ring nodes at key position `ja`, everything else as inputs. */
function ringReader(K: StepKernel, ja: string): Resolver {
  return (n, idx, where, at) => {
    const f = K.qf.get(n.id);
    if (f) return `${f.array.name}[${offset(f.axes, K.sizes, idx)}]`;
    const r = K.st.rings.find((x) => x.id === n.id);
    if (r && n.type.side === 'key') return `${stateRef(K, `state:ring${r.id}`)}[${ringIndex(r, K.st.ring, `${ja} % ${K.st.ring}u`, offset(n.type.axes, K.sizes, idx))}]`;
    return K.read(n, idx, where, at);
  };
}
