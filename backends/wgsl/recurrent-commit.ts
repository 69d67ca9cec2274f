// The decode step's second launch: the state every column block of the step kernel reads whole — each prefix
// term's z (and open group zo) and the bounded terms' rings — advanced over the call's tokens after the step
// kernel has read it. Written in the step kernel, a column block could overwrite z or a ring slot while another
// block still reads it (workgroups are not ordered), so the step kernel reads them only and keeps this call's
// z in workgroup memory; here one thread per (batch, head slice, element) writes them, token by token.
//
//   z ← decay_t ⊙ z + ψ_t  (past_groups: z += zo at a group start, zo ← 0; zo += ψ_t),   ring[pos % RING] ← x_pos
import type { PrefixForm } from '../../src/ir/terms.ts';
import type { Program } from '../../src/ir/types.ts';
import { count, programReader, type Sizes } from './common.ts';
import { ExprGen, offset } from './expr.ts';
import { KernelBuilder } from './kernel-builder.ts';
import { layoutOf, prefixGate, ringIndex, rowAxes, type StateLayout } from './layout.ts';
import type { Kernel } from './plan.ts';
import { stageReductions } from './recurrent-stage.ts';

const WG = 64;

export function recurrentCommitKernel(p: Program, sizes: Sizes, st: StateLayout): Kernel | null {
  if (st.prefix.length === 0 && st.rings.length === 0) return null;
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  const L = layoutOf(p, p.terms);
  const NS = count(L.head, sizes);
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + (${where} - dims.pos0)`);
  const state = new Map(st.buffers.map((b) => [b.name, kb.storage(b.name, true)]));
  const ref = (name: string) => kb.use(state.get(name)!);
  const main = kb.body;
  main.define('s', 'wid.x');
  main.define('b', 'wid.y');
  const head = main.split(L.head, sizes, 's', 'hx');
  const roots = [
    ...st.prefix.flatMap((q) => {
      const f = q.term.form as PrefixForm;
      const gate = prefixGate(p, f);
      return gate ? [f.psi, gate.id] : [f.psi];
    }),
    ...st.rings.map((r) => r.id),
  ];
  main.for('tok', '0u', (tok) => `${tok} < dims.t`, (step) => {
    step.define('pos', 'dims.pos0 + tok');
    const resolve = stageReductions(p, sizes, L, kb, step, head, read, roots);
    for (const q of st.prefix) {
      const f = q.term.form as PrefixForm;
      const gate = prefixGate(p, f);
      step.strided('x', `${q.F}u`, (b, x) => {
        b.comment(`${q.term.name}: z at this token`);
        const g = new ExprGen(p, sizes, resolve, { i: 'pos', j: 'pos' });
        const idx = { ...head, ...(f.feature ? { [f.feature]: x } : {}) };
        const ps = g.value(b, f.psi, idx, 'pos');
        const zi = `(b * ${NS}u + s) * ${q.F}u + ${x}`;
        const z = ref(`state:z${q.k}`);
        if (q.open) {
          const zo = ref(`state:zo${q.k}`);
          b.block(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u)`, (j) => j.line(`${z}[${zi}] += ${zo}[${zi}]; ${zo}[${zi}] = 0.0;`));
          b.line(`${zo}[${zi}] += ${ps};`);
        } else {
          const gv = gate ? g.value(b, gate.id, gate.perFeature ? idx : { ...head }, 'pos') : null;
          b.line(`${z}[${zi}] = ${gv ? `exp(log(max(${gv}, 1e-30)))` : '1.0'} * ${z}[${zi}] + ${ps};`);
        }
      });
    }
    for (const r of st.rings) {
      const n = p.nodes[r.id];
      const own = rowAxes(p, L, r.id);
      step.strided('x', `${count(own, sizes)}u`, (b, x) => {
        b.comment(`ring of %${r.id}`);
        const full = { ...head, ...b.split(own, sizes, x, `r${r.id}`) };
        const v = new ExprGen(p, sizes, resolve, { i: 'pos', j: 'pos' }).value(b, r.id, full, 'pos');
        b.line(`${ref(`state:ring${r.id}`)}[${ringIndex(r, st.ring, `pos % ${st.ring}u`, offset(n.type.axes, sizes, full))}] = ${v};`);
      });
    }
    // The next token's reductions overwrite the staged ones.
    step.line('workgroupBarrier();');
  }, { fixed: true });
  return kb.build({
    label: `${p.name}.recurrent-commit`,
    comment: [`commit of ${p.name}'s recurrent step: z, open groups' zo and rings over this call's tokens, after the step kernel read them`],
    workgroups: (b) => [NS, b, 1],
  });
}
