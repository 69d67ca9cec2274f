// Pieces every kernel generator shares: the standard buffers of a program (inputs, params, output) and
// the resolver that reads inputs and parameters from them.
import type { Program } from '../../src/ir/types.ts';
import { offset, type Index, type Resolver } from './expr.ts';
import { wgslName, type PlanBuffer } from './plan.ts';

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

/** Reads inputs at (batch `b`, position `where`) and parameters straight from their buffers. */
export function globalResolver(p: Program, sizes: Sizes, batch = 'b'): Resolver {
  return (n, idx: Index, where) => {
    if (n.op === 'input') return `${wgslName(`in:${n.name}`)}[${offset(n.type.axes, sizes, idx, `${batch} * dims.t + ${where}`)}]`;
    if (n.op === 'param') return `${wgslName(`param:${n.name}`)}[${offset(n.type.axes, sizes, idx)}]`;
    return null;
  };
}

/** WGSL lines that split a flat index over `axes` into one u32 per axis (named ix_AXIS). */
export function unflatten(axes: readonly string[], sizes: Sizes, flat: string, indent = '  '): { code: string; idx: Record<string, string> } {
  const idx: Record<string, string> = {};
  const lines: string[] = [];
  let stride = 1;
  for (let k = axes.length - 1; k >= 0; k--) {
    const a = axes[k];
    const name = `ix_${a}`;
    lines.unshift(`${indent}let ${name} = (${flat} / ${stride}u) % ${sizes[a]}u;`);
    idx[a] = name;
    stride *= sizes[a];
  }
  return { code: lines.join('\n'), idx };
}

/** WGSL boolean for "the mask admits (i, j)" (u32 positions; lags computed in i32). */
export function maskCondition(mask: readonly import('../../src/ir/types.ts').MaskAtom[], i: string, j: string): string {
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
