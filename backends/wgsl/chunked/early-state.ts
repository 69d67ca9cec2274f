// φ·S_prev early (ChunkAnalysis.earlyState): in an overlapped kernel (chunked/teams.ts) the fold team idles through the
// score phase whenever the score tiles take no more than the output team's invocations. It computes there what the
// output team would read S for — each output item's φ_i·(decay_i ⊙ S_prev) for its four rows, one vec4 an item in
// phiS, and with outputDen each row's φ_i·(decay_i ⊙ z_prev) in phiZ [C], as a resident kernel's outputs read it
// (outputs.ts stateTerm, resident.ts residentDenominators) — so after the score barrier the output team only adds them.
// S and z are S_prev, z_prev throughout the score phase: the fold team stores the new ones at the next chunk's start
// (teams.ts emitHeldStore), after the barrier that ends this chunk.
//
//   before: scores (team 0; team 1 idle) │ barrier │ outputs with φ·S_prev (team 0) ∥ fold (team 1)
//   after:  scores (team 0) ∥ φ·S_prev (team 1) │ barrier │ outputs (team 0) ∥ fold (team 1)
//
// On the H200 (B 4 H 16 T 4096 D 64, 32×32×512): the hand form (chunk-edits/d64-phisearly.wgsl, call 97) ran
// elu_dwconv at 0.671 ms against the generated kernel's 0.709; generated (call 99), 0.677 against 0.705 and at T 16384
// 2.670 against 2.786. It pays where the output team has more than A·V to do — a depthwise convolution's per-channel
// taps — and costs 2–5 % elsewhere (the fold team's two phases become the longer ones), so it is on by default only
// there (analysis.ts CHUNK_DEFAULTS, columnTaps). A first generated form with phiS as f32 [C][R] and every
// invocation also computing its rows' φ·z (call 98) lost everywhere: 0.713 against 0.708.
import type { Block } from '../wgsl-block.ts';
import { teamSize, type PrefixPlan } from './analysis.ts';
import { elem, phiVec, stateArrays, type ChunkKernel } from './declarations.ts';
import { earlyItem, stateProducts, type Column, type Row, type Tile } from './outputs.ts';
import { rowDecay, rowDecay4 } from './scores.ts';
import { blockTile } from './tiles.ts';

/** The fold team's share of the score phase: every output item's φ·S_prev (and every row's φ·z_prev) into phiS, phiZ. */
export function emitEarlyState(K: ChunkKernel, body: Block): void {
  const { a } = K;
  if (!a.earlyState || a.segmented === 'state') return;
  const T = teamSize(a);
  // the output team's tile (outputs.ts emitOutputs), so that the items match one for one: four rows of one column
  const { TM, TN, NT: NTO, RB } = blockTile(a.C, a.R, T, a.spec.schedule.block);
  if (TN !== 1 || TM !== 4) throw new Error(`internal: ${a.spec.label}: φ·S_prev early needs four rows of one column an output invocation`);
  body.block(`if (lid >= ${T}u)`, (b) => {
    b.comment("the fold team, idle in the score phase: each output item's φ·S_prev (chunked/early-state.ts)");
    const team = { index: b.let('u', `lid - ${T}u`), size: T };
    b.strided('x', `${NTO * RB}u`, (c, x) => {
      const ti = c.let('ti', `${x} / ${RB}u`);
      const cl = c.let('cl', `${x} % ${RB}u`);
      const col: Column = { n: 0, cl, idx: {}, guard: null };
      const tile: Tile = { ti, cols: [col], o: [[...Array(TM).keys()].map(() => '')], NTO };
      for (const q of a.prefix) {
        const { phiS, phiZ } = K.arrays.prefix[q.k];
        if (!phiS) throw new Error(`internal: ${a.spec.label}: term ${q.term.name} has no phiS array`);
        const rows: Row[] = [...Array(TM).keys()].map((m) => ({ m, at: `${ti} + ${m * NTO}u`, col, num: c.var(`es${q.k}_${m}`, '0.0'), den: '' }));
        stateProducts(K, c, q, rows, tile, null);
        c.line(`${phiS.name}[${earlyItem(K, ti, cl)}] = vec4<f32>(${rows.map((r) => r.num).join(', ')});`);
        // a row's φ·z_prev is the same in every column: one invocation a row
        if (phiZ) c.block(`if (${x} < ${a.C}u)`, (w) => w.line(`${phiZ.name}[${x}] = ${rowZ(K, q, w, x)};`));
      }
    }, team);
  });
}

/** φ_row·(decay_row ⊙ z_prev) of prefix term q, summed into a variable of `b`. */
function rowZ(K: ChunkKernel, q: PrefixPlan, b: Block, row: string): string {
  const { z } = stateArrays(K, q);
  const acc = b.var(`ez${q.k}`, '0.0');
  const il = `(${row})`;
  if (q.vec4) {
    b.for('f4', '0u', (f4) => `${f4} < ${q.F / 4}u`, (l, f4) => {
      const f = l.let('f', `${f4} * 4u`);
      l.line(`${acc} = ${acc} + dot(${phiVec(K, q, il, f4)}${rowDecay4(K, q, il, f)}, ${z.name}[${f4}]);`);
    });
  } else {
    const { phi } = K.arrays.prefix[q.k];
    b.for('f', '0u', (f) => `${f} < ${q.F}u`, (l, f) => l.line(`${acc} = ${acc} + ${phi.name}[${il} * ${q.F}u + ${f}]${rowDecay(K, q, il, f)} * ${elem(z, f)};`));
  }
  return acc;
}
