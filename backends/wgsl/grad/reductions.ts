// Reduce and pairs stages of a gradient program: sums over every token (and, for pairs, every admitted key
// position) into parameter-shaped tensors. Deterministic, without float atomics: one workgroup per output row
// sums in a fixed order — each invocation over a fixed stride of tokens, then a tree over the workgroup — so a
// gradient is the same bit for bit on every run.
//   reduce  out[…axes] = Σ_{b,t} expr(b, t)
//   pairs   out[…axes, a] = Σ_{b, i} Σ_{j ∈ M(i)} [index(i, j) = a] · contribution(i, j)[…axes]
//           (a convolution tap's gradient dw[h, l] = Σ_i dO_i ⊙ v_{i−l}, flash's per-lag bias): each invocation
//           keeps one accumulator per value of the scattered axis, each folded over the workgroup at the end.
import { graphAsProgram, type PairsStage, type ReduceStage } from '../../../src/ir/grad.ts';
import { lagRange } from '../../../src/ir/masks.ts';
import { count, maskCondition } from '../common.ts';
import { ExprGen, offset } from '../expr.ts';
import { KernelBuilder } from '../kernel-builder.ts';
import { grid } from '../plan.ts';
import type { Block } from '../wgsl-block.ts';
import type { Env } from './env.ts';
import type { GradKernel } from './plan.ts';
import { KernelBuffers, stageReader } from './reader.ts';

const WG = 64;

/** red[0] ← Σ_lid red[lid] by halving (red holds each invocation's value); every invocation reaches the end. */
function treeSum(b: Block, red: string): void {
  b.line('workgroupBarrier();');
  b.for('half', `${WG / 2}u`, (h) => `${h} > 0u`, (l, h) => {
    l.block(`if (lid < ${h})`, (s) => s.line(`${red}[lid] = ${red}[lid] + ${red}[lid + ${h}];`));
    l.line('workgroupBarrier();');
  }, { step: (h) => `${h} = ${h} / 2u` });
}

/** The reduce stage: one workgroup per element of its outputs (laid end to end). */
export function reduceKernel(env: Env, st: ReduceStage, label: string): GradKernel {
  let base = 0;
  const parts = st.outputs.map((o) => {
    const per = count(o.axes, env.sizes);
    const r = { o, base, per };
    base += per;
    return r;
  });
  const total = base;
  const kb = new KernelBuilder(WG, ['wid', 'lid', 'nwg']);
  const bufs = new KernelBuffers(kb, env, st.outputs.map((o) => o.tensor));
  const red = kb.workgroup('red', WG, 'each invocation’s partial sum').name;
  const program = graphAsProgram(st.name, st.graph);
  const main = kb.body;
  main.define('e', 'wid.x + wid.y * nwg.x');
  main.line(`if (e >= ${total}u) { return; }`);
  main.ifChain(
    parts.map(({ o, base: b0, per }) => [
      `e < ${b0 + per}u`,
      (arm: Block) => {
        const idx = arm.split(o.axes, env.sizes, `(e - ${b0}u)`, 'ix');
        const acc = arm.var('acc', '0.0');
        arm.for('u', 'lid', (u) => `${u} < dims.b * dims.pad`, (l, u) => {
          l.define('bb', `${u} / dims.pad`);
          const t = l.let('t', `${u} % dims.pad`);
          const gen = new ExprGen(program, env.sizes, stageReader({ env, buffers: bufs }, st.bindings, { reverse: false, batch: 'bb' }), { i: t, j: t });
          l.line(`${acc} = ${acc} + ${gen.value(l, o.id, idx, t)};`);
        }, { step: (u) => `${u} += ${WG}u` });
        arm.line(`${red}[lid] = ${acc};`);
        treeSum(arm, red);
        arm.block('if (lid == 0u)', (w) => w.line(`${bufs.out(o.tensor, offset(o.axes, env.sizes, idx))} = ${red}[0];`));
      },
    ] as const),
  );
  const kernel = kb.build({
    label,
    comment: [`reduce stage ${st.name}: ${st.why}`, `Σ over (b, t) of ${st.outputs.map((o) => o.tensor).join(', ')}, one workgroup per element`],
    workgroups: () => grid(total, 1),
  });
  return { ...kernel, pad: 1, stages: [st.name] };
}

/** A pairs stage: one workgroup per element of its output over every axis but the scattered one. */
export function pairsKernel(env: Env, st: PairsStage, label: string): GradKernel {
  const sizes = env.sizes;
  const rowAxes = st.axes.filter((a) => a !== st.axis);
  const rows = count(rowAxes, sizes);
  const A = sizes[st.axis];
  const kb = new KernelBuilder(WG, ['wid', 'lid', 'nwg']);
  const bufs = new KernelBuffers(kb, env, [st.writes]);
  const red = kb.workgroup('red', WG, 'each invocation’s partial sum of one tap').name;
  const program = graphAsProgram(st.name, st.graph);
  const r = lagRange(st.mask);
  const main = kb.body;
  main.define('row', 'wid.x + wid.y * nwg.x');
  main.line(`if (row >= ${rows}u) { return; }`);
  const idx = main.split(rowAxes, sizes, 'row', 'ix');
  const acc = main.var('acc', `array<f32, ${A}>()`, `array<f32, ${A}>`);
  main.for('u', 'lid', (u) => `${u} < dims.b * dims.pad`, (l, u) => {
    l.define('bb', `${u} / dims.pad`);
    l.define('i', `${u} % dims.pad`);
    const [lo, hi] = r ? [`${r[0]}`, `${r[1]}`] : ['0', 'i32(i)'];
    l.for('lag', lo, (lag) => `${lag} <= ${hi}`, (m, lag) => {
      const ji = m.let('ji', `i32(i) - ${lag}`);
      m.line(`if (${ji} < 0 || ${ji} >= i32(dims.pad)) { continue; }`);
      const j = m.let('j', `u32(${ji})`);
      m.line(`if (!(${maskCondition(st.mask, 'i', j)})) { continue; }`);
      const gen = new ExprGen(program, sizes, stageReader({ env, buffers: bufs }, st.bindings, { reverse: false, batch: 'bb' }), { i: 'i', j });
      const ix = m.let('tap', `i32(round(${gen.value(m, st.index, {}, j)}))`);
      m.block(`if (${ix} >= 0 && ${ix} < ${A})`, (s) => s.line(`${acc}[${ix}] = ${acc}[${ix}] + ${gen.value(s, st.contribution, idx, j)};`));
    }, { type: 'i32' });
  }, { step: (u) => `${u} += ${WG}u` });
  main.for('a', '0u', (a) => `${a} < ${A}u`, (l, a) => {
    l.line(`${red}[lid] = ${acc}[${a}];`);
    treeSum(l, red);
    l.block('if (lid == 0u)', (w) => w.line(`${bufs.out(st.writes, offset(st.axes, sizes, { ...idx, [st.axis]: a }))} = ${red}[0];`));
    l.line('workgroupBarrier();');
  });
  const kernel = kb.build({
    label,
    comment: [`pairs stage ${st.name}: ${st.why}`, `one workgroup per row of ${st.writes} over [${rowAxes.join(', ')}], ${A} taps each`],
    workgroups: () => grid(rows, 1),
  });
  return { ...kernel, pad: 1, stages: [st.name] };
}
