// The two closures of a plan that the emitted module must write out as code, read from the plan's structure:
// each kernel's workgroup count (Kernel.launch) and each buffer's size (from its role and what it holds).
// `checkFormulas` then compares them with the plan's closures, so a kernel builder that changes its launch
// without its `launch` data fails at emit time rather than on a user's GPU.
import type { Program } from '../../src/ir/types.ts';
import { grid, type Kernel, type Plan, type PlanBuffer } from '../wgsl/plan.ts';

export type LaunchFormula = NonNullable<Kernel['launch']>;

/** A buffer holds b·t·perToken floats ([b, t, …dims]) or a fixed count ([…dims]). */
export type BufferFormula =
  | { readonly kind: 'perToken'; readonly perToken: number; readonly dims: readonly number[]; readonly axes: readonly string[] }
  | { readonly kind: 'fixed'; readonly floats: number; readonly dims: readonly number[]; readonly axes: readonly string[] };

export function launchOf(k: Kernel): LaunchFormula {
  if (!k.launch) throw new Error(`kernel ${k.label} has no launch formula (Kernel.launch): set it where the kernel is built so the TypeScript emitter can write it out`);
  return k.launch;
}

export function launchSize(l: LaunchFormula, b: number, t: number): [number, number, number] {
  if (l.kind === 'grid') return grid(b * t * l.perToken, l.size);
  return l.kind === 'blocks' ? [l.x * Math.ceil(t / l.block), b, 1] : [l.x, b, 1];
}

const product = (xs: readonly number[]) => xs.reduce((a, x) => a * x, 1);

export function bufferFormula(plan: Plan, p: Program, buf: PlanBuffer): BufferFormula {
  const sizes = plan.sizes;
  const perToken = (axes: readonly string[]): BufferFormula => {
    const dims = axes.map((a) => sizes[a]);
    return { kind: 'perToken', perToken: product(dims), dims, axes };
  };
  const [kind, ...rest] = buf.name.split(':');
  const what = rest.join(':');
  switch (buf.role) {
    case 'input': {
      const d = p.inputs.find((x) => x.name === what);
      if (d) return perToken(d.axes);
      break;
    }
    case 'param': {
      const d = p.params.find((x) => x.name === what);
      if (d) {
        const dims = d.axes.map((a) => sizes[a]);
        return { kind: 'fixed', floats: product(dims), dims, axes: d.axes };
      }
      break;
    }
    case 'output':
      if (buf.name === 'out:o') return perToken(p.outAxes);
      break;
    case 'scratch':
      // feat:ID materialises node ID as [b, t, …its axes]; LABEL:partG:num/den are [b, t, …outAxes] partial sums.
      if (kind === 'feat' && /^\d+$/.test(what) && p.nodes[Number(what)]) return perToken(p.nodes[Number(what)].type.axes);
      if (/:part\d+:(num|den)$/.test(buf.name)) return perToken(p.outAxes);
      break;
    case 'state':
      break;
  }
  throw new Error(`buffer ${buf.name} (${buf.role}): the TypeScript emitter has no size formula for it (plans with an exported decoding state are not emitted yet)`);
}

/** Compares the derived formulas with the plan's own closures at shapes that also cross the 65535 fold. */
export function checkFormulas(plan: Plan, p: Program): void {
  const points: [number, number][] = [[1, 1], [2, 37], [3, 64], [7, 100_003]];
  for (const k of plan.kernels) {
    const l = launchOf(k);
    for (const [b, t] of points) {
      const want = k.workgroups(b, t);
      const got = launchSize(l, b, t);
      if (got.join() !== want.join()) throw new Error(`kernel ${k.label}: launch ${JSON.stringify(l)} gives [${got}] at b=${b}, t=${t}, but the kernel dispatches [${want}]`);
    }
  }
  for (const buf of plan.buffers) {
    const f = bufferFormula(plan, p, buf);
    for (const [b, t] of points) {
      const got = f.kind === 'perToken' ? b * t * f.perToken : f.floats;
      if (got !== buf.floats(b, t)) throw new Error(`buffer ${buf.name}: derived size ${got} at b=${b}, t=${t}, but the plan allocates ${buf.floats(b, t)}`);
    }
  }
}
