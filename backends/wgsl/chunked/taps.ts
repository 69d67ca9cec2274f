// A convolution's tap weights hoisted out of the chunk loop (ChunkKernelSpec.hoistTaps). A toeplitz term's score
// depends on the lag i − j alone (passes/separability.ts), with the value column's index: each invocation of the
// output phase keeps the same columns in every chunk (its lane lid % RB, where RB divides the workgroup), so its
// s(lag) for each lag and column is computed once, before the first chunk, into registers. The taps are then
// unrolled lag by lag, each a workgroup load of the value and an FMA — where the loop form evaluated the score per
// tap and row in every chunk: the staged positions of i and j (two broadcasts), round(i − j), the parameter's
// global load (on the H200 the taps were 0.118 of elu_dwconv's 0.93 ms at d 64).
//
//   o_i += Σ_{lag=lo..hi} [M(i, i − lag)] s(lag) v_{i−lag}       s(lag) = score at positions (lag, 0)
import { lagRange } from '../../../src/ir/masks.ts';
import { operands, type Id, type MaskAtom, type Term } from '../../../src/ir/types.ts';
import { maskCondition } from '../common.ts';
import { ExprGen, type Resolver } from '../expr.ts';
import type { Block } from '../wgsl-block.ts';
import { CHUNK_DEFAULTS } from './analysis.ts';
import { valueAt, type ChunkKernel } from './declarations.ts';
import { blockTile } from './tiles.ts';

/** Most lags a hoisted term may have: each is a register per column of an invocation, and a tap unrolled per row. */
const MAX_HOISTED_LAGS = 8;

/** One hoisted term: its lags and, per column n of an invocation then lag − lo, the register holding s(lag). */
export interface HoistedTaps {
  readonly lo: number;
  readonly hi: number;
  readonly weights: readonly (readonly string[])[];
}

/**
 * The direct (convolution) terms whose weights can be hoisted: toeplitz, a few lags, in a kernel that reads its own
 * positions (no position offset, no memory interface of its own, no node of the score materialised by a feature
 * kernel or a prologue: the plan reads those from their buffers) and whose output invocations keep their columns.
 */
function hoistable(K: ChunkKernel): Term[] {
  const { a } = K;
  if (!(a.spec.hoistTaps ?? CHUNK_DEFAULTS.hoistTaps) || a.spec.positionOffset || a.spec.io || a.segmented === 'state') return [];
  const { RB } = blockTile(a.C, a.R, a.WG, a.spec.schedule.block);
  if (a.WG % RB !== 0) return [];
  return a.terms.filter((t) => {
    if (t.form.kind !== 'toeplitz' || a.L.aTerms.includes(t)) return false;
    const [lo, hi] = lagRange(t.mask)!;
    return hi - lo + 1 <= MAX_HOISTED_LAGS && !readsMaterialised(K, t.score);
  });
}

/** Whether the expression at `root` reads a node the plan materialised (spec.materialised). */
function readsMaterialised(K: ChunkKernel, root: Id): boolean {
  const seen = new Set<Id>();
  const visit = (id: Id): boolean => {
    if (seen.has(id)) return false;
    seen.add(id);
    return K.a.spec.materialised.has(id) || operands(K.a.p.nodes[id]).some(visit);
  };
  return visit(root);
}

