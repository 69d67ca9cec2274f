// The recurrent form on the GPU: what decoding runs (t = 1 per call); also the GPU's `--form recurrent`. State per
// prefix term: S [b, NS, F, NR] and z [b, NS, F, NR], z copied per value column (past_groups terms keep the open
// group in So, zo [b, NS, F]); per bounded term: rings of the last RING positions' values and key features
// (layout.ts, stateLayout).
//
//   S ← decay_t ⊙ S + ψ_t ⊗ v_t,   o_t = Σ φ_t·S (+ window/group taps read from the rings), normalised per group.
//
// One launch per decode step (t = 1), two for longer calls. The step kernel runs a workgroup per (batch b, head
// slice s, block of value columns) and, inside it, threads over (column, slice of the feature rows and lags)
// (recurrent-split.ts: the split is the plan's `schedule`). Per token it stages what every column reads — the
// per-token reductions (recurrent-stage.ts), each prefix term's φ, ψ, log-decay and z, the bounded terms' query and
// current key features, and the scores of bounded terms that do not depend on the column (llama's q̂·k̂ per lag, a
// conv's taps w[h, lag]) — then each thread updates its rows of S for its column (each cell of S written by exactly
// one thread), writes the same rows of its column's copy of z, and sums its slice's share of the output; the
// slices' sums are added in workgroup memory. A block reads z from its first column's copy, which only it writes,
// and carries it in workgroup memory through the call's tokens. The rings, which every column block reads whole,
// are read for positions before the call (this call's earlier positions come from the inputs). At t = 1 column
// block 0 of each head slice writes the token into ring slot pos % RING: RING = the longest lag + 1, and the step
// reads lags 1 … RING − 1 from the ring, so no block reads that slot during the step. Over t > 1 tokens a slower
// block could still need a slot a faster one overwrote, so there the commit kernel (recurrent-commit.ts) writes
// the rings afterwards; it also advances the open groups' zo, read whole by every block (with past_groups terms
// it runs at t = 1 too, for zo alone). Where the
// staged features do not fit the adapter's workgroup memory (based's 4161 Taylor features at d 64) they are staged
// in a scratch buffer instead, [b, workgroups, staged, F]: every thread reads them in the same order, so they stay
// in cache.
//
// Sequences at positions of their own (RecurrentOptions.perSequence: a speculative batch continued by plain decoding):
// sequence b's tokens start at dims.pos0 plus its offset in `tree:seq` (sequence-offsets.ts), and every position the
// step reads or writes — input rows, ring slots, group starts — follows; without it the batch shares dims.pos0.
//
// Loads first (RecurrentOptions.loadsFirst, the default): every global load of a token that no earlier store of the
// token feeds is issued before its first barrier — each thread's z element and rows of S (into registers before
// the token loop, carried in them through the call's tokens and stored once after it: the same thread owns the same
// elements at every token), its column's v, its lags' ring reads and per-column scores, and the q/k elements it
// stages — so a decode step waits one memory round trip before its math, not three (z; q, k; v and S). The
// slices' partial sums are then added 8 at a time (two barriers for 64 slices, not six). Off: the order before.
import { lagRange } from '../../src/ir/masks.ts';
import type { PrefixForm } from '../../src/ir/terms.ts';
import { operands, type Id, type Program, type Term } from '../../src/ir/types.ts';
import { count, maskCondition, programBuffers, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { KernelBuilder, type Binding, type WorkgroupArray } from './kernel-builder.ts';
import { boundedFrontier, layoutOf, prefixGate, ringIndex, rowAxes, scoreAxes, stateLayout, type Layout, type StateLayout } from './layout.ts';
import type { Plan, PlanBuffer } from './plan.ts';
import { recurrentCommitKernel } from './recurrent-commit.ts';
import { recurrentSplit, type RecurrentSplit } from './recurrent-split.ts';
import { definePerSequence, sequenceBuffer } from './sequence-offsets.ts';
import { stageReductions, tokenReductions } from './recurrent-stage.ts';
import { isSoftmaxProgram } from './softmax-analysis.ts';
import { softmaxDecodePlan } from './softmax-decode.ts';
import type { Block } from './wgsl-block.ts';

export { ringIndex, stateLayout, type StateLayout } from './layout.ts';
export type { RecurrentSplit } from './recurrent-split.ts';

/** Rows of S a thread reads before writing any (registers per thread); a divisor of its slice's rows. */
const MAX_STATE_UNROLL = 16;

function stateUnroll(F: number): number {
  let u = Math.min(MAX_STATE_UNROLL, F);
  while (F % u !== 0) u--;
  return u;
}

type StatePrefix = StateLayout['prefix'][number];

/** A bounded term's lags [lo, hi] (lo ≥ 0) and, when its score does not depend on the column, the staged scores. */
interface Bounded {
  readonly lo: number;
  readonly hi: number;
  readonly scores: WorkgroupArray | null;
}

/** The step kernel's analysis and declarations: what its phases read. */
interface StepKernel {
  readonly p: Program;
  readonly sizes: Sizes;
  readonly L: Layout;
  readonly st: StateLayout;
  readonly NS: number;
  readonly NR: number;
  readonly split: RecurrentSplit;
  readonly kb: KernelBuilder;
  /** Inputs at row (position − pos0) of this call's buffers, and parameters. */
  readonly read: Resolver;
  readonly state: ReadonlyMap<string, Binding>;
  /** Per prefix term: φ, ψ, log-decay, z after this token and (past_groups) the open group's zo ([F] each). */
  readonly staged: readonly Staged[];
  /** Query features of bounded terms at this token ([W] each, head axes fixed). */
  readonly qf: ReadonlyMap<Id, { array: WorkgroupArray; axes: readonly string[]; W: number }>;
  /** Key features of bounded terms at this token, the same way. */
  readonly kf: ReadonlyMap<Id, { array: WorkgroupArray; axes: readonly string[]; W: number }>;
  readonly bounded: ReadonlyMap<Term, Bounded>;
  readonly head: Index;
  /** The first token's position: 'dims.pos0', or 'pos0' (RecurrentOptions.perSequence: the sequence's own). */
  readonly P0: string;
  /** Loads first (RecurrentOptions.loadsFirst). */
  readonly loadsFirst: boolean;
  /** Partial sums a slice adds per level of the slices' reduction (RecurrentOptions.reduceFanIn). */
  readonly fanIn: number;
  /** The prefix terms whose z element and rows of S each thread keeps in registers through the call's tokens. */
  readonly regs: ReadonlyMap<StatePrefix, Registers>;
}

/** A prefix term's registers: this thread's z element (x = lid) and its FS rows of S in column col; past_groups: zo, So the same way. */
interface Registers {
  readonly z: string;
  readonly rows: readonly string[];
  readonly zo?: string;
  readonly open?: readonly string[];
}

type Staged = Readonly<Record<'phi' | 'psi' | 'lg' | 'zn' | 'zo', (i: string) => string>>;
const STAGED = ['phi', 'psi', 'lg', 'zn', 'zo'] as const;
const stagedOf = (q: StatePrefix) => (q.open ? STAGED : STAGED.slice(0, 4));

/** recurrentPlan's options (its doc comment says what each is). */
export interface RecurrentOptions {
  readonly maxWorkgroupBytes?: number;
  readonly split?: RecurrentSplit;
  readonly hardware?: boolean;
  readonly batch?: number;
  /**
   * Issue each token's global loads before the first barrier (default on): see loadsFirstTerms. Off builds the
   * step as it was before (z loaded then a barrier, q/k staged then a barrier, then v and S) for a side-by-side bench.
   */
  readonly loadsFirst?: boolean;
  /**
   * Partial sums of the slices a thread adds per level of the step's reduction: 2 is the pairwise tree (log₂ slices
   * barriers), 8 (the default with loadsFirst; 2 without) takes 64 slices in 2 levels.
   */
  readonly reduceFanIn?: number;
  /**
   * Each sequence of the batch at its own position: sequence b's first token sits at dims.pos0 + TREE_SEQ[b]'s
   * offset (sequence-offsets.ts), where a speculative batch left it (each sequence committed its own path). Every
   * position the step reads or writes — its inputs' rows, the rings' slots, group starts — follows. Default off: one
   * position for the batch, and no TREE_SEQ binding.
   */
  readonly perSequence?: boolean;
}

/**
 * `maxLength`: the positions softmax attention's key/value cache holds (softmax-decode.ts; ignored otherwise).
 * `maxWorkgroupBytes`: the adapter's workgroup memory; prefix features that would not fit it are staged in global
 * memory (absent: always in workgroup memory). `split`: the threads' split (default: recurrentSplit's, for a
 * hardware adapter when `hardware`, else a software one — the callers that hold a Gpu say which — at `batch`,
 * default 1: the plan runs at any batch, but its split fills the GPU at that one).
 */
export function recurrentPlan(
  p: Program,
  sizes: Sizes,
  maxLength?: number,
  opts: RecurrentOptions = {},
): Plan {
  if (isSoftmaxProgram(p)) {
    if (opts.perSequence) throw new Error(`${p.name}: softmax attention's key/value cache keeps one position for the batch; its decode step takes no per-sequence positions`);
    return softmaxDecodePlan(p, sizes, maxLength);
  }
  const L = layoutOf(p, p.terms);
  const st = stateLayout(p, sizes);
  const NS = count(L.head, sizes);
  const NR = count(L.rest, sizes);
  const lags = p.terms.filter((t) => t.form.kind !== 'prefix').map((t) => lagRange(t.mask)!);
  const reach = Math.max(1, ...st.prefix.map((q) => q.F), ...lags.map(([lo, hi]) => hi - Math.max(0, lo) + 1));
  const split = opts.split ?? recurrentSplit(NS, NR, reach, !(opts.hardware ?? false), opts.batch ?? 1);
  const WG = split.columns * split.slices;
  const CB = Math.ceil(NR / split.columns);
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  // The batch's position, or (perSequence) the workgroup's sequence's own, defined in main as `pos0`.
  const P0 = opts.perSequence ? 'pos0' : 'dims.pos0';
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + (${where} - ${P0})`);
  const out = kb.storage('out:o', true, { always: true });
  const state = new Map(st.buffers.map((b) => [b.name, kb.storage(b.name, true)]));
  const width = (ids: readonly Id[]) => ids.reduce((n, id) => n + count(rowAxes(p, L, id), sizes), 0);
  const queryIds = boundedFrontier(p, p.terms, 'query');
  const keyIds = boundedFrontier(p, p.terms, 'key');
  const roots = [...st.prefix.flatMap((q) => prefixRoots(p, q)), ...queryIds, ...keyIds, ...st.rings.map((r) => r.id)];
  const scoreFloats = lags.reduce((n, [lo, hi]) => n + hi - Math.max(0, lo) + 1, 0); // at most: per-column scores stay unstaged
  const otherFloats = width(queryIds) + width(keyIds) + width(tokenReductions(p, roots)) + scoreFloats + 2 * p.output.length * WG;
  const stagedFloats = st.prefix.reduce((n, q) => n + stagedOf(q).length * q.F, 0);
  const inGlobal = opts.maxWorkgroupBytes !== undefined && 4 * (stagedFloats + otherFloats) > opts.maxWorkgroupBytes;
  const scratch: PlanBuffer[] = [];
  const NW = NS * CB;
  const staged = st.prefix.map((q): Staged => {
    const kinds = stagedOf(q);
    if (!inGlobal) {
      const arrays = kinds.map((what) => kb.workgroup(`${what}${q.k}`, q.F).name);
      return Object.fromEntries(kinds.map((what, k) => [what, (i: string) => `${arrays[k]}[${i}]`])) as Staged;
    }
    const name = `scratch:stage${q.k}`;
    scratch.push({ name, role: 'scratch', floats: (b) => b * NW * kinds.length * q.F, shape: (b) => [b, NW, kinds.length, q.F] });
    const buf = kb.storage(name, true);
    return Object.fromEntries(kinds.map((what, k) => [what, (i: string) => `${kb.use(buf)}[((b * ${NW}u + wid.x) * ${kinds.length}u + ${k}u) * ${q.F}u + ${i}]`])) as Staged;
  });
  const features = (ids: readonly Id[], stem: string) =>
    new Map(
      ids.map((id) => {
        const axes = rowAxes(p, L, id);
        const W = count(axes, sizes);
        return [id, { array: kb.workgroup(`${stem}${id}`, W), axes, W }] as const;
      }),
    );
  const bounded = new Map(
    p.terms
      .filter((t) => t.form.kind !== 'prefix')
      .map((t) => {
        const [lo0, hi] = lagRange(t.mask)!;
        const lo = Math.max(0, lo0);
        const perColumn = scoreAxes(p, t).some((a) => L.rest.includes(a));
        return [t, { lo, hi, scores: perColumn ? null : kb.workgroup(`score_${t.name}_`, hi - lo + 1, `${t.name}'s score per lag`) }] as const;
      }),
  );
  const main = kb.body;
  main.define('s', `wid.x / ${CB}u`, `head slice; column block wid.x % ${CB}`);
  main.define('b', 'wid.y');
  if (opts.perSequence) definePerSequence(kb, main, false);
  main.define('sl', `lid / ${split.columns}u`, `slice of the feature rows and lags`);
  main.define('col0', `(wid.x % ${CB}u) * ${split.columns}u`, "this column block's first column, whose copy of z it reads");
  main.define('col', `col0 + lid % ${split.columns}u`);
  const loadsFirst = opts.loadsFirst ?? true;
  const K: StepKernel = {
    p, sizes, L, st, NS, NR, split, kb, read, state, staged, bounded, loadsFirst, P0,
    fanIn: Math.max(2, opts.reduceFanIn ?? (loadsFirst ? 8 : 2)),
    regs: loadsFirst ? registerTerms(st, split, WG) : new Map(),
    qf: features(queryIds, 'qf'),
    kf: features(keyIds, 'kf'),
    head: main.split(L.head, sizes, 's', 'hx'),
  };
  const barrier = (b: Block) => {
    if (inGlobal) b.line('storageBarrier();');
    b.line('workgroupBarrier();');
  };
  if (K.loadsFirst) {
    main.define('colc', `min(col, ${NR - 1}u)`, 'col clamped into the state: loads issued by every thread, results used where col < NR');
    main.comment('loads first: z, and the rows of S this thread walks, into registers before any barrier');
  }
  for (const q of st.prefix) {
    const r = K.regs.get(q);
    if (r) loadRegisters(K, main, q, r);
    else loadZ(K, main, q);
  }
  // Each thread later updates exactly the z elements it loaded (the same strided loop), so loadsFirst needs no barrier here.
  if (!K.loadsFirst) barrier(main);
  main.for('tok', '0u', (tok) => `${tok} < dims.t`, (step) => {
    step.define('pos', `${P0} + tok`);
    // The columns' loads go before the staged reductions' barriers where they read none of them.
    const early = K.loadsFirst && tokenReductions(p, columnRoots(K)).length === 0 ? columnLoads(K, step, read) : null;
    const resolve = stageReductions(p, sizes, L, kb, step, K.head, read, roots);
    const loaded = early ?? (K.loadsFirst ? columnLoads(K, step, resolve) : null);
    for (const q of st.prefix) stagePrefix(K, step, q, resolve);
    for (const [id, f] of K.qf) stageFeature(K, step, id, f, resolve);
    for (const [id, f] of K.kf) stageFeature(K, step, id, f, resolve);
    barrier(step);
    if ([...bounded.values()].some((x) => x.scores)) {
      for (const [t, x] of bounded) if (x.scores) stageScores(K, step, t, x, resolve);
      step.line('workgroupBarrier();');
    }
    emitColumns(K, step, kb.use(out), resolve, loaded);
    if (st.rings.length) step.block(`if (dims.t == 1u && wid.x % ${CB}u == 0u)`, (r) => writeRings(K, r, resolve));
  }, { fixed: true });
  if (K.regs.size) storeRegisters(K, main);
  const kernel = kb.build({
    label: `${p.name}.recurrent`,
    comment: [
      `recurrent step kernel of ${p.name}: tokens of this call in order, S in global memory`,
      `workgroups [${NS} head slices × ${CB} column blocks, b]; ${split.columns} columns × ${split.slices} slices of the rows and lags per workgroup`,
    ],
    workgroups: (b) => [NW, b, 1],
  });
  const commit = recurrentCommitKernel(p, sizes, st, opts.perSequence ?? false);
  const buffers = [...programBuffers(p, sizes), ...(opts.perSequence ? [sequenceBuffer] : []), ...st.buffers, ...scratch];
  return {
    variant: p.name,
    form: 'recurrent',
    kernels: commit ? [kernel, commit] : [kernel],
    buffers,
    outAxes: p.outAxes,
    sizes,
    // rowsPerThread, lagsPerThread: the longest walk of one thread (rows of S of a prefix term, lags of a bounded term).
    schedule: {
      workgroup: WG,
      columns: split.columns,
      slices: split.slices,
      columnBlocks: CB,
      workgroups: NW,
      rowsPerThread: Math.ceil(Math.max(0, ...st.prefix.map((q) => q.F)) / split.slices),
      lagsPerThread: Math.ceil(Math.max(0, ...lags.map(([lo, hi]) => hi - Math.max(0, lo) + 1)) / split.slices),
    },
  };
}

