// Softmax attention's gradient stages on the GPU (passes/autodiff.ts derives them), in the parallel form by rows:
//
//   lse stage   lse[b, i, r] = m + log Σ_{j ≤ i} exp(logit(i, j)[r] − m), one invocation per (b, r, i) keeping the
//               running max m and the sum rescaled to it as it walks j = 0 … i (the flash forward's recurrence),
//               so no exp of an unnormalised logit is ever summed;
//   term stage  of quadratic terms under the unbounded causal mask (scores exp(logit − lse_i) · …):
//               o[b, i, r, c] = Σ_terms Σ_{j ≤ i} s(i, j)[r] v_j[r, c], one invocation per (b, r, i), r over the
//               output axes every score has and c over the rest (held in a private array), so each score is
//               computed once per (i, j) and multiplies all of its value's columns.
//
// Invocations run i fastest: the 64 of a workgroup are 64 consecutive rows of one (b, r), which read the same key
// row j at the same time. Values at the row's own position that the scores read (lse_i, the virtual dZ_i) are
// computed once before the walk. The naive kernel (term-kernels.ts) is the general fallback, one invocation per
// output element.
import type { LseStage } from '../../../src/ir/grad.ts';
import { operands, type Id, type Program, type Term } from '../../../src/ir/types.ts';
import { count } from '../common.ts';
import { ExprGen, offset, type Index, type Positions } from '../expr.ts';
import { flatIndex, KernelBuilder } from '../kernel-builder.ts';
import { grid } from '../plan.ts';
import type { Block } from '../wgsl-block.ts';
import type { Env } from './env.ts';
import type { GradKernel } from './plan.ts';
import { KernelBuffers, stageReader } from './reader.ts';
import type { TermGroup } from './term-kernels.ts';

const WG = 64;
/** Value columns one invocation holds at most (a private array); a stage with more runs naively. */
const MAX_COLUMNS = 256;

/** The output axes every term's score has (r) and the rest (c), or null when the rows kernel does not suit the group. */
export function rowAxes(g: TermGroup, sizes: Readonly<Record<string, number>>): { rows: string[]; cols: string[] } | null {
  const p = g.program;
  if (g.pad !== 1 || !g.terms.every((t) => t.form.kind === 'quadratic' && !t.noncausal && t.mask.length === 1 && t.mask[0].kind === 'causal')) return null;
  const rows = p.outAxes.filter((a) => g.terms.every((t) => p.nodes[t.score].type.axes.includes(a)));
  const cols = p.outAxes.filter((a) => !rows.includes(a));
  return count(cols, sizes) <= MAX_COLUMNS ? { rows, cols } : null;
}

