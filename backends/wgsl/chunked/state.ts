// The prefix terms' state in workgroup memory across chunks, per term k and this tile's columns:
//
//   S_k ← decay_chunk ⊙ S_k + Σ_j (decay_{j→end} ψ_k,j) ⊗ v_j        z_k ← decay_chunk ⊙ z_k + Σ_j decay_{j→end} ψ_k,j
//
// Its start (zero, or a segment's scanned incoming state), a past_groups term's open group joining S when the
// next group starts, and the fold at the end of each chunk (phase 5), which for a state export keeps the last
// group apart when decoding needs it open; a term with no open group folds tiled (fold-tiled.ts). The open group's
// So [F][R] lives in registers, each invocation's elements x = lid + t·WG (openTrips): every phase that touches it —
// the fold, the join, the exports — walks the same elements, so no workgroup memory is spent on it (flash's and
// llama_linearized's fused kernels fit 32 value columns at chunk 16 where they fitted 16).
import type { Block, Team } from '../wgsl-block.ts';
import type { PrefixPlan } from './analysis.ts';
import { elem, logDecayAt, psiAt, psiVec, segBase, stateArrays, stateBuffer, stateRef, type ChunkKernel } from './declarations.ts';
import { foldTiled, lanes } from './fold-tiled.ts';
import { emitResidentFold, emitResidentGroupJoin, loadResidentStart } from './resident.ts';
import { sumsOwnSpans } from './segments.ts';

/** Zero the state (or, for a segment's outputs, load the state the scan left for it), before the first chunk. */
export function emitStateStart(K: ChunkKernel, body: Block): void {
  const { a } = K;
  for (const q of a.prefix) {
    // a segment-state launch's Σ log decay over its chunks (emitSegmentDecay), from 0
    const segL = K.arrays.prefix[q.k].segL;
    if (segL && !segL.regs.length) segL.regs.push(...gateTrips(K, q).map((_, t) => body.var(`segl${q.k}_${t}`, '0.0')));
  }
  if (a.resident) return loadResidentStart(K, body); // zero where declared, or a segment's scanned state (resident.ts)
  const R = a.R;
  // a past_groups term's open group starts empty, a segment's too: segments start at group starts (segments.ts)
  for (const q of a.prefix) {
    const So = K.arrays.prefix[q.k].So;
    if (So && !So.regs.length) So.regs.push(...openTrips(K, q).map((_, t) => body.var(`so${q.k}_${t}`, '0.0')));
  }
  body.strided('x', `${Math.max(1, ...a.prefix.map((q) => q.F * R), 1)}u`, (b, x) => {
    for (const q of a.prefix) {
      const { S, z, zo } = stateArrays(K, q);
      if (zo) b.block(`if (${x} < ${q.F}u)`, (i) => i.line(`${zo.name}[${x}] = 0.0;`));
      if (sumsOwnSpans(a)) {
        // over spans without a scan launch (segments.ts sumsOwnSpans): the own states of the segments before this span, summed here
        const segS = K.kb.use(K.io.segS[q.k]);
        const segZ = K.kb.use(K.io.segZ[q.k]);
        // a decayed term's segments combine through their Σ log decay (segments.ts), gate value gi of feature f
        const segG = K.io.segG[q.k] ? K.kb.use(K.io.segG[q.k]!) : null;
        const decay = (f: string) => (segG ? (g: string) => `${segG}[${g} + ${q.gatePerFeature ? f : '0u'}]` : undefined);
        b.block(`if (${x} < ${q.F * R}u)`, (i) => {
          const col = i.let('col', `tile * ${R}u + ${x} % ${R}u`);
          const run = sumSegments(K, i, `${a.NR * q.F}u`, (g) => `${segS}[${g} + (${x} / ${R}u) * ${a.NR}u + min(${col}, ${a.NR - 1}u)]`, '', decay(`(${x} / ${R}u)`), q.gateWidth);
          i.line(`${S.name}[${x}] = select(0.0, ${run}, ${col} < ${a.NR}u);`);
        });
        if (q.vec4) b.block(`if (${x} < ${q.F / 4}u)`, (i) => i.line(`${z.name}[${x}] = vec4<f32>(${[0, 1, 2, 3].map((k) => sumSegments(K, i, `${q.F}u`, (g) => `${segZ}[${g} + ${x} * 4u + ${k}u]`, `z${k}`, decay(`(${x} * 4u + ${k}u)`), q.gateWidth)).join(', ')});`));
        else b.block(`if (${x} < ${q.F}u)`, (i) => i.line(`${z.name}[${x}] = ${sumSegments(K, i, `${q.F}u`, (g) => `${segZ}[${g} + ${x}]`, '', decay(x), q.gateWidth)};`));
        continue;
      }
      if (a.segmented === 'output') {
        b.block(`if (${x} < ${q.F * R}u)`, (i) => {
          const col = i.let('col', `tile * ${R}u + ${x} % ${R}u`);
          i.line(`${S.name}[${x}] = select(0.0, ${K.kb.use(K.io.segS[q.k])}[${segBase(K, q, 'S')} + (${x} / ${R}u) * ${a.NR}u + ${col}], ${col} < ${a.NR}u);`);
        });
        const segZ = (f: string) => `${K.kb.use(K.io.segZ[q.k])}[${segBase(K, q, 'z')} + ${f}]`;
        if (q.vec4) b.block(`if (${x} < ${q.F / 4}u)`, (i) => i.line(`${z.name}[${x}] = ${lanes((k) => segZ(`${x} * 4u + ${k}u`))};`));
        else b.block(`if (${x} < ${q.F}u)`, (i) => i.line(`${z.name}[${x}] = ${segZ(x)};`));
        continue;
      }
      b.block(`if (${x} < ${q.F * R}u)`, (i) => i.line(`${S.name}[${x}] = 0.0;`));
      b.block(`if (${x} < ${zJobs(q)}u)`, (i) => i.line(`${z.name}[${x}] = ${q.vec4 ? 'vec4<f32>(0.0)' : '0.0'};`));
    }
  });
  body.line('workgroupBarrier();');
}

