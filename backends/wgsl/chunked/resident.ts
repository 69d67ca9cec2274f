// The prefix terms' state in the registers of subgroup lanes (ChunkKernelSpec.resident, the `rs` schedule switch;
// where it applies and its shape: resident-shape.ts). Subgroup g of the workgroup owns the tile's columns
// cw0 … cw0 + Cw − 1 (cw0 = Cw·g), lane l features FL·l … FL·l + FL − 1 of them (FL = F / SG: 4 at d 128 on subgroups
// of 32, 2 at d 64): S_k as Cw vecFL registers, z_k as one.
// The rest of the chunk kernel is unchanged but for where S and z are read and written:
//
//   after staging   the owners reduce φ_i·(decay_i ⊙ S_prev) for every row of the chunk into phiS [C][R + Cw], and the
//                   subgroups φ_i·(decay_i ⊙ z_prev) into phiZ [C], a row each (emitResidentProducts), in the score
//                   phase, before its barrier;
//   outputs         read phiS (outputs.ts stateTerm); a normalised group's denominator starts from phiZ and adds
//                   the row of A as A·V reads it (outputs.ts), so the kernel has no denominator phase
//                   (denominators.ts) and one barrier fewer a chunk;
//   fold            every invocation updates its own registers from ψ and v (emitResidentFold) right after its
//                   outputs: it reads nothing the outputs write, so no barrier between them;
//   export          the registers go to the decoding state after the last chunk (exportResident).
//
// The reduction (the hand kernel's, resident-gen.py): each lane's partial dot products over its FL features, for RB =
// SG/Cw rows and its Cw columns, then subgroupShuffleXor at offsets SG/2 … Cw, each step keeping half the rows (the
// lanes with the offset's bit set the upper half) while adding the partner's half, then offsets Cw/2 … 1 adding the
// Cw lanes' column vectors: lane l ends with row l / Cw's sum over all F features, of which it keeps column l % Cw.
// It assumes subgroup g is the invocations lid = SG·g … SG·g + SG − 1, lane = lid % SG: how Vulkan drivers lay out a
// one-dimensional workgroup (NVIDIA's and lavapipe's; the tests check it on lavapipe, the bench on the GPU).
import type { Block } from '../wgsl-block.ts';
import type { ChunkAnalysis, PrefixPlan, ResidentShape } from './analysis.ts';
import { elem, logDecayAt, phiVec, psiAt, psiVec, segBase, stateBuffer, stateRef, valueAt, valuesVec4, type ChunkKernel } from './declarations.ts';
import { laneFeatures, phiSStride, residentNeedsZ, type ResidentRegs } from './resident-shape.ts';


/** A lane's FL features: an f32 for one, else a vector. */
const laneType = (fl: number) => (fl === 1 ? 'f32' : `vec${fl}<f32>`);
const laneVec = (fl: number, parts: readonly string[]) => (fl === 1 ? parts[0] : `vec${fl}<f32>(${parts.join(', ')})`);
const laneDot = (fl: number, x: string, y: string) => (fl === 1 ? `${x} * ${y}` : `dot(${x}, ${y})`);
const laneComponent = (fl: number, v: string, k: number) => (fl === 1 ? v : `${v}.${'xyzw'[k]}`);

/** The lane builtin's name in the entry point (kernel-builder.ts BUILTINS). */
const LANE = 'lane';

const shapeOf = (a: ChunkAnalysis): ResidentShape => {
  if (!a.resident) throw new Error(`internal: ${a.p.name}: not a resident kernel`);
  return a.resident;
};

const range = (n: number) => [...Array(n).keys()];

