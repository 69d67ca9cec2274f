// What both feature-tiled kernels (feature-tiled.ts, feature-tiled-blocked.ts) share: the schedule, which terms tile,
// the tiled term's axes, and where a tile kernel's workgroup sits.
import type { Program, Term } from '../../src/ir/types.ts';
import { count, type Sizes } from './common.ts';
import type { KernelBuilder } from './kernel-builder.ts';

export interface FeatureTiledSchedule {
  readonly chunk: number; // C
  readonly cols: number; // R: value columns per workgroup
  readonly threads: number;
  readonly featureTile: number; // FT: features per workgroup
  /** The register-blocked kernel (feature-tiled-blocked.ts) rather than the plain one below. */
  readonly blocked?: boolean;
}

/** A plain causal prefix term (no decay, no group or window) over a feature axis: its state adds up over features. */
export function tileable(t: Term): boolean {
  return t.form.kind === 'prefix' && t.form.feature !== null && t.form.decay === null && !t.noncausal && t.mask.length === 1 && t.mask[0].kind === 'causal';
}

/** The tiled kernel's axes: head (the score's axes), value columns (the other output axes) and the feature tiles. */
export function tiledShape(p: Program, sizes: Sizes, t: Term, s: FeatureTiledSchedule) {
  if (t.form.kind !== 'prefix' || t.form.feature === null) throw new Error(`internal: ${t.name} is not a prefix term over a feature axis`);
  const head = p.nodes[t.score].type.axes;
  const rest = p.outAxes.filter((a) => !head.includes(a));
  const NR = count(rest, sizes);
  const R = Math.min(s.cols, NR);
  const F = sizes[t.form.feature];
  const FT = Math.min(s.featureTile, F);
  return { form: t.form, feature: t.form.feature, head, rest, NH: count(head, sizes), NR, R, RT: Math.ceil(NR / R), F, FT, NFT: Math.ceil(F / FT), C: s.chunk };
}

/**
 * A tile kernel's partial outputs and where its workgroup sits: sequence b = wid.y; wid.x = (head slice hs, column
 * tile rt, feature tile ft), feature tiles fastest (the tile sum reads them in order).
 */
export function tileWorkgroup(kb: KernelBuilder, sizes: Sizes, a: ReturnType<typeof tiledShape>, numBuf: string, denBuf: string) {
  const num = kb.use(kb.storage(numBuf, true, { always: true }));
  const den = kb.use(kb.storage(denBuf, true, { always: true }));
  const main = kb.body;
  main.define('b', 'wid.y');
  const ft = main.let('ft', `wid.x % ${a.NFT}u`);
  const rt = main.let('rt', `(wid.x / ${a.NFT}u) % ${a.RT}u`);
  const hs = main.let('hs', `wid.x / ${a.NFT * a.RT}u`);
  const hIdx = main.split(a.head, sizes, hs, 'hx');
  return { num, den, main, ft, rt, hs, hIdx };
}
