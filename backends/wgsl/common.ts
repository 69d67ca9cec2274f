// Pieces every kernel generator shares: the standard buffers of a program (inputs, params, output), the
// bindings and resolver that read inputs and parameters from them, and the mask as a WGSL condition.
import type { Id, MaskAtom, Program } from '../../src/ir/types.ts';
import { offset, type Resolver, type Where } from './expr.ts';
import type { KernelBuilder } from './kernel-builder.ts';
import type { PlanBuffer } from './plan.ts';

export type Sizes = Readonly<Record<string, number>>;

export const count = (axes: readonly string[], sizes: Sizes) => axes.reduce((n, a) => n * sizes[a], 1);

export function programBuffers(p: Program, sizes: Sizes): PlanBuffer[] {
  const bufs: PlanBuffer[] = [];
  for (const d of p.inputs) {
    const per = count(d.axes, sizes);
    bufs.push({ name: `in:${d.name}`, role: 'input', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, ...d.axes.map((a) => sizes[a])] });
  }
  for (const d of p.params) {
    const per = count(d.axes, sizes);
    bufs.push({ name: `param:${d.name}`, role: 'param', floats: () => per, shape: () => d.axes.map((a) => sizes[a]) });
  }
  const per = count(p.outAxes, sizes);
  bufs.push({ name: 'out:o', role: 'output', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, ...p.outAxes.map((a) => sizes[a])] });
  return bufs;
}

/**
 * Declares the bindings of a program's inputs, parameters and materialised features ('feat:ID', read instead of
 * computing those nodes), in that order, and returns the resolver that reads them: token inputs and features at
 * row `row(where)` of their [b, t, …] buffers. A binding is bound once read (`always`: whether or not).
 */
export function programReader(
  kb: KernelBuilder,
  p: Program,
  sizes: Sizes,
  row: (where: Where) => string,
  opts: { readonly materialised?: ReadonlySet<Id>; readonly always?: boolean } = {},
): Resolver {
  const always = opts.always ?? false;
  const inputs = new Map(p.inputs.map((d) => [d.name, kb.storage(`in:${d.name}`, false, { always })]));
  const params = new Map(p.params.map((d) => [d.name, kb.storage(`param:${d.name}`, false, { always })]));
  const feats = new Map([...(opts.materialised ?? [])].sort((a, b) => a - b).map((id) => [id, kb.storage(`feat:${id}`, false)]));
  return (n, idx, where) => {
    const feat = feats.get(n.id);
    if (feat) return `${kb.use(feat)}[${offset(n.type.axes, sizes, idx, row(where))}]`;
    if (n.op === 'input') return `${kb.use(inputs.get(n.name)!)}[${offset(n.type.axes, sizes, idx, row(where))}]`;
    if (n.op === 'param') return `${kb.use(params.get(n.name)!)}[${offset(n.type.axes, sizes, idx)}]`;
    return null;
  };
}

/** WGSL boolean for "the mask admits (i, j)" (u32 positions; lags computed in i32). */
export function maskCondition(mask: readonly MaskAtom[], i: string, j: string): string {
  const lag = `(i32(${i}) - i32(${j}))`;
  const parts = mask.map((m) => {
    switch (m.kind) {
      case 'causal': return `${j} <= ${i}`;
      case 'window': return `${j} <= ${i} && ${lag} < ${m.size}`;
      case 'group': return `${j} <= ${i} && ${i} / ${m.size}u == ${j} / ${m.size}u`;
      case 'past_groups': return `${j} / ${m.size}u < ${i} / ${m.size}u`;
      case 'centered': return `${lag} >= ${-(m.size - 1 - Math.floor(m.size / 2))} && ${lag} <= ${Math.floor(m.size / 2)}`;
    }
  });
  return parts.map((x) => `(${x})`).join(' && ') || 'true';
}