/** The registers, zero, declared before the chunk loop (the kernel's state start). */
export function declareResident(a: ChunkAnalysis, main: Block): ResidentRegs | undefined {
  if (!a.resident) return undefined;
  const { SG, Cw } = a.resident;
  const sg = main.let('sgi', `lid / ${SG}u`, `this invocation's subgroup (lanes ${LANE} = lid % ${SG})`);
  const cw0 = main.let('cw0', `${sg} * ${Cw}u`, `its ${Cw} column(s) of the tile`);
  main.comment(`the prefix terms' state in registers: S[FL·${LANE} … FL·${LANE} + FL − 1][cw0 + c], z[FL·${LANE} … FL·${LANE} + FL − 1], FL = F / ${SG}`);
  const reg = (q: PrefixPlan, stem: string) => {
    const t = laneType(laneFeatures(a.resident!, q));
    return main.var(stem, `${t}(0.0)`, t);
  };
  return {
    cw0,
    sg,
    S: a.prefix.map((q) => range(Cw).map((c) => reg(q, `rS${q.k}_${c}`))),
    z: a.prefix.map((q) => reg(q, `rz${q.k}`)),
    open: a.prefix.map((q) => (q.openGroup ? { S: range(Cw).map((c) => reg(q, `rSo${q.k}_${c}`)), z: reg(q, `rzo${q.k}`) } : undefined)),
  };
}

/**
 * At the start of a chunk that starts a new group, a past_groups term's open group joins its closed ones, register by
 * register (the plain kernel's emitOpenGroupJoin, state.ts): before the products read S_prev.
 */
export function emitResidentGroupJoin(K: ChunkKernel, chunk: Block): void {
  const regs = regsOf(K);
  for (const q of K.a.prefix) {
    const open = regs.open[q.k];
    if (!open) continue;
    chunk.block(`if (c0 % ${q.openGroup}u == 0u && c0 > 0u)`, (b) => {
      b.comment(`a new group starts: term ${q.term.name}'s open group joins its registers`);
      const zero = laneType(laneFeatures(K.a.resident!, q));
      [...regs.S[q.k].map((r, c) => [r, open.S[c]]), [regs.z[q.k], open.z]].forEach(([r, o]) => {
        b.line(`${r} = ${r} + ${o};`);
        b.line(`${o} = ${zero}(0.0);`);
      });
    });
  }
}

const regsOf = (K: ChunkKernel): ResidentRegs => {
  if (!K.resident) throw new Error(`internal: ${K.a.p.name}: no resident registers declared`);
  return K.resident;
};

/**
 * This lane's FL features of a row of a vec4 array, `at(f4)` its vec4 f4: the lane's own vec4 (FL 4), or for FL 2 the
 * half of vec4 lane / 2 it holds — one 16-byte load that two lanes share, where two 4-byte loads at a stride of 8
 * bytes took twice the wavefronts —, else null (FL 1 reads its one component as it is).
 */
function vecSlice(b: Block, fl: number, at: (f4: string) => string): string | null {
  if (fl === 4) return at(LANE);
  if (fl !== 2) return null;
  const v = b.let('v4', at(`${LANE} / 2u`));
  return `select(${v}.xy, ${v}.zw, (${LANE} & 1u) != 0u)`;
}

/** This lane's FL features of row `row` of φ_k. */
function phiLanes(K: ChunkKernel, q: PrefixPlan, b: Block, row: string): string {
  const fl = laneFeatures(K.a.resident!, q);
  const slice = q.vec4 ? vecSlice(b, fl, (f4) => phiVec(K, q, row, f4)) : null;
  return slice ?? laneVec(fl, range(fl).map((k) => elem(K.arrays.prefix[q.k].phi, `(${row}) * ${q.F}u + ${LANE} * ${fl}u + ${k}u`)));
}

/** This lane's FL features of row `row` of ψ_k. */
function psiLanes(K: ChunkKernel, q: PrefixPlan, b: Block, row: string): string {
  const fl = laneFeatures(K.a.resident!, q);
  const slice = q.psiVec4 ? vecSlice(b, fl, (f4) => psiVec(K, q, row, f4)) : null;
  return slice ?? laneVec(fl, range(fl).map((k) => psiAt(K, q, row, `${LANE} * ${fl}u + ${k}u`)));
}

/**
 * Σ log(decay) from the chunk start to `row` for this lane's FL features (a per-feature decay, gla's), or the row's
 * one value (a scalar decay); null without decay.
 */
function logDecayLanes(K: ChunkKernel, q: PrefixPlan, row: string): string | null {
  if (!q.gateWidth) return null;
  // (logDecayAt multiplies the row it is given: an expression goes in parentheses)
  if (!q.gatePerFeature) return logDecayAt(K, q, `(${row})`, '0u');
  const fl = laneFeatures(K.a.resident!, q);
  return laneVec(fl, range(fl).map((k) => logDecayAt(K, q, `(${row})`, `${LANE} * ${fl}u + ${k}u`)));
}