/** The prologue every rows kernel shares: flat → (b, r, i) with i fastest; returns r's index over `rows`. */
function rowPrologue(main: Block, rows: readonly string[], sizes: Readonly<Record<string, number>>): Index {
  const NR = count(rows, sizes);
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * dims.t * ${NR}u) { return; }`);
  main.define('i', `${flat} % dims.t`);
  const r = main.let('r', `(${flat} / dims.t) % ${NR}u`);
  main.define('b', `${flat} / (dims.t * ${NR}u)`);
  return main.split(rows, sizes, r, 'ir');
}

/** Nodes the score reads at the row's own position whose axes the row fixes: computed once, before the walk over j. */
function hoistable(p: Program, root: Id, rows: readonly string[]): Id[] {
  const out = new Set<Id>();
  const seen = new Set<Id>();
  const visit = (id: Id) => {
    if (seen.has(id)) return;
    seen.add(id);
    const n = p.nodes[id];
    if (n.op === 'at' && n.which === 'i' && n.type.axes.every((a) => rows.includes(a))) return void out.add(id);
    for (const x of operands(n)) visit(x);
  };
  visit(root);
  return [...out];
}

/** A term group of quadratic causal terms (rowAxes not null) as one rows launch. */
export function rowsTermKernel(env: Env, g: TermGroup, label: string): GradKernel {
  const p = g.program;
  const sizes = env.sizes;
  const axes = rowAxes(g, sizes);
  if (!axes || g.out.kind !== 'sum') throw new Error(`internal: ${label}: not a rows stage`);
  const tensor = g.out.tensor;
  const NC = count(axes.cols, sizes);
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const bufs = new KernelBuffers(kb, env, g.writes);
  const read = stageReader({ env, buffers: bufs }, g.bindings, { reverse: g.time === 'reverse', batch: 'b' });
  const main = kb.body;
  const idxR = rowPrologue(main, axes.rows, sizes);
  const acc = main.var('acc', `array<f32, ${NC}u>()`, `array<f32, ${NC}u>`);
  const pos = (j: string): Positions => (g.negated ? { i: 'i', j, offset: '-f32(dims.t - 1u)' } : { i: 'i', j });
  for (const t of g.terms) termRows(main, p, t, idxR, axes.cols, sizes, acc, pos, read);
  const row = g.time === 'reverse' ? main.let('tw', 'dims.t - 1u - i') : 'i';
  const store = (b: Block) => {
    b.for('c', '0u', (c) => `${c} < ${NC}u`, (l, c) => {
      const idx = { ...idxR, ...l.split(axes.cols, sizes, c, 'ic') };
      l.line(`${bufs.out(tensor, offset(p.outAxes, sizes, idx, `b * dims.pad + ${row}`))} = ${acc}[${c}];`);
    });
  };
  if (g.time === 'reverse') main.block(`if (${row} < dims.pad)`, store);
  else store(main);
  const NR = count(axes.rows, sizes);
  const kernel = kb.build({
    label,
    comment: [`${g.stages.join(', ')} of ${p.name} by rows (parallel form, ${g.time} time): each score once per (i, j), times ${NC} value columns`],
    workgroups: (b, t) => grid(b * t * NR, WG),
    launch: { kind: 'grid', perToken: NR, size: WG },
  });
  return { ...kernel, pad: 1, stages: g.stages };
}

/** acc[c] += Σ_{j ≤ i} s(i, j)[r] v_j[r, c] for one term. */
function termRows(
  main: Block, p: Program, t: Term, idxR: Index, cols: readonly string[], sizes: Readonly<Record<string, number>>, acc: string,
  pos: (j: string) => Positions, read: ConstructorParameters<typeof ExprGen>[2],
): void {
  const rows = Object.keys(idxR);
  const NC = count(cols, sizes);
  main.comment(`term ${t.name}`);
  main.block('', (blk) => {
    // one generator at (i, j): what the score reads at i alone is computed here, before the walk, and found by the
    // loop body through the enclosing scopes
    const gen = new ExprGen(p, sizes, read, pos('j'));
    for (const id of hoistable(p, t.score, rows)) gen.value(blk, id, idxR, 'i');
    blk.for('j', '0u', (j) => `${j} <= i`, (l, j) => {
      const s = gen.value(l, t.score, idxR, 'i');
      l.for('c', '0u', (c) => `${c} < ${NC}u`, (lc, c) => {
        const idx = { ...idxR, ...lc.split(cols, sizes, c, 'ic') };
        lc.line(`${acc}[${c}] = ${acc}[${c}] + ${s} * ${gen.value(lc, t.value, idx, j)};`);
      });
    }, { fixed: true });
  });
}

/** The lse stage: the running max and sum of exp(logit) over j ≤ i, per (b, r, i). */
export function lseKernel(env: Env, st: LseStage, passed: Program, label: string): GradKernel {
  const t = passed.terms[0];
  if (t.form.kind !== 'softmax') throw new Error(`internal: ${label}: the passes do not classify ${st.name}'s term as softmax attention`);
  const logit = t.form.logit;
  const sizes = env.sizes;
  const rows = passed.outAxes;
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const bufs = new KernelBuffers(kb, env, [st.writes]);
  const read = stageReader({ env, buffers: bufs }, st.bindings, { reverse: false, batch: 'b' });
  const main = kb.body;
  const idx = rowPrologue(main, rows, sizes);
  const m = main.var('m', '-3.4e38');
  const z = main.var('z', '0.0');
  main.for('j', '0u', (j) => `${j} <= i`, (l, j) => {
    const x = new ExprGen(passed, sizes, read, { i: 'i', j }).value(l, logit, idx, 'i');
    const mj = l.let('mj', `max(${m}, ${x})`);
    l.line(`${z} = ${z} * exp(${m} - ${mj}) + exp(${x} - ${mj});`);
    l.line(`${m} = ${mj};`);
  });
  main.line(`${bufs.out(st.writes, offset(rows, sizes, idx, 'b * dims.pad + i'))} = ${m} + log(${z});`);
  const NR = count(rows, sizes);
  const kernel = kb.build({
    label,
    comment: [`lse stage ${st.name}: ${st.why}`],
    workgroups: (b, t) => grid(b * t * NR, WG),
    launch: { kind: 'grid', perToken: NR, size: WG },
  });
  return { ...kernel, pad: 1, stages: [st.name] };
}