/** The nodes a prefix term stages per token: φ, ψ and its gate. */
function prefixRoots(p: Program, q: StatePrefix): Id[] {
  const f = q.term.form as PrefixForm;
  const gate = prefixGate(p, f);
  return gate ? [f.phi, f.psi, gate.id] : [f.phi, f.psi];
}

/** The WGSL name of a state buffer ('state:S0', …), bound from here on. */
function stateRef(K: StepKernel, buffer: string): string {
  return K.kb.use(K.state.get(buffer)!);
}

/**
 * Loads first: the prefix terms whose state a thread keeps in registers — its z element (the strided loops give
 * thread lid element x = lid, so F ≤ WG) and its FS ≤ MAX_STATE_UNROLL rows of S in its column. Loaded before the
 * token loop with no barrier after them, they are in flight with the first token's q, k and v (issued before the
 * staging barrier): a decode step (t = 1) waits one memory round trip before its math, not three (z; q, k; v, S).
 * The same thread owns the same elements at every token, so over t > 1 tokens each token updates the registers
 * and S, z are stored once after the last (storeRegisters). Open groups (So read by every slice) and wider terms
 * keep the loads in their loops.
 */
function registerTerms(st: StateLayout, split: RecurrentSplit, WG: number): Map<StatePrefix, Registers> {
  const regs = new Map<StatePrefix, Registers>();
  for (const q of st.prefix) {
    const FS = Math.ceil(q.F / split.slices);
    if (q.F > WG || FS > MAX_STATE_UNROLL) continue;
    const rows = (stem: string) => [...Array(FS).keys()].map((u) => `${stem}${q.k}r${u}`);
    regs.set(q, { z: `zr${q.k}`, rows: rows('s'), ...(q.open && { zo: `zor${q.k}`, open: rows('so') }) });
  }
  return regs;
}

