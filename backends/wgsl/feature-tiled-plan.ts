// The fused plan of a program with a term whose features fit no workgroup's memory (based's Taylor map at d 64):
// the tiled terms run over tiles of features (feature-tiled.ts; register-blocked by default), every other term in
// a chunk kernel of its own at a schedule of its own (based's window term wants a smaller chunk than the tiles),
// computing its features inline, and one last kernel sums each tiled term's tiles in order, adds the other parts
// and normalises each output item — what the unfused plan does in a tile sum and a combine, without writing and
// re-reading the summed [b, t, out] numerator and denominator. Three launches for based rather than four, and no
// feature kernels. No atomics: the tiles are added in a fixed order, so runs repeat bit for bit.
// (One launch for the tiles and the window term would need one shader with two bodies; the window kernel is a few
// hundred workgroups beside the tiles' thousands, so it is left a launch of its own.)
import type { Program, Term } from '../../src/ir/types.ts';
import { chunkKernel, type ChunkSchedule } from './chunked.ts';
import { itemsOver, valueGroups } from './chunked/analysis.ts';
import { count, programBuffers, type Sizes } from './common.ts';
import { offset } from './expr.ts';
import { featureTiles, tileable, type FeatureTiledSchedule } from './feature-tiled.ts';
import { flatIndex, KernelBuilder } from './kernel-builder.ts';
import { grid, type Kernel, type Plan, type PlanBuffer } from './plan.ts';

/** A part of an output item: a [b, t, out] numerator and denominator, or a tiled term's [tile, b, t, …] partials. */
type Part =
  | { readonly item: number; readonly kind: 'whole'; readonly num: string; readonly den: string }
  | { readonly item: number; readonly kind: 'tiles'; readonly num: string; readonly den: string; readonly tiles: number; readonly head: readonly string[]; readonly NH: number };

/** The item (index into p.output) that term t is in. */
const itemOf = (p: Program, t: Term) => p.output.findIndex((o) => (o.kind === 'term' ? [o.term] : o.terms).includes(t.name));

/**
 * The plan: `tile` for the tiled terms (every term `tileable` admits), `schedule` for the others. Each tiled term
 * must be the only term of its kernel (it is: the tiled kernel computes one term), and in one output item.
 */
export function featureTiledFusedPlan(p: Program, sizes: Sizes, schedule: ChunkSchedule, tile: FeatureTiledSchedule, prefetch?: boolean): Plan {
  const buffers: PlanBuffer[] = programBuffers(p, sizes);
  const kernels: Kernel[] = [];
  const per = count(p.outAxes, sizes);
  const parts: Part[] = [];
  const tiled = p.terms.filter(tileable);
  if (!tiled.length) throw new Error(`${p.name}: no term runs over tiles of features (a plain causal prefix term over a feature axis)`);
  for (const t of tiled) {
    const x = featureTiles(p, sizes, t, tile, `${p.name}.tiles.${t.name}`);
    kernels.push(x.kernel);
    buffers.push(...x.buffers);
    parts.push({ item: itemOf(p, t), kind: 'tiles', num: x.tileNum, den: x.tileDen, tiles: x.shape.NFT, head: x.shape.head, NH: x.shape.NH });
  }
  // the other terms grouped by the values they read, as the fused plan groups them; features inline
  for (const terms of valueGroups(p, p.terms.filter((t) => !tileable(t)))) {
    const label = `${p.name}.chunked.${terms.map((t) => t.name).join('+')}`;
    const items = itemsOver(p.output, terms);
    kernels.push(chunkKernel({ program: p, sizes, terms, items, partial: true, schedule, materialised: new Set(), label, prefetch }));
    items.forEach((it, g) => {
      const item = p.output.findIndex((o) => (o.kind === 'term' ? [o.term] : o.terms).some((nm) => (it.kind === 'term' ? [it.term] : it.terms).includes(nm)));
      const num = `${label}:part${g}:num`;
      const den = `${label}:part${g}:den`;
      for (const name of [num, den]) buffers.push({ name, role: 'scratch', floats: (b, t) => b * t * per, shape: (b, t) => [b, t, per] });
      parts.push({ item, kind: 'whole', num, den });
    });
  }
  kernels.push(sumAndCombine(p, sizes, per, parts));
  return {
    variant: p.name,
    form: 'chunked',
    kernels,
    buffers,
    outAxes: p.outAxes,
    sizes,
    schedule: { chunk: schedule.chunk, cols: schedule.cols, threads: schedule.threads, featureTile: tile.featureTile },
  };
}

/** o[b, t, out] = Σ_items: Σ its parts' numerators / (Σ its parts' denominators + eps), tiles added in order. */
function sumAndCombine(p: Program, sizes: Sizes, per: number, parts: readonly Part[]): Kernel {
  const WG = 64;
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const main = kb.body;
  const flat = flatIndex(main);
  main.line(`if (${flat} >= dims.b * dims.t * ${per}u) { return; }`);
  const row = main.let('row', `${flat} / ${per}u`);
  const idx = main.split(p.outAxes, sizes, `${flat} % ${per}u`, 'ox');
  const o = main.var('o', '0.0');
  p.output.forEach((it, k) => {
    const mine = parts.filter((x) => x.item === k);
    const num = main.var('num', '0.0');
    const den = main.var('den', '0.0');
    for (const x of mine) {
      const n = kb.use(kb.storage(x.num, false, { always: true }));
      const d = kb.use(kb.storage(x.den, false, { always: true }));
      if (x.kind === 'whole') {
        main.line(`${num} += ${n}[${flat}];`);
        main.line(`${den} += ${d}[${flat}];`);
        continue;
      }
      const h = main.let('hoff', offset(x.head, sizes, idx));
      main.for('ft', '0u', (ft) => `${ft} < ${x.tiles}u`, (b, ft) => {
        b.line(`${num} += ${n}[${ft} * dims.b * dims.t * ${per}u + ${flat}];`);
        b.line(`${den} += ${d}[(${ft} * dims.b * dims.t + ${row}) * ${x.NH}u + ${h}];`);
      });
    }
    main.line(it.kind === 'norm' ? `${o} += ${num} / (${den} + ${it.eps});` : `${o} += ${num};`);
  });
  main.line(`${kb.use(kb.storage('out:o', true, { always: true }))}[${flat}] = ${o};`);
  return kb.build({
    label: `${p.name}.tile-sum+combine`,
    comment: [`${p.name}: sum the feature tiles' partial numerators and denominators in order, add the other terms' parts, normalise each item`],
    workgroups: (b, t) => grid(b * t * per, WG),
    launch: { kind: 'grid', perToken: per, size: WG },
  });
}