/**
 * Σ_{g < sg·P} of `at(offset of segment g)` (a segment's state is `per` floats), eight independent loads a trip; with
 * `decay` (a decayed term: `decay(offset of segment g's gates)` its Σ log decay, `gates` a segment) the recurrence
 * run ← exp(L_g)·run + own_g instead (segments.ts), its loads still issued eight at a time.
 */
function sumSegments(K: ChunkKernel, b: Block, per: string, at: (g: string) => string, tag = '', decay?: (g: string) => string, gates = 0): string {
  const P = K.a.spec.schedule.span!;
  const run = b.var(`run${tag}`, '0.0');
  b.for(`g${tag}`, '0u', (g) => `${g} < sg * ${P}u`, (l, g) => {
    const seg = (i: number) => `((b * ${K.a.NS}u + s) * nseg + ${g} + ${i}u)`;
    const parts = [...Array(8).keys()].map((i) => {
      const v = l.var(`own${tag}_${i}`, '0.0');
      const e = decay ? l.var(`keep${tag}_${i}`, '1.0') : null;
      l.line(`if (${g} + ${i}u < sg * ${P}u) { ${v} = ${at(`${seg(i)} * ${per}`)};${e ? ` ${e} = exp(${decay!(`${seg(i)} * ${gates}u`)});` : ''} }`);
      return { v, e };
    });
    if (decay) for (const { v, e } of parts) l.line(`${run} = ${e} * ${run} + ${v};`);
    else l.line(`${run} = ${run} + ${parts.map((x) => x.v).join(' + ')};`);
  }, { step: (g) => `${g} += 8u` });
  return run;
}