/** A register term's z element (block copy at col0) and rows of S (column colc), before any barrier. */
function loadRegisters(K: StepKernel, main: Block, q: StatePrefix, r: Registers): void {
  const { FS, ragged } = rowSlice(K, q);
  const WG = K.split.columns * K.split.slices;
  const zi = (x: string) => `((b * ${K.NS}u + s) * ${q.F}u + ${x}) * ${K.NR}u`;
  main.line(`var ${main.scope.declare(r.z)}: f32 = ${stateRef(K, `state:z${q.k}`)}[${zi(q.F === WG ? 'lid' : `min(lid, ${q.F - 1}u)`)} + col0];`, `${q.term.name}: z[lid]`);
  const x = q.F === WG ? 'lid' : `min(lid, ${q.F - 1}u)`;
  if (r.zo) main.line(`var ${main.scope.declare(r.zo)}: f32 = ${stateRef(K, `state:zo${q.k}`)}[(b * ${K.NS}u + s) * ${q.F}u + ${x}];`, `${q.term.name}: the open group's zo[lid]`);
  const rows = (names: readonly string[], buffer: string, what: string) =>
    names.forEach((name, u) => {
      const f = `sl * ${FS}u + ${u}u`;
      main.line(`var ${main.scope.declare(name)}: f32 = ${stateRef(K, buffer)}[${zi(ragged ? `min(${f}, ${q.F - 1}u)` : f)} + colc];`, u === 0 ? `${q.term.name}: rows of ${what}` : undefined);
    });
  rows(r.rows, `state:S${q.k}`, 'S');
  if (r.open) rows(r.open, `state:So${q.k}`, 'So');
}

