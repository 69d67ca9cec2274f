// The parallel form on the GPU: every output element loops over every admitted key position and evaluates
// the score as written. O(t²): the baseline the chunked kernels are measured against, never the default.
import { lagRange } from '../../src/ir/masks.ts';
import type { Program } from '../../src/ir/types.ts';
import { count, maskCondition, programBuffers, programReader, type Sizes } from './common.ts';
import { ExprGen } from './expr.ts';
import { KernelBuilder, tokenElement } from './kernel-builder.ts';
import { grid, type Plan } from './plan.ts';

const WG = 64;

/** `accumulate`: add into o instead of writing it (the noncausal items of a plan whose causal ones ran chunked). */
export function naivePlan(p: Program, sizes: Sizes, opts: { accumulate?: boolean } = {}): Plan {
  const per = count(p.outAxes, sizes);
  const kb = new KernelBuilder(WG, ['gid', 'nwg']);
  const gen = new ExprGen(p, sizes, programReader(kb, p, sizes, (where) => `b * dims.t + ${where}`, { always: true }), { i: 'i', j: 'j' });
  const out = kb.use(kb.storage('out:o', true, { always: true }));
  const byName = new Map(p.terms.map((t) => [t.name, t]));
  const main = kb.body;
  const { flat, idx } = tokenElement(main, p.outAxes, sizes, 'i');
  const acc = main.var('o_acc', '0.0');
  for (const item of p.output) {
    const names = item.kind === 'term' ? [item.term] : item.terms;
    main.block('', (g) => {
      const num = g.var('num', '0.0');
      const den = g.var('den', '0.0');
      for (const name of names) {
        const t = byName.get(name)!;
        const r = lagRange(t.mask);
        const lo = r ? `u32(max(i32(i) - ${r[1]}, 0))` : '0u';
        const hi = r ? `min(u32(max(i32(i) - ${r[0]} + 1, 0)), dims.t)` : t.noncausal ? 'dims.t' : 'i + 1u';
        g.comment(`term ${t.name}`);
        g.for('j', lo, (j) => `${j} < ${hi}`, (l, j) => {
          l.line(`if (!(${maskCondition(t.mask, 'i', j)})) { continue; }`);
          const pair = new ExprGen(p, sizes, gen.resolve, { i: 'i', j });
          const s = pair.value(l, t.score, idx, j);
          const v = pair.value(l, t.value, idx, j);
          l.line(`${num} = ${num} + ${s} * ${v};`);
          l.line(`${den} = ${den} + ${s};`);
        });
      }
      g.line(item.kind === 'norm' ? `${acc} = ${acc} + ${num} / (${den} + ${item.eps});` : `${acc} = ${acc} + ${num};`);
    });
  }
  main.line(opts.accumulate ? `${out}[${flat}] = ${out}[${flat}] + ${acc};` : `${out}[${flat}] = ${acc};`);
  const kernel = kb.build({
    label: `${p.name}.naive`,
    comment: [`naive parallel form of ${p.name}: o[b,i,…] = Σ_terms Σ_{j∈M(i)} s(i,j) v_j`],
    workgroups: (b, t) => grid(b * t * per, WG),
    launch: { kind: 'grid', perToken: per, size: WG },
  });
  return { variant: p.name, form: 'naive', kernels: [kernel], buffers: programBuffers(p, sizes), outAxes: p.outAxes, sizes, schedule: { workgroup: WG } };
}