/**
 * After the chunk is staged (and its decay summed up): φ_i·(decay_i ⊙ S_prev) into phiS_k[i][column] and
 * φ_i·(decay_i ⊙ z_prev) into phiZ_k[i], for every row i of the chunk, reduced over each subgroup's lanes. Every
 * invocation runs it (the shuffles need the whole subgroup), in uniform control flow; the score phase's barrier
 * follows (or one of its own where no group has a score matrix).
 */
export function emitResidentProducts(K: ChunkKernel, chunk: Block): void {
  const { a } = K;
  if (!a.resident || a.segmented === 'state') return; // a segment-state launch writes no outputs
  const { SG, Cw, RB, NB } = a.resident;
  const regs = regsOf(K);
  const vecC = Cw === 1 ? 'f32' : `vec${Cw}<f32>`;
  for (const q of a.prefix) {
    const { phiS, phiZ } = K.arrays.prefix[q.k];
    const fl = laneFeatures(a.resident, q);
    chunk.for('blk', '0u', (blk) => `${blk} < ${NB}u`, (l, blk) => {
      l.comment(`term ${q.term.name}: φ·S_prev of rows ${RB}·blk … ${RB}·blk + ${RB - 1}, each lane's ${fl} feature(s) first`);
      let parts: string[] = range(RB).map((r) => {
        const row = `${blk} * ${RB}u + ${r}u`;
        // a per-feature decay reaches S through each feature (decay_i ⊙ S): on φ's lanes, before the dot products
        const p = l.let(`p_${r}`, `${phiLanes(K, q, l, row)}${q.gatePerFeature ? ` * exp(${logDecayLanes(K, q, row)})` : ''}`);
        const dots = regs.S[q.k].map((S) => laneDot(fl, p, S));
        return l.let(`ps_${r}`, Cw === 1 ? dots[0] : `${vecC}(${dots.join(', ')})`);
      });
      // halving: at offset o the lanes with bit o keep the upper half of the rows, the others the lower half
      for (let off = SG / 2; parts.length > 1; off /= 2) {
        const upper = l.let('up', `(${LANE} & ${off}u) != 0u`);
        const half = parts.length / 2;
        parts = range(half).map((k) => l.let('hs', `select(${parts[k]}, ${parts[k + half]}, ${upper}) + subgroupShuffleXor(select(${parts[k + half]}, ${parts[k]}, ${upper}), ${off}u)`));
      }
      // then the Cw lanes of a row add up their columns' partial vectors. Four columns are halved too, as the rows
      // were (at offset o the lanes with bit o keep the upper half of the components, so lane l ends with column
      // l % Cw alone: 3 shuffles where sending the vec4 whole at offsets 2 and 1 took 8); two are sent whole, one
      // shuffle for a pair of selects being no gain. On the H200 (call 109, 2 runs of 3 rounds each, beside the
      // vectors sent whole): elu_dwconv d 128 (Cw 4) 1.373 / 1.375 → 1.355 / 1.359 ms; cosformer d 64 (Cw 2) halved
      // 1.424 / 1.427 against 1.414 / 1.414 whole, cosformer_aug 1.472 / 1.472 against 1.457 / 1.461.
      let s = parts[0];
      let whole = Cw;
      for (let off = Cw / 2; off >= 1; off /= 2) {
        if (Cw < 4) {
          s = l.let('hs', `${s} + subgroupShuffleXor(${s}, ${off}u)`);
          continue;
        }
        const upper = l.let('up', `(${LANE} & ${off}u) != 0u`);
        const [lo, hi] = [halfOf(s, whole, false), halfOf(s, whole, true)];
        s = l.let('hs', `select(${lo}, ${hi}, ${upper}) + subgroupShuffleXor(select(${hi}, ${lo}, ${upper}), ${off}u)`);
        whole /= 2;
      }
      const mine = whole === 1 ? s : `${s}[${LANE} % ${Cw}u]`;
      const i = l.let('i', `${blk} * ${RB}u + ${LANE} / ${Cw}u`);
      const decay = scalarDecay(K, q, l, i);
      l.line(`${phiS!.name}[${i} * ${phiSStride(a)}u + ${regs.cw0} + ${LANE} % ${Cw}u] = ${decay(mine)};`);
    });
    if (residentNeedsZ(a, q)) emitResidentZ(K, q, chunk);
  }
  if (!a.aGroups.length) chunk.line('workgroupBarrier();');
}