/** After the call's tokens: the register terms' rows of S and this column's copy of z, once. */
function storeRegisters(K: StepKernel, main: Block): void {
  main.block(`if (col < ${K.NR}u && dims.t > 0u)`, (c) => {
    for (const [q, r] of K.regs) {
      const { FS, ragged } = rowSlice(K, q);
      c.comment(`${q.term.name}: S and z after the call's last token`);
      r.rows.forEach((name, u) => {
        const f = `sl * ${FS}u + ${u}u`;
        const at = `((b * ${K.NS}u + s) * ${q.F}u + ${f}) * ${K.NR}u + col`;
        c.block(ragged ? `if (${f} < ${q.F}u)` : '', (w) => {
          w.line(`${stateRef(K, `state:S${q.k}`)}[${at}] = ${name}; ${stateRef(K, `state:z${q.k}`)}[${at}] = ${K.staged[q.k].zn(f)};`);
          if (r.open) w.line(`${stateRef(K, `state:So${q.k}`)}[${at}] = ${r.open[u]};`);
        });
      });
    }
  });
}

/** The token-side nodes columnLoads reads: every term's value and, through the pair nodes of a per-column score, its operands. */
function columnRoots(K: StepKernel): Id[] {
  const p = K.p;
  const found = new Set<Id>();
  const visit = (id: Id) => {
    const n = p.nodes[id];
    if (n.type.side !== 'pair') return void found.add(id);
    operands(n).forEach(visit);
  };
  for (const t of p.terms) {
    found.add(t.value);
    if (t.form.kind !== 'prefix' && !K.bounded.get(t)!.scores) visit(t.score);
  }
  return [...found];
}

/** What a token loads before its staging barrier (loads first) for emitColumns: v per prefix value, bounded terms' lags. */
interface Loaded {
  readonly values: ReadonlyMap<Id, string>;
  /**
   * Per bounded term with few lags a thread: its value at each of its lags and, unless its scores are staged per
   * workgroup (null), its score (0 where masked).
   */
  readonly bounded: ReadonlyMap<Term, { readonly kv: readonly string[] | null; readonly vv: readonly string[] }>;
}

/** Lags of a bounded term a thread keeps in registers at most (loads first); more keep their loop. */
const MAX_LAG_REGISTERS = 4;

/**
 * Loads first: each prefix term's value at this thread's column (clamped) and token, and the per-column scores and
 * values of bounded terms at this thread's lags (the rings, the inputs), all before the staging barrier. The
 * scores compute the query and this token's key features from the inputs instead of the staged arrays, which are
 * not written yet.
 */
function columnLoads(K: StepKernel, step: Block, resolve: Resolver): Loaded {
  const full: Index = { ...K.head, ...step.split(K.L.rest, K.sizes, 'colc', 'vc') };
  const vg = new ExprGen(K.p, K.sizes, resolve, { i: 'pos', j: 'pos' });
  const values = new Map<Id, string>();
  for (const t of K.p.terms) if (t.form.kind === 'prefix' && !values.has(t.value)) values.set(t.value, vg.value(step, t.value, full, 'pos'));
  const bounded = new Map<Term, { kv: string[] | null; vv: string[] }>();
  for (const [t, x] of K.bounded) {
    const n = Math.ceil((x.hi - x.lo + 1) / K.split.slices);
    if (n > MAX_LAG_REGISTERS) continue;
    step.comment(x.scores ? `${t.name}: value at this thread's lags` : `${t.name}: score and value at this thread's lags`);
    const kv = x.scores ? null : [...Array(n).keys()].map(() => step.var('kvr', '0.0'));
    const vv = [...Array(n).keys()].map(() => step.var('vvr', '0.0'));
    for (let j = 0; j < n; j++) {
      step.block('', (l0) => {
        const lag = l0.let('lag', `${x.lo}u + sl + ${j * K.split.slices}u`);
        l0.block(`if (${lag} <= min(${x.hi}u, pos))`, (l1) => {
          const ja = l1.let('ja', `pos - ${lag}`);
          l1.block(`if (${maskCondition(t.mask, 'pos', ja)})`, (l) => {
            if (kv) {
              const sv = atKeyInputs(K, l, ja, resolve, (a, r) => new ExprGen(K.p, K.sizes, r, { i: 'pos', j: ja }).value(a, t.score, full, ja));
              l.line(`${kv[j]} = ${sv};`);
            }
            ringOrInput(K, l, t, ja, full, resolve, vv[j]);
          });
        });
      });
    }
    bounded.set(t, { kv, vv });
  }
  return { values, bounded };
}