/** A decayed term's gate values this invocation accumulates a segment's Σ log decay for (PrefixArrays.segL): registerTrips. */
export const gateTrips = (K: Pick<ChunkKernel, 'a' | 'arrays'>, q: PrefixPlan) => registerTrips(K.a.WG, q.gateWidth, K.arrays.prefix[q.k].segL?.regs);

/**
 * A segment-state launch, after each chunk's decay prefix (stage.ts emitDecayPrefix, which ends in a barrier): the
 * chunk's Σ log decay (the prefix's last row) added to the segment's, per gate value, in registers.
 */
export function emitSegmentDecay(K: ChunkKernel, chunk: Block): void {
  for (const q of K.a.prefix) {
    const segL = K.arrays.prefix[q.k].segL;
    if (!segL) continue;
    const lg = K.arrays.prefix[q.k].lg!.name;
    for (const { x, guard, reg } of gateTrips(K, q)) {
      const line = `${reg} = ${reg} + ${lg}[(n - 1u) * ${q.gateWidth}u + ${x}];`;
      if (guard) chunk.line(`if (${guard}) { ${line} }`);
      else chunk.line(line);
    }
  }
}

/** The open group's elements this invocation holds (PrefixArrays.So), flat indices into [F][R]: registerTrips. */
export const openTrips = (K: Pick<ChunkKernel, 'a' | 'arrays'>, q: PrefixPlan) => registerTrips(K.a.WG, q.F * K.a.R, K.arrays.prefix[q.k].So?.regs);

/**
 * n values kept in registers across chunks, WG invocations holding them: trip t's index x = lid + t·WG, its register
 * (regs[t], '' before emitStateStart declares them), and the guard where a trip can pass n (null where it never does).
 */
function registerTrips(WG: number, n: number, regs: readonly string[] = []): { x: string; guard: string | null; reg: string }[] {
  return [...Array(Math.ceil(n / WG)).keys()].map((t) => ({ x: `(lid + ${t * WG}u)`, guard: (t + 1) * WG <= n ? null : `lid + ${t * WG}u < ${n}u`, reg: regs[t] ?? '' }));
}

/** `body` for each element of the open group this invocation holds (openTrips), guarded where a trip can pass F·R. */
export function eachOpen(K: ChunkKernel, q: PrefixPlan, b: Block, body: (l: Block, x: string, reg: string) => void): void {
  for (const { x, guard, reg } of openTrips(K, q)) {
    if (!reg) throw new Error(`internal: ${K.a.spec.label}: term ${q.term.name}'s open group is read before its registers are declared (emitStateStart)`);
    if (guard) b.block(`if (${guard})`, (l) => body(l, x, reg));
    else b.block('', (l) => body(l, x, reg));
  }
}

/** At the start of a chunk that starts a new group, the open group of a past_groups term joins S_k. */
export function emitOpenGroupJoin(K: ChunkKernel, chunk: Block): void {
  if (K.a.resident) return emitResidentGroupJoin(K, chunk);
  for (const q of K.a.prefix) {
    const { So, zo } = K.arrays.prefix[q.k];
    if (!So || !zo) continue;
    const { S, z } = stateArrays(K, q);
    chunk.block(`if (c0 % ${q.openGroup}u == 0u && c0 > 0u)`, (b) => {
      b.comment(`a new group starts: the open one joins ${S.name}`);
      eachOpen(K, q, b, (l, x, reg) => {
        l.line(`${S.name}[${x}] = ${S.name}[${x}] + ${reg};`);
        l.line(`${reg} = 0.0;`);
      });
      b.strided('x', `${q.F}u`, (l, x) => {
        l.line(`${elem(z, x)} = ${elem(z, x)} + ${elem(zo, x)};`);
        l.line(`${elem(zo, x)} = 0.0;`);
      });
    });
  }
}

