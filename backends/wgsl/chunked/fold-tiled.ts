// The tiled state update of a prefix term with no open group (phase 5, or the fold team's half of the overlapped
// phase: chunked/teams.ts),
//
//   S_k ← decay_chunk ⊙ S_k + Σ_j (decay_{j→end} ψ_k,j) ⊗ v_j
//
// each invocation owning TF features of TN value columns (blockTile). On the whole workgroup it stores S in place
// after a barrier (the outputs have read S_prev). In the fold team, beside the outputs still reading S_prev, it
// keeps the new S in registers held across the chunk's last barrier and stores them at the next chunk's start
// (storeHeld): its strided loop is unrolled into trips, each with registers of its own, and the trips share one
// pass over the chunk's rows (each value loaded feeds every trip's features: the team's lane is the same in each).
import type { Block, Team } from '../wgsl-block.ts';
import type { PrefixPlan } from './analysis.ts';
import { teamSize } from './analysis.ts';
import { logDecayAt, psiAt, psiVec, stateArrays, valueAt, type ChunkKernel } from './declarations.ts';
import { blockTile } from './tiles.ts';

/** The comment the fold team's update carries (the plan report and tests look for it). */
export const HELD_MARK = "held until the next chunk's start";

/** vec4<f32>(at(0), …, at(3)). */
export const lanes = (at: (k: number) => string) => `vec4<f32>(${[0, 1, 2, 3].map(at).join(', ')})`;

/** The fold team and, per trip, the registers it holds the new S in (in the order of the fold's accumulators). */
export interface HeldFold {
  readonly team: Team;
  readonly regs: readonly (readonly string[])[];
}

/** The registers a fold team's invocation holds for term q: trips, registers a trip, their type. */
export function heldShape(K: ChunkKernel, q: PrefixPlan): { trips: number; perTrip: number; type: string } {
  const { TM, TN, NT, RB } = tile(K, q);
  return { trips: Math.ceil((NT * RB) / teamSize(K.a)), perTrip: q.psiVec4 ? TN : TM * TN, type: q.psiVec4 ? 'vec4<f32>' : 'f32' };
}

const tile = (K: ChunkKernel, q: PrefixPlan) => blockTile(q.F, K.a.R, teamSize(K.a), K.a.spec.schedule.block);

/** The update's value columns of lane `cl` (cl + n·RB). */
function columns(b: Block, cl: string, TN: number, RB: number): string[] {
  return TN === 1 ? [cl] : [...Array(TN).keys()].map((n) => b.let(`cl_${n}`, `${cl} + ${n * RB}u`));
}

/** An invocation's share of S: its accumulators (from decay ⊙ S_prev) and the S elements each ends in. */
interface Cells {
  readonly acc: readonly string[];
  readonly at: readonly (readonly string[])[]; // per accumulator: its S element (f32) or four (vec4, x … w)
}

/**
 * Fold term q into S: the whole workgroup storing S in place, or with `held`, the fold team keeping the new S in
 * `held.regs` (storeHeld stores them).
 */
export function foldTiled(K: ChunkKernel, q: PrefixPlan, chunk: Block, held?: HeldFold): void {
  const { a } = K;
  const S = stateArrays(K, q).S.name;
  const { NT, RB, TN } = tile(K, q);
  const total = NT * RB;
  const form = q.psiVec4 ? vec4Form(K, q) : f32Form(K, q);
  if (!held) {
    chunk.strided('x', `${total}u`, (b, x) => {
      b.comment(`${S} ← decay ⊙ ${S} + Σ_j ψ_j ⊗ v_j${q.psiVec4 ? ', four features an invocation' : ''}`);
      const tf = b.let('tf', `${x} / ${RB}u`);
      const cls = columns(b, b.let('cl', `${x} % ${RB}u`), TN, RB);
      const cells = form.lane(b, tf, cls, '');
      form.update(b, cls, [cells]);
      cells.acc.forEach((an, r) => store(b, an, cells.at[r]));
    });
    return;
  }
  chunk.block('', (b) => {
    const trips = b.trips('x', total, held.team);
    b.comment(`${S} ← decay ⊙ ${S} + Σ_j ψ_j ⊗ v_j, ${trips.length} trip(s) of the fold team, ${HELD_MARK}`);
    const cls = columns(b, b.let('cl', `${held.team.index} % ${RB}u`), TN, RB);
    const ls = trips.map((t, k) => form.lane(b, b.let(`tf_${k}`, `${t.x} / ${RB}u`), cls, `${k}_`));
    form.update(b, cls, ls);
    ls.forEach((l, k) => l.acc.forEach((an, r) => b.line(`${held.regs[k][r]} = ${an};`)));
  });
}