/**
 * atKey without the staged query and key features: earlier calls' key side from the rings, all else from the
 * inputs. A key position is its own number, f32(ja), not read from its ring: a conv's tap w[h, e, pos − ja] then
 * waits for one load, not a ring read and then the tap.
 */
function atKeyInputs(K: StepKernel, g: Block, ja: string, resolve: Resolver, value: (at: Block, r: Resolver) => string): string {
  const ring: Resolver = (n, idx, where, at) => {
    const r = K.st.rings.find((x) => x.id === n.id);
    if (r && n.type.side === 'key' && n.op !== 'position') return `${stateRef(K, `state:ring${r.id}`)}[${ringIndex(r, K.st.ring, `${ja} % ${K.st.ring}u`, offset(n.type.axes, K.sizes, idx))}]`;
    return resolve(n, idx, where, at);
  };
  const v = g.var('kv', '0.0');
  g.ifChain([
    [`${ja} < ${K.P0}`, (a) => a.line(`${v} = ${value(a, ring)};`)],
    [null, (a) => a.line(`${v} = ${value(a, resolve)};`)],
  ]);
  return v;
}

/** A bounded term's value at key position ja into `into`: from its ring before the call, else from the inputs. */
function ringOrInput(K: StepKernel, l: Block, t: Term, ja: string, full: Index, resolve: Resolver, into: string): void {
  const vr = K.st.rings.find((r) => r.id === t.value)!;
  l.ifChain([
    [`${ja} < ${K.P0}`, (a) => a.line(`${into} = ${stateRef(K, `state:ring${vr.id}`)}[${ringIndex(vr, K.st.ring, `${ja} % ${K.st.ring}u`, offset(K.p.nodes[t.value].type.axes, K.sizes, full))}];`)],
    [null, (a) => a.line(`${into} = ${new ExprGen(K.p, K.sizes, resolve, { i: 'pos', j: ja }).value(a, t.value, full, ja)};`)],
  ]);
}

/** z (its copy at the block's first column) and zo as the call starts, into the staged arrays that carry them through its tokens. */
function loadZ(K: StepKernel, main: Block, q: StatePrefix): void {
  const { zn, zo } = K.staged[q.k];
  main.strided('x', `${q.F}u`, (b, x) => {
    const zi = `(b * ${K.NS}u + s) * ${q.F}u + ${x}`;
    b.line(`${zn(x)} = ${stateRef(K, `state:z${q.k}`)}[(${zi}) * ${K.NR}u + col0];`);
    if (q.open) b.line(`${zo(x)} = ${stateRef(K, `state:zo${q.k}`)}[${zi}];`);
  });
}

/** A decode step's token into each ring's slot pos % RING (column block 0 of each head slice; see the header). */
function writeRings(K: StepKernel, at: Block, resolve: Resolver): void {
  for (const r of K.st.rings) {
    const own = rowAxes(K.p, K.L, r.id);
    at.strided('x', `${count(own, K.sizes)}u`, (b, x) => {
      b.comment(`ring of %${r.id}: this token`);
      const full = { ...K.head, ...b.split(own, K.sizes, x, `r${r.id}`) };
      const v = new ExprGen(K.p, K.sizes, resolve, { i: 'pos', j: 'pos' }).value(b, r.id, full, 'pos');
      b.line(`${stateRef(K, `state:ring${r.id}`)}[${ringIndex(r, K.st.ring, `pos % ${K.st.ring}u`, offset(K.p.nodes[r.id].type.axes, K.sizes, full))}] = ${v};`);
    });
  }
}

/** A prefix term's φ, ψ and log-decay at this token, and z folded: z ← decay ⊙ z + ψ (past_groups: into zo). */
function stagePrefix(K: StepKernel, step: Block, q: StatePrefix, resolve: Resolver): void {
  const f = q.term.form as PrefixForm;
  const gate = prefixGate(K.p, f);
  const { phi, psi, lg, zn, zo } = K.staged[q.k];
  step.strided('x', `${q.F}u`, (b, x) => {
    b.comment(`${q.term.name}: φ, ψ, decay at this token`);
    const g = new ExprGen(K.p, K.sizes, resolve, { i: 'pos', j: 'pos' });
    const idx: Index = { ...K.head, ...(f.feature ? { [f.feature]: x } : {}) };
    const ph = g.value(b, f.phi, idx, 'pos');
    const ps = g.value(b, f.psi, idx, 'pos');
    const gv = gate ? g.value(b, gate.id, gate.perFeature ? idx : { ...K.head }, 'pos') : null;
    b.line(`${phi(x)} = ${ph}; ${psi(x)} = ${ps};`);
    b.line(`${lg(x)} = ${gv ? `log(max(${gv}, 1e-30))` : '0.0'};`);
    const r = K.regs.get(q);
    if (q.open && r?.zo) {
      b.block(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u)`, (j) => j.line(`${r.z} += ${r.zo}; ${r.zo} = 0.0;`));
      b.line(`${r.zo} += ${psi(x)}; ${zn(x)} = ${r.z}; ${zo(x)} = ${r.zo};`);
    } else if (q.open) {
      b.block(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u)`, (j) => j.line(`${zn(x)} += ${zo(x)}; ${zo(x)} = 0.0;`));
      b.line(`${zo(x)} += ${psi(x)};`);
    } else if (r) {
      const zr = r.z;
      b.line(`${zr} = exp(${lg(x)}) * ${zr} + ${psi(x)}; ${zn(x)} = ${zr};`);
    } else {
      b.line(`${zn(x)} = exp(${lg(x)}) * ${zn(x)} + ${psi(x)};`);
    }
  });
}

/** A bounded term's query or key feature at this token. */
function stageFeature(K: StepKernel, step: Block, id: Id, f: { array: WorkgroupArray; axes: readonly string[]; W: number }, resolve: Resolver): void {
  step.strided('x', `${f.W}u`, (b, x) => {
    const idx = b.split(f.axes, K.sizes, x, `f${id}`);
    const v = new ExprGen(K.p, K.sizes, resolve, { i: 'pos', j: 'pos' }).value(b, id, { ...K.head, ...idx }, 'pos');
    b.line(`${f.array.name}[${x}] = ${v};`);
  });
}