/**
 * The z update's invocations: one per feature, or per four features where z is vec4 (PrefixPlan.vec4) — so that
 * each writes a whole vec4: invocations writing components of one vec4 would race where a backend stores a
 * component as a read-modify-write of the vector (Tint's HLSL does).
 */
export const zJobs = (q: PrefixPlan) => (q.vec4 ? q.F / 4 : q.F);

/**
 * z_k[f] ← decay ⊙ z_k[f] + Σ_j decay_{j→end} ψ_k,j[f], for a term with no open group: `f` is the job (zJobs), a
 * feature or, for a vec4 z, features 4·f … 4·f + 3; `into`: a register that holds the new value instead (teams.ts).
 */
export function emitZUpdate(K: ChunkKernel, q: PrefixPlan, b: Block, f: string, into?: string): void {
  const z = stateArrays(K, q).z;
  if (q.vec4) {
    const f0 = b.let('f_0', `${f} * 4u`);
    const logDecay = (row: string) => (q.gatePerFeature ? lanes((k) => logDecayAt(K, q, row, `${f0} + ${k}u`)) : logDecayAt(K, q, row, f0));
    const psi = (j: string) => (q.psiVec4 ? psiVec(K, q, j, f) : lanes((k) => psiAt(K, q, j, `${f0} + ${k}u`)));
    const lend = q.gateWidth ? b.let('lend', logDecay('(n - 1u)')) : null;
    const acc = b.var('acc', `${z.name}[${f}]${lend ? ` * exp(${lend})` : ''}`, 'vec4<f32>');
    b.for('j', '0u', (j) => `${j} < n`, (l, j) => l.line(`${acc} = ${acc} + ${psi(j)}${lend ? ` * exp(${lend} - ${logDecay(j)})` : ''};`));
    b.line(`${into ?? `${z.name}[${f}]`} = ${acc};`);
    return;
  }
  const lend = b.let('lend', logDecayAt(K, q, '(n - 1u)', f));
  const acc = b.var('acc', `${elem(z, f)} * exp(${lend})`);
  b.for('j', '0u', (j) => `${j} < n`, (l, j) => l.line(`${acc} = ${acc} + ${psiAt(K, q, j, f)} * exp(${lend} - ${logDecayAt(K, q, j, f)});`));
  b.line(`${into ?? elem(z, f)} = ${acc};`);
}

/** Phase 5: fold the chunk into the state (after the outputs have read S_prev). */
export function emitFold(K: ChunkKernel, chunk: Block): void {
  if (!K.a.prefix.length) return;
  if (K.a.resident) return emitResidentFold(K, chunk); // no barrier: the outputs read phiS, not the registers
  chunk.line('workgroupBarrier();');
  for (const q of K.a.prefix) {
    if (q.openGroup) foldIntoOpenGroup(K, q, chunk);
    else if (q.exportOpen) foldKeepingLastGroup(K, q, chunk);
    else {
      foldTiled(K, q, chunk);
      emitZFold(K, q, chunk);
    }
  }
}

/** z_k's share of a tiled fold (where the denominator phase has not folded it already), by `team` if given. */
export function emitZFold(K: ChunkKernel, q: PrefixPlan, chunk: Block, team?: Team): void {
  if (!K.a.zEarly.includes(q)) chunk.strided('f', `${zJobs(q)}u`, (b, f) => emitZUpdate(K, q, b, f), team);
}