/** The held registers of term q into S (at a chunk's start, in the fold team, before the staging barrier). */
export function storeHeld(K: ChunkKernel, q: PrefixPlan, body: Block, held: HeldFold): void {
  const { NT, RB, TN } = tile(K, q);
  const form = q.psiVec4 ? vec4Form(K, q) : f32Form(K, q);
  const trips = body.trips('x', NT * RB, held.team);
  const cls = columns(body, body.let('cl', `${held.team.index} % ${RB}u`), TN, RB);
  trips.forEach((t, k) =>
    body.block(t.guard ? `if (${t.guard})` : '', (b) => {
      const cells = form.cells(b, b.let('tf', `${t.x} / ${RB}u`), cls);
      cells.at.forEach((at, r) => store(b, held.regs[k][r], at));
    }),
  );
}

/** S elements `at` ← accumulator `an` (f32, or vec4 component by component). */
function store(b: Block, an: string, at: readonly string[]): void {
  if (at.length === 1) b.line(`${at[0]} = ${an};`);
  else at.forEach((e, k) => b.line(`${e} = ${an}.${'xyzw'[k]};`));
}

/**
 * One form of the update: a lane's accumulators (`tag` in their names), one pass over the chunk's rows for the lanes
 * given (their decays and features known to the form), and a lane's S elements alone (storeHeld).
 */
interface Form {
  lane(b: Block, tf: string, cls: readonly string[], tag: string): Cells;
  update(b: Block, cls: readonly string[], lanes: readonly Cells[]): void;
  cells(b: Block, tf: string, cls: readonly string[]): Cells;
}

/**
 * Features tf + m·NTF (m < TF) of columns cls: a value loaded once feeds TF products, a decayed ψ once TN.
 */
function f32Form(K: ChunkKernel, q: PrefixPlan): Form {
  const { a } = K;
  const S = stateArrays(K, q).S.name;
  const { TM: TF, TN, NT: NTF } = tile(K, q);
  const fs = [...Array(TF).keys()];
  type Row = { f: string; lend: string | null; acc: string[] };
  const rowsOf = new Map<Cells, Row[]>();
  const features = (b: Block, tf: string) => fs.map((m) => b.let(`f_${m}`, `${tf} + ${m * NTF}u`));
  const at = (f: string, c: string) => [`${S}[${f} * ${a.R}u + ${c}]`];
  return {
    lane(b, tf, cls, tag) {
      const rows = fs.map((m): Row => {
        const f = b.let(`f_${tag}${m}`, `${tf} + ${m * NTF}u`);
        const lend = q.gateWidth ? b.let(`lend_${tag}${m}`, logDecayAt(K, q, '(n - 1u)', f)) : null;
        const acc = cls.map((c, n) => b.var(TN === 1 ? `acc_${tag}${m}` : `acc_${tag}${m}_${n}`, `${at(f, c)[0]}${lend ? ` * exp(${lend})` : ''}`));
        return { f, lend, acc };
      });
      const cells: Cells = { acc: rows.flatMap((r) => r.acc), at: rows.flatMap((r) => cls.map((c) => at(r.f, c))) };
      rowsOf.set(cells, rows);
      return cells;
    },
    update(b, cls, lanes) {
      const rows = lanes.flatMap((l) => rowsOf.get(l)!);
      b.for('j', '0u', (j) => `${j} < n`, (l, j) => {
        const vv = cls.map((c, n) => l.let(TN === 1 ? 'vv' : `vv_${n}`, valueAt(K, `${j} + ${a.HALO}u`, c)));
        for (const { f, lend, acc } of rows) {
          const w = lend ? ` * exp(${lend} - ${logDecayAt(K, q, j, f)})` : '';
          if (TN === 1) {
            l.line(`${acc[0]} = ${acc[0]} + ${psiAt(K, q, j, f)}${w} * ${vv[0]};`);
            continue;
          }
          const ps = l.let('ps', `${psiAt(K, q, j, f)}${w}`);
          acc.forEach((an, n) => l.line(`${an} = ${an} + ${ps} * ${vv[n]};`));
        }
      });
    },
    cells(b, tf, cls) {
      return { acc: [], at: features(b, tf).flatMap((f) => cls.map((c) => at(f, c))) };
    },
  };
}