/**
 * A column-independent bounded score at each lag, once per workgroup (0 where the mask or the sequence start
 * excludes it). Sums over an axis inside it (llama's q̂·k̂ over d) are first added in P parts per lag by P threads
 * (P: as many as the workgroup has threads for, up to the axis), so that no thread walks a whole ring slot.
 */
function stageScores(K: StepKernel, step: Block, t: Term, x: Bounded, resolve: Resolver): void {
  const nl = x.hi - x.lo + 1;
  const WG = K.split.columns * K.split.slices;
  const sums = pairSums(K, t.score);
  const D = Math.max(1, ...sums.map((id) => K.sizes[(K.p.nodes[id] as { axis: string }).axis]));
  let P = 1;
  while (nl * P * 2 <= WG && P * 2 <= D) P *= 2;
  const parts = new Map<Id, string>();
  if (P > 1 && sums.length) {
    for (const id of sums) parts.set(id, K.kb.workgroup(`sum${id}_`, nl * P, `%${id} sum of ${t.name}'s score, ${P} parts per lag`).name);
    step.strided('x', `${nl * P}u`, (b, i) => {
      b.comment(`${t.name}: sums inside the score per lag, in ${P} parts`);
      const li = b.let('li', `${i} / ${P}u`);
      const part = b.let('part', `${i} % ${P}u`);
      for (const arr of parts.values()) b.line(`${arr}[${i}] = 0.0;`);
      b.block(`if (${x.lo}u + ${li} <= pos)`, (g) => {
        const ja = g.let('ja', `pos - ${x.lo}u - ${li}`);
        g.block(`if (${maskCondition(t.mask, 'pos', ja)})`, (m) => {
          for (const [id, arr] of parts) {
            const n = K.p.nodes[id] as { x: Id; axis: string };
            const per = Math.ceil(K.sizes[n.axis] / P);
            const sv = atKey(K, m, ja, resolve, (a, r) => {
              const acc = a.var('acc', '0.0');
              a.for('l', `${part} * ${per}u`, (l) => `${l} < min(${part} * ${per}u + ${per}u, ${K.sizes[n.axis]}u)`, (lb, l) => {
                const v = new ExprGen(K.p, K.sizes, r, { i: 'pos', j: ja }).value(lb, n.x, { ...K.head, [n.axis]: l }, ja);
                lb.line(`${acc} = ${acc} + ${v};`);
              });
              return acc;
            });
            m.line(`${arr}[${i}] = ${sv};`);
          }
        });
      });
    });
    step.line('workgroupBarrier();');
  }
  const summed = (r: Resolver, i: string): Resolver => (n, idx, where, at) => {
    const arr = parts.get(n.id);
    return arr ? `(${[...Array(P).keys()].map((k) => `${arr}[${i} * ${P}u + ${k}u]`).join(' + ')})` : r(n, idx, where, at);
  };
  step.strided('x', `${nl}u`, (b, i) => {
    b.comment(`${t.name}: score per lag`);
    b.line(`${x.scores!.name}[${i}] = 0.0;`);
    b.block(`if (${x.lo}u + ${i} <= pos)`, (g) => {
      const ja = g.let('ja', `pos - ${x.lo}u - ${i}`);
      g.block(`if (${maskCondition(t.mask, 'pos', ja)})`, (m) => {
        const sv = atKey(K, m, ja, resolve, (a, r) => new ExprGen(K.p, K.sizes, summed(r, i), { i: 'pos', j: ja }).value(a, t.score, { ...K.head }, ja));
        m.line(`${x.scores!.name}[${i}] = ${sv};`);
      });
    });
  });
}

/** The outermost pair-side sums over an axis under a score, whose result has only head axes. */
function pairSums(K: StepKernel, root: Id): Id[] {
  const found: Id[] = [];
  const seen = new Set<Id>();
  const visit = (id: Id) => {
    if (seen.has(id)) return;
    seen.add(id);
    const n = K.p.nodes[id];
    if (n.type.side !== 'pair') return;
    if (n.op === 'sum' && n.type.axes.every((a) => K.L.head.includes(a))) return void found.push(id);
    for (const o of operands(n)) visit(o);
  };
  visit(root);
  return found;
}

/**
 * A key-side expression at key position `ja` (≤ pos): earlier calls' positions from the rings, this token from the
 * staged key features, this call's earlier tokens (t > 1) computed from the inputs. Query features come from
 * their staged arrays in every case. Loads first: a key position is f32(ja), never read from its ring.
 */
function atKey(K: StepKernel, g: Block, ja: string, resolve: Resolver, value: (at: Block, r: Resolver) => string): string {
  const query: Resolver = (n, idx, where, at) => {
    const f = K.qf.get(n.id);
    return f ? `${f.array.name}[${offset(f.axes, K.sizes, idx)}]` : null;
  };
  const ring: Resolver = (n, idx, where, at) => {
    const r = K.st.rings.find((x) => x.id === n.id);
    if (r && n.type.side === 'key' && !(K.loadsFirst && n.op === 'position')) return `${stateRef(K, `state:ring${r.id}`)}[${ringIndex(r, K.st.ring, `${ja} % ${K.st.ring}u`, offset(n.type.axes, K.sizes, idx))}]`;
    return query(n, idx, where, at) ?? resolve(n, idx, where, at);
  };
  const current: Resolver = (n, idx, where, at) => {
    const f = K.kf.get(n.id);
    if (f) return `${f.array.name}[${offset(f.axes, K.sizes, idx)}]`;
    return query(n, idx, where, at) ?? resolve(n, idx, where, at);
  };
  const inputs: Resolver = (n, idx, where, at) => query(n, idx, where, at) ?? resolve(n, idx, where, at);
  const v = g.var('kv', '0.0');
  g.ifChain([
    [`${ja} < ${K.P0}`, (a) => a.line(`${v} = ${value(a, ring)};`)],
    [`${ja} == pos`, (a) => a.line(`${v} = ${value(a, current)};`)],
    [null, (a) => a.line(`${v} = ${value(a, inputs)};`)],
  ]);
  return v;
}

interface Sums {
  readonly num: string;
  readonly den: string;
  readonly full: Index;
}

/**
 * Each thread's column `col` and slice `sl`: its share of every output item's numerator and denominator, updating
 * its rows of S; then the slices' shares added pairwise in workgroup memory and the output written by slice 0.
 */