/** The lower or upper half of a vector of w (4 or 2) components. */
function halfOf(v: string, w: number, upper: boolean): string {
  if (w === 4) return `${v}.${upper ? 'zw' : 'xy'}`;
  if (w === 2) return `${v}.${upper ? 'y' : 'x'}`;
  throw new Error(`internal: no half of a vector of ${w}`);
}

/** A scalar decay's factor for row `i` (it scales the row's sums), or the identity. */
function scalarDecay(K: ChunkKernel, q: PrefixPlan, b: Block, i: string): (v: string) => string {
  if (!q.gateWidth || q.gatePerFeature) return (v) => v;
  const dr = b.let('dr', `exp(${logDecayAt(K, q, i, '0u')})`);
  return (v) => `${v} * ${dr}`;
}

/**
 * φ_i·(decay_i ⊙ z_prev) into phiZ_k[i] for every row i of the chunk. Every subgroup holds the whole of z (it does not
 * depend on the columns), so the rows are spread over the subgroups — subgroup g reduces rows g, g + W, … (W subgroups
 * a workgroup) with one subgroupAdd each — rather than every subgroup reducing every row beside its S and one of them
 * writing it: at d 128 (16 subgroups, 16 rows) a lane's share of a chunk went from 16 dot products, 18 shuffles and 28
 * selects to one dot product and one subgroupAdd (call 109 on the H200, bench/results/h200-resident-z.json: elu_dwconv
 * d 128 1.446 → 1.374 ms). Every invocation runs the loop (uniform control flow for the subgroup operation); a
 * subgroup past the last row reduces a clamped one and writes nothing.
 */
function emitResidentZ(K: ChunkKernel, q: PrefixPlan, chunk: Block): void {
  const { a } = K;
  const { SG } = a.resident!;
  const regs = regsOf(K);
  const fl = laneFeatures(a.resident!, q);
  const W = a.WG / SG;
  const trips = Math.ceil(a.C / W);
  chunk.for('zr', '0u', (zr) => `${zr} < ${trips}u`, (l, zr) => {
    l.comment(`term ${q.term.name}: φ·z_prev of row ${regs.sg} + ${W}·zr, this subgroup's`);
    const zi = l.let('zi', `${regs.sg} + ${zr} * ${W}u`);
    const row = l.let('zrow', `min(${zi}, ${a.C - 1}u)`);
    const p = l.let('pzl', `${phiLanes(K, q, l, row)}${q.gatePerFeature ? ` * exp(${logDecayLanes(K, q, row)})` : ''}`);
    const t = l.let('zt', `subgroupAdd(${laneDot(fl, p, regs.z[q.k])})`);
    const decay = scalarDecay(K, q, l, row);
    l.block(`if (${zi} < ${a.C}u && ${LANE} == 0u)`, (w) => w.line(`${K.arrays.prefix[q.k].phiZ!.name}[${zi}] = ${decay(t)};`));
  });
}

/** Row `il`'s φ·S_prev (decayed) of term q in tile column `cl`, for the outputs. */
export function residentStateTerm(K: ChunkKernel, q: PrefixPlan, il: string, cl: string): string {
  return `${K.arrays.prefix[q.k].phiS!.name}[(${il}) * ${phiSStride(K.a)}u + ${cl}]`;
}

/** Row `il`'s φ·z_prev terms (decayed) of output group g's prefix terms, where its denominator starts. */
export function residentDenominators(K: ChunkKernel, g: number, il: string): string[] {
  if (!K.a.resident && !K.a.earlyState) return [];
  // (an overlapped kernel computing them early has phiZ where the output team sums the denominators: early-state.ts)
  return K.a.prefix.filter((q) => K.a.groupTerms[g].includes(q.term) && K.arrays.prefix[q.k].phiZ).map((q) => `${K.arrays.prefix[q.k].phiZ!.name}[${il}]`);
}