/**
 * A term whose ψ is vec4 (PrefixPlan.psiVec4, so blockTile gives each invocation four features): the four are
 * 4·tf … 4·tf + 3, so each row's ψ is one vec4 load — the same for the warp's columns, a broadcast — where the f32
 * form loaded four (features tf + m·F/4), and the accumulators of a column are one vec4.
 */
function vec4Form(K: ChunkKernel, q: PrefixPlan): Form {
  const { a } = K;
  const S = stateArrays(K, q).S.name;
  const { TN } = tile(K, q);
  const logDecay = (row: string, f0: string) => (q.gatePerFeature ? lanes((k) => logDecayAt(K, q, row, `${f0} + ${k}u`)) : logDecayAt(K, q, row, f0));
  type Lane = { tf: string; f0: string; lend: string | null; acc: string[] };
  const laneOf = new Map<Cells, Lane>();
  const at = (f0: string, c: string) => [0, 1, 2, 3].map((k) => `${S}[(${f0} + ${k}u) * ${a.R}u + ${c}]`);
  return {
    lane(b, tf, cls, tag) {
      const f0 = b.let(`f_${tag}0`, `${tf} * 4u`);
      const lend = q.gateWidth ? b.let(`lend${tag ? `_${tag.slice(0, -1)}` : ''}`, logDecay('(n - 1u)', f0)) : null;
      const acc = cls.map((c, n) => b.var(TN === 1 ? `acc${tag ? `_${tag.slice(0, -1)}` : ''}` : `acc_${tag}${n}`, `${lanes((k) => at(f0, c)[k])}${lend ? ` * exp(${lend})` : ''}`, 'vec4<f32>'));
      const cells: Cells = { acc, at: cls.map((c) => at(f0, c)) };
      laneOf.set(cells, { tf, f0, lend, acc });
      return cells;
    },
    update(b, cls, ls) {
      b.for('j', '0u', (j) => `${j} < n`, (l, j) => {
        const vv = cls.map((c, n) => l.let(TN === 1 ? 'vv' : `vv_${n}`, valueAt(K, `${j} + ${a.HALO}u`, c)));
        for (const { tf, f0, lend, acc } of ls.map((x) => laneOf.get(x)!)) {
          const ps = l.let('ps', `${psiVec(K, q, j, tf)}${lend ? ` * exp(${lend} - ${logDecay(j, f0)})` : ''}`);
          acc.forEach((an, n) => l.line(`${an} = ${an} + ${ps} * ${vv[n]};`));
        }
      });
    },
    cells(b, tf, cls) {
      const f0 = b.let('f_0', `${tf} * 4u`);
      return { acc: [], at: cls.map((c) => at(f0, c)) };
    },
  };
}