/** The chunk lies inside one group, which stays open: So_k, zo_k += Σ_j ψ_j ⊗ v_j; it joins S when the next group starts. */
function foldIntoOpenGroup(K: ChunkKernel, q: PrefixPlan, chunk: Block): void {
  const { a } = K;
  const { zo } = K.arrays.prefix[q.k];
  chunk.comment(`So${q.k} (registers) += Σ_j ψ_j ⊗ v_j`);
  eachOpen(K, q, chunk, (b, x, reg) => {
    const f = b.let('f', `${x} / ${a.R}u`);
    const cl = b.let('cl', `${x} % ${a.R}u`);
    b.for('j', '0u', (j) => `${j} < n`, (l, j) => l.line(`${reg} = ${reg} + ${psiAt(K, q, j, f)} * ${K.arrays.vs.name}[(${j} + ${a.HALO}u) * ${a.R}u + ${cl}];`));
  });
  chunk.strided('f', `${q.F}u`, (b, f) => {
    const acc = b.var('acc', `${zo!.name}[${f}]`);
    b.for('j', '0u', (j) => `${j} < n`, (l, j) => l.line(`${acc} = ${acc} + ${psiAt(K, q, j, f)};`));
    b.line(`${zo!.name}[${f}] = ${acc};`);
  });
}

/**
 * A state export of a past_groups term: decoding keeps the last (open) group apart, so the chunk's rows of that
 * group go to the exported So_k, zo_k (written on the last chunk) and only earlier rows into S_k, z_k.
 */
function foldKeepingLastGroup(K: ChunkKernel, q: PrefixPlan, chunk: Block): void {
  const { a } = K;
  const { S, z } = stateArrays(K, q);
  chunk.strided('x', `${q.F * a.R}u`, (b, x) => {
    b.comment(`${S.name} ← decay ⊙ ${S.name} + Σ_j ψ_j ⊗ v_j`);
    const f = b.let('f', `${x} / ${a.R}u`);
    const cl = b.let('cl', `${x} % ${a.R}u`);
    const { acc, accOpen } = foldSplitAtLastGroup(K, q, b, f, `${S.name}[${x}]`, 'pv', (j) => `${psiAt(K, q, j, f)} * ${K.arrays.vs.name}[(${j} + ${a.HALO}u) * ${a.R}u + ${cl}]`);
    b.block(`if (c + 1u == nchunks && tile * ${a.R}u + ${cl} < ${a.NR}u)`, (l) =>
      l.line(`${stateRef(K, stateBuffer(K, q, 'So'))}[((b * ${a.NS}u + s) * ${q.F}u + ${f}) * ${a.NR}u + tile * ${a.R}u + ${cl}] = ${accOpen};`),
    );
    b.line(`${S.name}[${x}] = ${acc};`);
  });
  chunk.strided('f', `${q.F}u`, (b, f) => {
    const { acc, accOpen } = foldSplitAtLastGroup(K, q, b, f, elem(z, f), 'pz', (j) => psiAt(K, q, j, f));
    b.block('if (c + 1u == nchunks && tile == 0u)', (l) => l.line(`${stateRef(K, stateBuffer(K, q, 'zo'))}[(b * ${a.NS}u + s) * ${q.F}u + ${f}] = ${accOpen};`));
    b.line(`${elem(z, f)} = ${acc};`);
  });
}

/**
 * acc = decay ⊙ `old` + the chunk's rows j before the last group (t_g = the last group's start), accOpen = those
 * in it; `row(j)` is row j's contribution (named `stem`).
 */
function foldSplitAtLastGroup(K: ChunkKernel, q: PrefixPlan, b: Block, f: string, old: string, stem: string, row: (j: string) => string): { acc: string; accOpen: string } {
  const lend = b.let('lend', logDecayAt(K, q, '(n - 1u)', f));
  const acc = b.var('acc', `${old} * exp(${lend})`);
  const tg = b.let('tg', `${q.exportOpen}u * ((dims.t - 1u) / ${q.exportOpen}u)`);
  const accOpen = b.var('accOpen', '0.0');
  b.for('j', '0u', (j) => `${j} < n`, (l, j) => {
    const pv = l.let(stem, row(j));
    l.ifChain([[`c0 + ${j} >= ${tg}`, (t) => t.line(`${accOpen} = ${accOpen} + ${pv};`)], [null, (e) => e.line(`${acc} = ${acc} + ${pv};`)]]);
  });
  return { acc, accOpen };
}