/**
 * Phase 5 in registers: S_k ← decay ⊙ S_k + Σ_j (decay_{j→end} ψ_j) v_j over the lane's features and its subgroup's
 * columns, z_k likewise. It reads only ψ, the values and the lane's own registers, so it follows the outputs
 * without a barrier.
 */
export function emitResidentFold(K: ChunkKernel, chunk: Block): void {
  const { a } = K;
  const regs = regsOf(K);
  for (const q of a.prefix) {
    chunk.block('', (b) => {
      // (a group that spans several chunks gathers in its own registers until the next group starts: emitResidentGroupJoin)
      const open = regs.open[q.k];
      b.comment(`fold the chunk into term ${q.term.name}'s ${open ? 'open group' : 'registers'}`);
      const S = open?.S ?? regs.S[q.k];
      const z = open?.z ?? regs.z[q.k];
      const last = logDecayLanes(K, q, '(n - 1u)');
      const lend = last ? b.let('lend', last) : null;
      if (lend) {
        const dc = b.let('dc', `exp(${lend})`);
        for (const r of [...S, z]) b.line(`${r} = ${r} * ${dc};`);
      }
      // Every row of the chunk, not just its n: rows past the sequence are staged as zeros (ψ, v; their log-decay adds
      // 0), so they add nothing, and a loop of a constant C trips is one the shader compiler can unroll, issuing the
      // rows' loads ahead of their products — the hand kernel's loop to n was bound by each row's load latency.
      b.for('j', '0u', (j) => `${j} < ${a.C}u`, (l, j) => {
        const ps = l.let('ps', `${psiLanes(K, q, l, j)}${lend ? ` * exp(${lend} - ${logDecayLanes(K, q, j)})` : ''}`);
        // the subgroup's 4 columns of the row as one vec4 (valuesVec4: cw0 = 4·sg), else one column at a time
        const vv = valuesVec4(a) ? l.let('vv', `${K.arrays.vs.name}[(${j} + ${a.HALO}u) * ${a.R / 4}u + ${regs.sg}]`) : null;
        S.forEach((r, c) => l.line(`${r} = ${r} + ${ps} * ${vv ? `${vv}.${'xyzw'[c]}` : valueAt(K, `${j} + ${a.HALO}u`, `${regs.cw0} + ${c}u`)};`));
        l.line(`${z} = ${z} + ${ps};`);
      });
    });
  }
}

/**
 * A segmented plan's registers across launches (ChunkSchedule.segment): the segment-state launch stores each
 * segment's own S_k, z_k from them (storeResidentSegment), the output launch starts them from the scanned state
 * (loadResidentStart) — the buffers as chunked/state.ts and export.ts read and write them from workgroup memory:
 * S [b, NS, nseg, F, NR], z [b, NS, nseg, F].
 */
export function loadResidentStart(K: ChunkKernel, body: Block): void {
  const { a } = K;
  if (a.segmented !== 'output') return; // otherwise the registers start at zero where they are declared
  const regs = regsOf(K);
  for (const q of a.prefix) {
    const fl = laneFeatures(a.resident!, q);
    body.block('', (b) => {
      b.comment(`term ${q.term.name}'s registers from the state the scan left for this segment`);
      const segS = K.kb.use(K.io.segS[q.k]);
      const segZ = K.kb.use(K.io.segZ[q.k]);
      const f = (k: number) => `${LANE} * ${fl}u + ${k}u`;
      regs.S[q.k].forEach((r, c) => {
        const col = b.let('col', `tile * ${a.R}u + ${regs.cw0} + ${c}u`);
        const at = (k: number) => `${segS}[${segBase(K, q, 'S')} + (${f(k)}) * ${a.NR}u + min(${col}, ${a.NR - 1}u)]`;
        b.line(`${r} = select(${laneType(fl)}(0.0), ${laneVec(fl, range(fl).map(at))}, ${col} < ${a.NR}u);`);
      });
      b.line(`${regs.z[q.k]} = ${laneVec(fl, range(fl).map((k) => `${segZ}[${segBase(K, q, 'z')} + ${f(k)}]`))};`);
    });
  }
}

