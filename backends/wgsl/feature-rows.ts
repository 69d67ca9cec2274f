// A feature kernel (lower.ts's featureKernel: a feature node materialised as [b, t, …axes], for the unfused plan
// and the fused plan's prologue) for a node whose elements share row quantities (row-quantities.ts): one
// workgroup per token stages them in workgroup memory, level by level, then its invocations compute the node's
// elements reading them. One invocation per element, as for every other feature node, recomputed them per element:
// hedgehog's softmax(q @ W, m) over 2m features redid m dot products of length d twice for each feature (F·m·d a
// token); here the token's q @ W is m·d, each softmax's max and Σ exp 2m, each feature a load and an exp.
import type { Id, Node, Program } from '../../src/ir/types.ts';
import { count, programReader, type Sizes } from './common.ts';
import { ExprGen, offset, type Resolver, type StatsResolver } from './expr.ts';
import { KernelBuilder } from './kernel-builder.ts';
import { grid, type Kernel } from './plan.ts';
import { rowQuantities, rowWidth, type RowQuantity } from './row-quantities.ts';

/** Invocations per token. */
const ROW_WG = 64;
/** The most workgroup memory the staged quantities may take: WebGPU's guaranteed 16 KB (else per element). */
const MAX_ROW_FLOATS = 4096;

/**
 * The row quantities of feature node `id` over all their axes (a token's row spans every head), or none. What is
 * staged is decided as in a chunk kernel, whose workgroups fix the head axes (the terms' score axes): a reduction
 * down to head axes is one value a head (llama's ‖q‖ over d, which each of a head's d elements had recomputed: 64
 * loads an element) as well as one that a reduction or softmax reads along an axis (hedgehog's q @ W).
 */
export function featureRowQuantities(p: Program, sizes: Sizes, id: Id): RowQuantity[] {
  const head = p.outAxes.filter((a) => p.terms.some((t) => p.nodes[t.score].type.axes.includes(a)));
  const qs = rowQuantities(p, [id], head, new Set(), true);
  const floats = qs.reduce((s, q) => s + (q.kind === 'stats' ? 2 : 1) * rowWidth(q, sizes), 0);
  return floats <= MAX_ROW_FLOATS ? qs : [];
}

/** Materialises node `id` into binding `feat:ID`, one workgroup per token; null when it has no row quantities. */
export function featureRowKernel(p: Program, sizes: Sizes, id: Id, label: string, comment: string): Kernel | null {
  const quantities = featureRowQuantities(p, sizes, id);
  if (!quantities.length) return null;
  const n = p.nodes[id];
  const per = count(n.type.axes, sizes);
  const kb = new KernelBuilder(ROW_WG, ['wid', 'lid', 'nwg']);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`);
  const feat = kb.use(kb.storage(`feat:${id}`, true, { always: true }));
  const main = kb.body;
  const token = main.let('token', 'wid.x + wid.y * nwg.x');
  main.line(`if (${token} >= dims.b * dims.t) { return; }`);
  main.define('t', `${token} % dims.t`);
  main.define('b', `${token} / dims.t`);

  // Quantities staged so far (the resolvers read them at this token), filled level by level.
  const values = new Map<Id, { q: RowQuantity; name: string }>();
  const stats = new Map<Id, { q: RowQuantity; max: string; sum: string }>();
  const resolve: Resolver = (x, idx, where, at) => {
    const s = values.get(x.id);
    return s && where === 't' ? `${s.name}[${offset(s.q.axes, sizes, idx)}]` : read(x, idx, where, at);
  };
  const statsOf: StatsResolver = (x, idx, where) => {
    const s = stats.get(x.id);
    return s && where === 't' ? { max: `${s.max}[${offset(s.q.axes, sizes, idx)}]`, sum: `${s.sum}[${offset(s.q.axes, sizes, idx)}]` } : null;
  };
  const gen = () => new ExprGen(p, sizes, resolve, { i: 't', j: 't' }, statsOf);

  const levels = Math.max(...quantities.map((q) => q.level));
  for (let level = 1; level <= levels; level++) {
    const staged = quantities.filter((q) => q.level === level).map((q) => {
      const W = rowWidth(q, sizes);
      const what = `${q.kind === 'stats' ? 'softmax ' : ''}%${q.id} at this token${q.axes.length ? ` [${q.axes.join(', ')}]` : ''}`;
      const arrays = q.kind === 'stats' ? [kb.workgroup(`smx${q.id}`, W, `max of ${what}`), kb.workgroup(`ssm${q.id}`, W, `Σ exp of ${what}`)] : [kb.workgroup(`red${q.id}`, W, what)];
      main.strided('x', `${W}u`, (b, x) => {
        const idx = b.split(q.axes, sizes, x, `rx${q.id}`);
        if (q.kind === 'stats') {
          const s = gen().softmaxStats(b, p.nodes[q.id] as Extract<Node, { op: 'softmax' }>, idx, 't');
          b.line(`${arrays[0].name}[${x}] = ${s.max};`);
          b.line(`${arrays[1].name}[${x}] = ${s.sum};`);
        } else b.line(`${arrays[0].name}[${x}] = ${gen().value(b, q.id, idx, 't')};`);
      });
      return { q, arrays };
    });
    main.line('workgroupBarrier();');
    for (const { q, arrays } of staged) {
      if (q.kind === 'stats') stats.set(q.id, { q, max: arrays[0].name, sum: arrays[1].name });
      else values.set(q.id, { q, name: arrays[0].name });
    }
  }
  main.strided('e', `${per}u`, (b, e) => {
    const idx = b.split(n.type.axes, sizes, e, 'ix');
    b.line(`${feat}[${token} * ${per}u + ${e}] = ${gen().value(b, id, idx, 't')};`);
  });
  return kb.build({
    label,
    comment: [comment, `one workgroup per token: its row quantities (${quantities.map((q) => `%${q.id}${q.kind === 'stats' ? ' max, Σ exp' : ''}`).join('; ')}) staged once`],
    workgroups: (b, t) => grid(b * t * ROW_WG, ROW_WG),
    launch: { kind: 'grid', perToken: ROW_WG, size: ROW_WG },
  });
}