function emitColumns(K: StepKernel, step: Block, out: string, resolve: Resolver, loaded: Loaded | null): void {
  const { columns, slices } = K.split;
  const WG = columns * slices;
  const items = K.p.output.length;
  const part = K.kb.workgroup('part', 2 * items * WG, 'each thread\'s numerator and denominator share per output item');
  const sums = K.p.output.map(() => ({ num: step.var('num', '0.0'), den: step.var('den', '0.0') }));
  step.block(`if (col < ${K.NR}u)`, (c) => {
    const full: Index = { ...K.head, ...c.split(K.L.rest, K.sizes, 'col', 'oc') };
    const vg = new ExprGen(K.p, K.sizes, resolve, { i: 'pos', j: 'pos' });
    const vcur = new Map<Id, string>(loaded?.values ?? []);
    for (const t of K.p.terms) if (t.form.kind === 'prefix' && !vcur.has(t.value)) vcur.set(t.value, vg.value(c, t.value, full, 'pos'));
    K.p.output.forEach((it, k) => {
      const names = it.kind === 'term' ? [it.term] : it.terms;
      c.comment(it.kind === 'norm' ? `normalize(${names.join(' + ')})` : names[0]);
      for (const name of names) {
        const t = K.p.terms.find((x) => x.name === name)!;
        const q = K.st.prefix.find((x) => x.term === t);
        const s: Sums = { ...sums[k], full };
        if (q && K.regs.has(q)) registerPrefixTerm(K, c, q, vcur.get(t.value)!, s);
        else if (q && q.open) openPrefixTerm(K, c, q, vcur.get(t.value)!, s);
        else if (q) prefixTerm(K, c, q, vcur.get(t.value)!, s);
        else if (loaded?.bounded.has(t)) {
          const { kv, vv } = loaded.bounded.get(t)!;
          const x = K.bounded.get(t)!;
          if (kv) kv.forEach((k, j) => c.line(`${s.num} = ${s.num} + ${k} * ${vv[j]}; ${s.den} = ${s.den} + ${k};`));
          else {
            vv.forEach((v, j) => {
              c.block('', (l0) => {
                const lag = l0.let('lag', `${x.lo}u + sl + ${j * K.split.slices}u`);
                l0.block(`if (${lag} <= min(${x.hi}u, pos))`, (l1) => {
                  const ja = l1.let('ja', `pos - ${lag}`);
                  l1.block(`if (${maskCondition(t.mask, 'pos', ja)})`, (l) => {
                    const sv = l.let('sv', `${x.scores!.name}[${lag} - ${x.lo}u]`);
                    l.line(`${s.num} = ${s.num} + ${sv} * ${v}; ${s.den} = ${s.den} + ${sv};`);
                  });
                });
              });
            });
          }
        } else boundedTerm(K, c, t, s, resolve);
      }
    });
  });
  sums.forEach(({ num, den }, k) => step.line(`${part.name}[${2 * k}u * WG + lid] = ${num}; ${part.name}[${2 * k + 1}u * WG + lid] = ${den};`));
  step.line('workgroupBarrier();');
  if (K.fanIn <= 2) {
    // Slices sl and sl + w added, w halving: log₂ slices steps, the same order on every run.
    for (let w = 2 ** Math.ceil(Math.log2(slices)) / 2; w >= 1; w /= 2) {
      step.block(`if (sl < ${w}u && sl + ${w}u < ${slices}u)`, (r) => {
        for (let k = 0; k < 2 * items; k++) r.line(`${part.name}[${k}u * WG + lid] += ${part.name}[${k}u * WG + lid + ${w * columns}u];`);
      });
      step.line('workgroupBarrier();');
    }
  } else {
    // Of n partial sums, slice sl < w = ⌈n / fanIn⌉ adds those at sl + w, sl + 2w, … (< n) to its own: one barrier
    // per level, ⌈log_fanIn slices⌉ levels (64 slices: 2, not 6), the same order on every run.
    for (let n = slices; n > 1; ) {
      const w = Math.ceil(n / K.fanIn);
      step.block(`if (sl < ${w}u)`, (r) => {
        for (let k = 0; k < 2 * items; k++) {
          const at = `${part.name}[${k}u * WG + lid]`;
          const terms = [...Array(K.fanIn - 1).keys()].map((j) => (j + 1) * w).filter((d) => d < n);
          const read = (d: number) => `${part.name}[${k}u * WG + lid + ${d * columns}u]`;
          if (n % w === 0) r.line(`${at} += ${terms.map(read).join(' + ')};`);
          else for (const d of terms) r.line(`if (sl + ${d}u < ${n}u) { ${at} += ${read(d)}; }`);
        }
      });
      step.line('workgroupBarrier();');
      n = w;
    }
  }
  step.block(`if (sl == 0u && col < ${K.NR}u)`, (c) => {
    const full: Index = { ...K.head, ...c.split(K.L.rest, K.sizes, 'col', 'oc') };
    const acc = c.var('o_acc', '0.0');
    K.p.output.forEach((it, k) => {
      const [num, den] = [2 * k, 2 * k + 1].map((r) => `${part.name}[${r}u * WG + lid]`);
      c.line(it.kind === 'norm' ? `${acc} = ${acc} + ${num} / (${den} + ${it.eps});` : `${acc} = ${acc} + ${num};`);
    });
    c.line(`${out}[(b * dims.t + tok) * ${count(K.p.outAxes, K.sizes)}u + ${offset(K.p.outAxes, K.sizes, full)}] = ${acc};`);
  });
  // The next token's staging overwrites what the columns read (loads first: only where a next token follows).
  if (K.loadsFirst) step.line('if (tok + 1u < dims.t) { workgroupBarrier(); }');
  else step.line('workgroupBarrier();');
}

/** This thread's feature rows of a prefix term: [sl·FS, sl·FS + FS) ∩ [0, F). */
function rowSlice(K: StepKernel, q: StatePrefix): { FS: number; ragged: boolean } {
  const FS = Math.ceil(q.F / K.split.slices);
  return { FS, ragged: FS * K.split.slices !== q.F };
}

/**
 * S ← decay ⊙ S + ψ ⊗ v, num += φ·S, den += φ·z over this thread's rows, and those rows of its column's z. U rows of S are read before any is
 * written, so a slice waits for FS / U memory round trips, not FS (a store to S between the loads would keep the
 * compiler from issuing the next load early). Past F (the last slices of a ragged split) a row is read clamped
 * and neither written nor summed.
 */