export function storeResidentSegment(K: ChunkKernel, body: Block): void {
  const { a } = K;
  const regs = regsOf(K);
  for (const q of a.prefix) {
    const fl = laneFeatures(a.resident!, q);
    body.block('', (b) => {
      b.comment(`this segment's own S and z of term ${q.term.name}, from the registers, for the scan`);
      const segS = K.kb.use(K.io.segS[q.k]);
      const segZ = K.kb.use(K.io.segZ[q.k]);
      const f = (k: number) => `${LANE} * ${fl}u + ${k}u`;
      // a past_groups term's segments start at group starts, so its last group, open or just closed, is its own too
      const open = regs.open[q.k];
      const own = (r: string, o: string | undefined) => (o ? `(${r} + ${o})` : r);
      regs.S[q.k].forEach((r, c) => {
        const col = b.let('col', `tile * ${a.R}u + ${regs.cw0} + ${c}u`);
        b.block(`if (${col} < ${a.NR}u)`, (w) => range(fl).forEach((k) => w.line(`${segS}[${segBase(K, q, 'S')} + (${f(k)}) * ${a.NR}u + ${col}] = ${laneComponent(fl, own(r, open?.S[c]), k)};`)));
      });
      // z once per segment: the first tile's first subgroup (every subgroup holds the same z)
      b.block(`if (tile == 0u && ${regs.sg} == 0u)`, (w) => range(fl).forEach((k) => w.line(`${segZ}[${segBase(K, q, 'z')} + ${f(k)}] = ${laneComponent(fl, own(regs.z[q.k], open?.z), k)};`)));
    });
  }
}

/**
 * The decoding state from the registers after the last chunk: S [b, NS, F, NR] (each lane its features of its
 * subgroup's columns) and z copied into each column, a past_groups term's last group So, zo apart, as export.ts writes
 * them from workgroup memory.
 */
export function exportResident(K: ChunkKernel, body: Block): void {
  const { a } = K;
  const regs = regsOf(K);
  const { Cw } = shapeOf(a);
  for (const q of a.prefix) {
    const fl = laneFeatures(a.resident!, q);
    const open = regs.open[q.k];
    if (q.exportOpen && !open) throw new Error(`internal: ${a.p.name}: term ${q.term.name} exports its last group apart but keeps no open group`);
    body.block('', (b) => {
      b.comment(`export term ${q.term.name}'s S and z${open ? ', and its open group' : ''} from the registers`);
      const Sb = stateRef(K, stateBuffer(K, q, 'S'));
      const zb = stateRef(K, stateBuffer(K, q, 'z'));
      for (let c = 0; c < Cw; c++) {
        const col = b.let('col', `tile * ${a.R}u + ${regs.cw0} + ${c}u`);
        b.block(`if (${col} < ${a.NR}u)`, (w) => {
          for (let k = 0; k < fl; k++) {
            const at = w.let('at', `((b * ${a.NS}u + s) * ${q.F}u + ${LANE} * ${fl}u + ${k}u) * ${a.NR}u + ${col}`);
            w.line(`${Sb}[${at}] = ${laneComponent(fl, regs.S[q.k][c], k)};`);
            w.line(`${zb}[${at}] = ${laneComponent(fl, regs.z[q.k], k)};`);
            // decoding keeps the last group apart: the open group's registers hold it (the join runs only at a chunk
            // that starts a group, so after the last chunk they hold the group of the last row)
            if (open) w.line(`${stateRef(K, stateBuffer(K, q, 'So'))}[${at}] = ${laneComponent(fl, open.S[c], k)};`);
          }
        });
      }
      if (open) {
        const zo = stateRef(K, stateBuffer(K, q, 'zo'));
        b.block(`if (tile == 0u && ${regs.sg} == 0u)`, (w) => range(fl).forEach((k) => w.line(`${zo}[(b * ${a.NS}u + s) * ${q.F}u + ${LANE} * ${fl}u + ${k}u] = ${laneComponent(fl, open.z, k)};`)));
      }
    });
  }
}