/** Emits, before the chunk loop, each hoistable term's s(lag) for the columns of this invocation; by term name. */
export function emitTapWeights(K: ChunkKernel, main: Block): ReadonlyMap<string, HoistedTaps> {
  const terms = hoistable(K);
  const out = new Map<string, HoistedTaps>();
  if (!terms.length) return out;
  const { a } = K;
  const { TN, RB } = blockTile(a.C, a.R, a.WG, a.spec.schedule.block);
  main.comment('convolution tap weights, once: they depend on the lag and the column only');
  // Parameters from their bindings; every other node computed at the lag's positions (none is materialised: hoistable)
  const params: Resolver = (n, idx, where, at) => (n.op === 'param' ? K.io.read(n, idx, where, at) : null);
  const cl = main.let('tap_cl', `lid % ${RB}u`);
  const idx = [...Array(TN).keys()].map((n) => ({ ...K.head, ...main.split(a.L.rest, a.sizes, `min(tile * ${a.R}u + ${cl} + ${n * RB}u, ${a.NR - 1}u)`, `tc${n}`) }));
  for (const t of terms) {
    const [lo, hi] = lagRange(t.mask)!;
    const weights = idx.map((ix, n) =>
      [...Array(hi - lo + 1).keys()].map((k) => {
        const w = main.var(`tap_${t.name}_${n}_${k}`, '0.0');
        main.block('', (b) => {
          // lag ≥ 0 sits at positions (lag, 0); a negative lag (a centred window) at (0, −lag)
          const lag = lo + k;
          const gen = new ExprGen(a.p, a.sizes, params, lag >= 0 ? { i: `${lag}u`, j: '0u' } : { i: '0u', j: `${-lag}u` });
          b.line(`${w} = ${gen.value(b, t.score, ix, lag >= 0 ? '0u' : `${-lag}u`)};`);
        });
        return w;
      }),
    );
    out.set(t.name, { lo, hi, weights });
  }
  return out;
}

/** Row `il` (ia = c0 + il) of column n: the hoisted term's taps, unrolled, into num (and den, for a normalised group). */
export function hoistedTaps(K: ChunkKernel, gb: Block, t: Term, h: HoistedTaps, row: { at: string; n: number; cl: string; num: string; den: string }, withDen: boolean): void {
  const { a } = K;
  gb.block('', (w) => {
    w.comment(`hoisted taps of ${t.name}: weights computed before the chunk loop`);
    const il = w.let('il', row.at);
    const ia = w.let('ia', `c0 + ${il}`);
    for (let lag = h.lo; lag <= h.hi; lag++) {
      w.block(`if (${tapCondition(t.mask, il, ia, lag)})`, (l) => {
        const s = h.weights[row.n][lag - h.lo];
        l.line(`${row.num} = ${row.num} + ${s} * ${valueAt(K, `u32(i32(${il}) - ${lag} + ${a.HALO})`, row.cl)};`);
        if (withDen) l.line(`${row.den} = ${row.den} + ${s};`);
      });
    }
  });
}

/** Mask atoms that depend on the lag i − j alone: at a lag inside lagRange each of them holds. */
const LAG_ONLY: ReadonlySet<MaskAtom['kind']> = new Set(['causal', 'window', 'centered']);

/**
 * When row il (position ia = c0 + il) takes the tap at `lag`: the row is in the sequence, the key position ia − lag is
 * too, and the mask admits the pair. A mask of lag-only atoms admits every lag of its lagRange, and a row in the
 * sequence puts a key at a lag ≥ 0 before its own position, so that is `il < n && ia >= lag` — the general form
 * converted ia − lag between i32 and u32 and tested the mask at every tap, integer work that took 4.5 % of
 * elu_dwconv's resident kernel at d 128 on the H200 (hand edit, call 110: 1.357 → 1.296 ms; call 111 generated:
 * bench/results/h200-tap-conditions.json). Other masks (a group's) and negative lags (a centred window's, which no
 * chunk kernel takes: the noncausal convolution runs in the parallel form) keep the general form.
 */
export function tapCondition(mask: readonly MaskAtom[], il: string, ia: string, lag: number): string {
  if (lag >= 0 && mask.every((m) => LAG_ONLY.has(m.kind))) return lag > 0 ? `${il} < n && ${ia} >= ${lag}u` : `${il} < n`;
  const jai = `i32(${ia}) - ${lag}`;
  return `${il} < n && ${jai} >= 0 && ${jai} < i32(dims.t) && (${maskCondition(mask, ia, `u32(${jai})`)})`;
}
