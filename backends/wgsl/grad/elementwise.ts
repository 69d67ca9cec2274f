// Map and params stages of a gradient program: elementwise kernels, one invocation per output element.
//   map     out[b, t, …axes] = expr(b, t)   for every stored output of the stage, in one launch (the flat index
//           runs over b, t and the outputs' elements one after another);
//   params  out[…axes] = expr, once — the final parameter gradients, written or (a trainer's buffers) added into.
import { graphAsProgram, type MapStage, type ParamsStage, type StageOutput } from '../../../src/ir/grad.ts';
import { count } from '../common.ts';
import { ExprGen, offset } from '../expr.ts';
import { flatIndex, KernelBuilder } from '../kernel-builder.ts';
import { grid } from '../plan.ts';
import type { Block } from '../wgsl-block.ts';
import type { Env } from './env.ts';
import type { GradKernel } from './plan.ts';
import { KernelBuffers, stageReader } from './reader.ts';

const WG = 64;

/** The outputs' elements laid end to end: output k's element e sits at base_k + e. */
function layout(env: Env, outputs: readonly StageOutput[]): { o: StageOutput; base: number; per: number }[] {
  let base = 0;
  return outputs.map((o) => {
    const per = count(o.axes, env.sizes);
    const r = { o, base, per };
    base += per;
    return r;
  });
}

/** `if (e in output k's range) { … }` for each output, with the element's index over the output's axes. */
function eachOutput(env: Env, body: Block, e: string, parts: ReturnType<typeof layout>, emit: (b: Block, o: StageOutput, idx: Record<string, string>) => void): void {
  body.ifChain(
    parts.map(({ o, base, per }) => [
      `${e} < ${base + per}u`,
      (b: Block) => emit(b, o, b.split(o.axes, env.sizes, `(${e} - ${base}u)`, 'ix')),
    ] as const),
  );
}

/** A map stage's stored outputs (`outputs`; its virtual ones are computed by their readers). */
export function mapKernel(env: Env, st: MapStage, outputs: readonly StageOutput[], label: string): GradKernel {
  const parts = layout(env, outputs);
  const per = parts.reduce((n, p) => n + p.per, 0);
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const bufs = new KernelBuffers(kb, env, outputs.map((o) => o.tensor));
  const program = graphAsProgram(st.name, st.graph);
  const gen = new ExprGen(program, env.sizes, stageReader({ env, buffers: bufs }, st.bindings, { reverse: false, batch: 'b' }), { i: 't', j: 't' });
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * dims.pad * ${per}u) { return; }`);
  const e = main.let('e', `${flat} % ${per}u`);
  main.define('t', `(${flat} / ${per}u) % dims.pad`);
  main.define('b', `${flat} / (${per}u * dims.pad)`);
  eachOutput(env, main, e, parts, (b, o, idx) => {
    const v = gen.value(b, o.id, idx, 't');
    b.line(`${bufs.out(o.tensor, offset(o.axes, env.sizes, idx, 'b * dims.pad + t'))} = ${v};`);
  });
  const kernel = kb.build({
    label,
    comment: [`map stage ${st.name}: ${st.why}`, `writes ${outputs.map((o) => o.tensor).join(', ')} at every (b, t)`],
    workgroups: (b, t) => grid(b * t * per, WG),
    launch: { kind: 'grid', perToken: per, size: WG },
  });
  return { ...kernel, pad: 1, stages: [st.name] };
}

/** The params stage: each parameter's gradient, written (or added into its buffer when `accumulate`). */
export function paramsKernel(env: Env, st: ParamsStage, accumulate: boolean, label: string): GradKernel {
  const parts = layout(env, st.outputs);
  const per = parts.reduce((n, p) => n + p.per, 0);
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const bufs = new KernelBuffers(kb, env, st.outputs.map((o) => o.tensor));
  const program = graphAsProgram(st.name, st.graph);
  const gen = new ExprGen(program, env.sizes, stageReader({ env, buffers: bufs }, st.bindings, { reverse: false, batch: '0u' }), { i: '0u', j: '0u' });
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= ${per}u) { return; }`);
  eachOutput(env, main, flat, parts, (b, o, idx) => {
    const v = gen.value(b, o.id, idx, '0u');
    const at = bufs.out(o.tensor, offset(o.axes, env.sizes, idx));
    b.line(accumulate ? `${at} = ${at} + ${v};` : `${at} = ${v};`);
  });
  const kernel = kb.build({
    label,
    comment: [`params stage ${st.name}: ${st.why}`, `${accumulate ? 'adds into' : 'writes'} ${st.outputs.map((o) => o.tensor).join(', ')}`],
    workgroups: () => grid(per, WG),
  });
  return { ...kernel, pad: 1, stages: [st.name] };
}