function prefixTerm(K: StepKernel, g: Block, q: StatePrefix, v: string, { num, den }: Sums): void {
  const { phi, psi, lg, zn } = K.staged[q.k];
  const { FS, ragged } = rowSlice(K, q);
  const U = stateUnroll(FS);
  const perF = prefixGate(K.p, q.term.form as PrefixForm)?.perFeature ?? false;
  const S = stateRef(K, `state:S${q.k}`);
  const Z = stateRef(K, `state:z${q.k}`);
  const start = g.let('f_lo', `sl * ${FS}u`);
  g.for('f0', start, (f0) => `${f0} < ${start} + ${FS}u`, (l, f0) => {
    l.comment(`${q.term.name}: ${U} rows of S in flight`);
    const at = (f: string) => `((b * ${K.NS}u + s) * ${q.F}u + ${f}) * ${K.NR}u + col`;
    const rows = [...Array(U).keys()].map((u) => l.let(`s${u}`, `${S}[${at(ragged ? `min(${f0} + ${u}u, ${q.F - 1}u)` : `${f0} + ${u}u`)}]`));
    rows.forEach((su, u) => {
      const f = `${f0} + ${u}u`;
      l.block(ragged ? `if (${f} < ${q.F}u)` : '', (r) => {
        const sv = r.let('sv', `exp(${lg(perF ? f : '0u')}) * ${su} + ${psi(f)} * ${v}`);
        r.line(`${S}[${at(f)}] = ${sv}; ${Z}[${at(f)}] = ${zn(f)};`);
        r.line(`${num} = ${num} + ${phi(f)} * ${sv};`);
        r.line(`${den} = ${den} + ${phi(f)} * ${zn(f)};`);
      });
    });
  }, { step: (f0) => `${f0} += ${U}u` });
}

/** prefixTerm with this thread's rows of S in registers (loaded before the token loop, stored after it). */
function registerPrefixTerm(K: StepKernel, g: Block, q: StatePrefix, v: string, { num, den }: Sums): void {
  const { phi, psi, lg, zn } = K.staged[q.k];
  const { FS, ragged } = rowSlice(K, q);
  const perF = prefixGate(K.p, q.term.form as PrefixForm)?.perFeature ?? false;
  g.comment(`${q.term.name}: ${FS} rows of S in registers`);
  const { rows, open } = K.regs.get(q)!;
  rows.forEach((su, u) => {
    const f = `sl * ${FS}u + ${u}u`;
    g.block(ragged ? `if (${f} < ${q.F}u)` : '', (r) => {
      if (open) {
        // past_groups: the open group So collects ψ ⊗ v and joins S when the next group starts
        r.block(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u)`, (j) => j.line(`${su} += ${open[u]}; ${open[u]} = 0.0;`));
        r.line(`${open[u]} = ${open[u]} + ${psi(f)} * ${v};`);
      } else r.line(`${su} = exp(${lg(perF ? f : '0u')}) * ${su} + ${psi(f)} * ${v};`);
      r.line(`${num} = ${num} + ${phi(f)} * ${su};`);
      r.line(`${den} = ${den} + ${phi(f)} * ${zn(f)};`);
    });
  });
}

/** A past_groups term: the open group So collects ψ ⊗ v and joins S when the next group starts; num += φ·S. */
function openPrefixTerm(K: StepKernel, g: Block, q: StatePrefix, v: string, { num, den }: Sums): void {
  const { phi, psi, zn } = K.staged[q.k];
  const { FS } = rowSlice(K, q);
  const S = stateRef(K, `state:S${q.k}`);
  const So = stateRef(K, `state:So${q.k}`);
  const start = g.let('f_lo', `sl * ${FS}u`);
  g.for('f', start, (f) => `${f} < min(${start} + ${FS}u, ${q.F}u)`, (l, f) => {
    l.comment(q.term.name);
    const si = `((b * ${K.NS}u + s) * ${q.F}u + ${f}) * ${K.NR}u + col`;
    l.block(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u)`, (j) => j.line(`${S}[${si}] += ${So}[${si}]; ${So}[${si}] = 0.0;`));
    l.line(`${So}[${si}] += ${psi(f)} * ${v}; ${stateRef(K, `state:z${q.k}`)}[${si}] = ${zn(f)};`);
    l.line(`${num} = ${num} + ${phi(f)} * ${S}[${si}]; ${den} = ${den} + ${phi(f)} * ${zn(f)};`);
  });
}

/** A window or group term: this thread's lags lo + sl, lo + sl + slices, … read position pos − lag. */
function boundedTerm(K: StepKernel, g: Block, t: Term, { num, den, full }: Sums, resolve: Resolver): void {
  const x = K.bounded.get(t)!;
  const vr = K.st.rings.find((r) => r.id === t.value)!;
  g.for('lag', `${x.lo}u + sl`, (lag) => `${lag} <= min(${x.hi}u, pos)`, (l, lag) => {
    l.comment(t.name);
    const ja = l.let('ja', `pos - ${lag}`);
    l.line(`if (!(${maskCondition(t.mask, 'pos', ja)})) { continue; }`);
    const sv = x.scores
      ? l.let('sv', `${x.scores.name}[${lag} - ${x.lo}u]`)
      : atKey(K, l, ja, resolve, (a, r) => new ExprGen(K.p, K.sizes, r, { i: 'pos', j: ja }).value(a, t.score, full, ja));
    const vv = l.var('vv', '0.0');
    l.ifChain([
      [`${ja} < ${K.P0}`, (a) => a.line(`${vv} = ${stateRef(K, `state:ring${vr.id}`)}[${ringIndex(vr, K.st.ring, `${ja} % ${K.st.ring}u`, offset(K.p.nodes[t.value].type.axes, K.sizes, full))}];`)],
      [null, (a) => a.line(`${vv} = ${new ExprGen(K.p, K.sizes, resolve, { i: 'pos', j: ja }).value(a, t.value, full, ja)};`)],
    ]);
    l.line(`${num} = ${num} + ${sv} * ${vv};`);
    l.line(`${den} = ${den} + ${sv};`);
  }, { step: (lag) => `${lag} += ${K.split.slices}u` });
}
