// The chunk's outputs and its state update in one phase, on two teams of the workgroup (ChunkAnalysis.overlap):
// invocations [0, WG/2) write the outputs, reading S_prev, while [WG/2, WG) fold the chunk into S. The fold team
// reads S_prev in place (only reads happen to S in the phase) and holds the new S in registers, declared before
// the chunk loop, one set per term, trip and cell (fold-tiled.ts); it stores them at the next chunk's start,
// before that chunk's staging barrier — after the barrier ending this chunk, so after every output's read — and
// once more after the last chunk where the state is exported. So the barrier between the outputs and the fold goes,
// and no second S buffer is needed. z stays in place — the outputs read the row denominators, never z — unless the
// output team sums the denominators itself (ChunkAnalysis.outputDen): then it reads z_prev, and z is held like S.
//
//   before: … outputs (all) │ barrier │ fold S, z (all) │ barrier
//   after:  store held S (fold team) … outputs (team 0) ∥ fold S into registers, z (team 1) │ barrier
//
// On the H200 (elu_dwconv, B 4 H 16 T 4096 D 64, 32x32x512; bench/chunk-edit.ts, calls 78–79) a hand edit with a
// second S buffer instead of the registers ran 0.686 ms against the generated kernel's 0.812 (chunk-edits/ws.wgsl);
// the held registers cost about 1 % beside it (ws4.wgsl 0.676 against ws2.wgsl 0.659, both also folding the row
// denominators into the outputs).
import type { Block, Team } from '../wgsl-block.ts';
import { teamSize } from './analysis.ts';
import { elem, stateArrays, type ChunkKernel } from './declarations.ts';
import { foldTiled, heldShape, storeHeld } from './fold-tiled.ts';
import { emitOutputs } from './outputs.ts';
import { emitZFold, emitZUpdate, zJobs } from './state.ts';
import type { HoistedTaps } from './taps.ts';

/**
 * The registers holding each prefix term's new S (by PrefixPlan.k), per trip of the fold team; and, where the output
 * team sums the denominators (ChunkAnalysis.outputDen) and so reads z_prev in the phase, its new z (one job of the
 * fold team's first trip: zJobs ≤ the team), else null.
 */
export interface HeldState {
  readonly S: readonly (readonly (readonly string[])[])[];
  readonly z: readonly (string | null)[];
}

/** The fold team's own index (lid − WG/2), in `b`. */
function foldTeam(K: ChunkKernel, b: Block): Team {
  const T = teamSize(K.a);
  return { index: b.let('u', `lid - ${T}u`), size: T };
}

/** Declares, before the chunk loop, the registers the fold team holds the new S in; null where the phases do not overlap. */
export function declareHeld(K: ChunkKernel, main: Block): HeldState | null {
  if (!K.a.overlap) return null;
  main.comment("the fold team's new S, held from its update until the next chunk's start (chunked/teams.ts)");
  const S = K.a.prefix.map((q) => {
    const { trips, perTrip, type } = heldShape(K, q);
    const zero = type === 'f32' ? '0.0' : `${type}(0.0)`;
    return [...Array(trips).keys()].map((t) => [...Array(perTrip).keys()].map((r) => main.var(`held${q.k}_${t}_${r}`, zero, type)));
  });
  const z = K.a.prefix.map((q) => (K.a.outputDen ? main.var(`heldz${q.k}`, q.vec4 ? 'vec4<f32>(0.0)' : '0.0', q.vec4 ? 'vec4<f32>' : 'f32') : null));
  return { S, z };
}

/** The fold team stores the S it holds into workgroup memory, where `when` holds (a chunk after the first, say). */
export function emitHeldStore(K: ChunkKernel, body: Block, held: HeldState, when?: string): void {
  body.block(`if (${when ? `${when} && ` : ''}lid >= ${teamSize(K.a)}u)`, (b) => {
    b.comment("the fold team's S from the chunk before, now that every output has read S_prev");
    const team = foldTeam(K, b);
    for (const q of K.a.prefix) {
      storeHeld(K, q, b, { team, regs: held.S[q.k] });
      const z = held.z[q.k];
      // a vec4 z's job is a whole vec4 (zJobs), an f32 z's one feature
      const zArr = stateArrays(K, q).z;
      if (z) b.block(`if (${team.index} < ${zJobs(q)}u)`, (w) => w.line(`${q.vec4 ? `${zArr.name}[${team.index}]` : elem(zArr, team.index)} = ${z};`));
    }
  });
}

/** Phases 4 and 5 at once: the outputs on the first half of the workgroup, the fold into held registers on the second. */
export function emitOverlapped(K: ChunkKernel, chunk: Block, held: HeldState, taps?: ReadonlyMap<string, HoistedTaps>): void {
  chunk.ifChain([
    [`lid < ${teamSize(K.a)}u`, (o) => emitOutputs(K, o, taps)],
    [null, (f) => {
      const team = foldTeam(K, f);
      for (const q of K.a.prefix) {
        foldTiled(K, q, f, { team, regs: held.S[q.k] });
        const z = held.z[q.k];
        // the output team reads z_prev in this phase (outputDen): the new z is held, like S
        if (z) f.block(`if (${team.index} < ${zJobs(q)}u)`, (w) => emitZUpdate(K, q, w, team.index, z));
        else emitZFold(K, q, f, team);
      }
    }],
  ]);
}
