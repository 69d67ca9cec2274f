// The recurrent step's second launch, for calls of t > 1 tokens and for open groups: the state every column block
// of the step kernel reads whole — the open groups' zo and the bounded terms' rings — advanced over the call's
// tokens after the step kernel has read it. Written in the step kernel, a column block could overwrite zo or a
// ring slot while another block still reads it (workgroups are not ordered); here one thread per (batch, head
// slice, element) writes them, token by token. z itself is kept per column and advanced by the step kernel
// (layout.ts), and a one-token call's ring slot is written there too (recurrent.ts's header says why that is
// safe), so a program without open groups launches nothing here at t = 1: its grid is empty then, and the
// executor skips empty launches.
//
//   past_groups: zo ← 0 at a group start; zo += ψ_t  (the step kernel joins zo into z),   ring[pos % RING] ← x_pos (t > 1)
import type { PrefixForm } from '../../src/ir/terms.ts';
import type { Program } from '../../src/ir/types.ts';
import { count, programReader, type Sizes } from './common.ts';
import { ExprGen, offset } from './expr.ts';
import { KernelBuilder } from './kernel-builder.ts';
import { layoutOf, ringIndex, rowAxes, type StateLayout } from './layout.ts';
import type { Kernel } from './plan.ts';
import { stageReductions } from './recurrent-stage.ts';
import { definePerSequence } from './sequence-offsets.ts';

const WG = 64;

/** `perSequence`: sequence b's tokens start at its own position (recurrent.ts, RecurrentOptions.perSequence). */
export function recurrentCommitKernel(p: Program, sizes: Sizes, st: StateLayout, perSequence = false): Kernel | null {
  const open = st.prefix.filter((q) => q.open);
  if (open.length === 0 && st.rings.length === 0) return null;
  const kb = new KernelBuilder(WG, ['wid', 'lid']);
  const L = layoutOf(p, p.terms);
  const NS = count(L.head, sizes);
  const P0 = perSequence ? 'pos0' : 'dims.pos0';
  const read = programReader(kb, p, sizes, (where) => `b * dims.t + (${where} - ${P0})`);
  const state = new Map(st.buffers.map((b) => [b.name, kb.storage(b.name, true)]));
  const ref = (name: string) => kb.use(state.get(name)!);
  const main = kb.body;
  main.define('s', 'wid.x');
  main.define('b', 'wid.y');
  if (perSequence) definePerSequence(kb, main, false);
  const head = main.split(L.head, sizes, 's', 'hx');
  const roots = [...open.map((q) => (q.term.form as PrefixForm).psi), ...st.rings.map((r) => r.id)];
  main.for('tok', '0u', (tok) => `${tok} < dims.t`, (step) => {
    step.define('pos', `${P0} + tok`);
    const resolve = stageReductions(p, sizes, L, kb, step, head, read, roots);
    for (const q of open) {
      const f = q.term.form as PrefixForm;
      step.strided('x', `${q.F}u`, (b, x) => {
        b.comment(`${q.term.name}: the open group's zo at this token`);
        const g = new ExprGen(p, sizes, resolve, { i: 'pos', j: 'pos' });
        const idx = { ...head, ...(f.feature ? { [f.feature]: x } : {}) };
        const ps = g.value(b, f.psi, idx, 'pos');
        const zo = `${ref(`state:zo${q.k}`)}[(b * ${NS}u + s) * ${q.F}u + ${x}]`;
        b.line(`if (pos % ${(q.term.mask[0] as { size: number }).size}u == 0u && pos > 0u) { ${zo} = 0.0; }`);
        b.line(`${zo} += ${ps};`);
      });
    }
    // A one-token call's step kernel wrote its ring slots itself.
    if (st.rings.length) {
      step.block('if (dims.t > 1u)', (rings) => {
        for (const r of st.rings) {
          const n = p.nodes[r.id];
          const own = rowAxes(p, L, r.id);
          rings.strided('x', `${count(own, sizes)}u`, (b, x) => {
            b.comment(`ring of %${r.id}`);
            const full = { ...head, ...b.split(own, sizes, x, `r${r.id}`) };
            const v = new ExprGen(p, sizes, resolve, { i: 'pos', j: 'pos' }).value(b, r.id, full, 'pos');
            b.line(`${ref(`state:ring${r.id}`)}[${ringIndex(r, st.ring, `pos % ${st.ring}u`, offset(n.type.axes, sizes, full))}] = ${v};`);
          });
        }
      });
    }
    // The next token's reductions overwrite the staged ones.
    step.line('workgroupBarrier();');
  }, { fixed: true });
  return kb.build({
    label: `${p.name}.recurrent-commit`,
    comment: [`commit of ${p.name}'s recurrent step: open groups' zo and (t > 1) rings over this call's tokens, after the step kernel read them`],
    // Nothing to do for one token without open groups: an empty grid, which the executor does not launch.
    workgroups: (b, t) => (t === 1 && open.length === 0 ? [0, 0, 0] : [NS, b, 1]),
  });
}
