// The chunked form in float64: the algorithm of the GPU chunked kernel (backends/wgsl/chunked.ts) without its
// tiling, so a reader learns the trick here and a kernel bug shows up as a disagreement with this file.
// T is cut into chunks of C positions c0 … c0+n−1; only the prefix terms' state and one chunk's score
// matrices live at a time (O(C·(C + halo)) scores, never T×T). Per chunk:
//
//   A_g[i, j] = Σ_{terms of output item g} s(i, j),   i in the chunk, j in the chunk or its halo (K−1 rows back)
//       prefix term:   φ_iᵀ (D(i, j) ⊙ ψ_j), j in the chunk, D(i, j) = exp(L_i − L_j) from the inclusive
//                      cumulative log-decay L from the chunk start (gate α), or γ^(i−j) (constant γ), or 1
//       bounded term:  the score as written (toeplitz or quadratic), under its mask
//   num_g,i = Σ_j A_g[i, j] v_j + Σ_{prefix k ∈ g} Σ_f φ_k,i ⊙ D(i, c0−1) ⊙ S_k       den_g,i = Σ_j A_g[i, j] + … z_k
//   o_i     = Σ_g num_g,i, divided by (den_g,i + eps) for a normalised item
//   S_k ← D(end, c0−1) ⊙ S_k + Σ_j D(end, j) ψ_k,j ⊗ v_j,   z_k ← D(end, c0−1) ⊙ z_k + Σ_j D(end, j) ψ_k,j
//
// A past_groups term adds no decay; its state holds every earlier chunk, which lies in earlier groups only when C
// is a multiple of the group size, so that is required.
import { lagRange, maskAllows, maskToString } from '../../src/ir/masks.ts';
import { bindShapes, type Bound } from '../../src/ir/shapes.ts';
import type { PrefixForm } from '../../src/ir/terms.ts';
import type { Id, Program, Term } from '../../src/ir/types.ts';
import type { Tensor } from '../../src/tensor.ts';
import { Evaluator } from './evaluator.ts';
import { count, forEachBroadcast, map, reduce, zip, type Named, type Sizes } from './named.ts';
import { shapesOf } from './parallel.ts';
import { evaluateSoftmaxChunked } from './softmax-chunked.ts';


/** One prefix term's state for one sequence: S = Σ_j D(now, j) ψ_j ⊗ v_j and z = Σ_j D(now, j) ψ_j. */
interface PrefixState {
  S: Named | null;
  z: Named | null;
}

/** One prefix term's per-row quantities within the current chunk. */
interface PrefixRows {
  phi: Named[];
  psi: Named[];
  /** Inclusive Σ_{l=c0..c0+r} log α_l (gate decays only). */
  logDecay: Named[] | null;
}

/** A score matrix over (chunk row, halo + chunk column) for one output item and one value. */
interface ScoreBlock {
  readonly value: Id;
  /** The output axes the item's scores carry (W elements per entry). */
  readonly axes: readonly string[];
  readonly data: Float64Array; // [C, CH, W]
}

const add = (a: Named | null, b: Named, s: Sizes): Named => (a ? zip(a, b, s, (x, y) => x + y) : b);
const mul = (a: Named, b: Named, s: Sizes): Named => zip(a, b, s, (x, y) => x * y);

/** `offset` is the position value of t = 0 (gradient stages run in reversed time with positions −(T−1)…0). */
export function evaluateChunked(p: Program, tensors: Readonly<Record<string, Tensor>>, chunk: number, offset = 0): Tensor<Float64Array> {
  if (!Number.isInteger(chunk) || chunk < 1) throw new Error(`chunk must be a positive integer, got ${chunk}`);
  if (p.terms.some((t) => t.form.kind === 'softmax')) return evaluateSoftmaxChunked(p, tensors, chunk, offset);
  const halo = checkTerms(p, chunk);
  const bound = bindShapes(p, shapesOf(tensors));
  const ev = new Evaluator(p, tensors, bound, offset);
  const s = bound.sizes;
  const per = count(p.outAxes, s);
  const out = new Float64Array(bound.b * bound.t * per);
  for (let b = 0; b < bound.b; b++) new ChunkedSequence(p, ev, bound, chunk, halo, b).run(out.subarray(b * bound.t * per, (b + 1) * bound.t * per));
  return { shape: [bound.b, bound.t, ...p.outAxes.map((a) => s[a])], data: out };
}

/** Refuses what the chunked form cannot run and returns the halo: how far bounded terms reach back. */
function checkTerms(p: Program, chunk: number): number {
  let halo = 0;
  for (const t of p.terms) {
    if (t.form.kind === 'general') throw new Error(`term ${t.name} is unclassified: run the passes before the chunked form`);
    if (t.noncausal) throw new Error(`term ${t.name} is noncausal (it reads positions after i): ${p.name} runs in the parallel form only`);
    if (t.form.kind === 'prefix') {
      const m = t.mask[0];
      if (m.kind === 'past_groups' && chunk % m.size !== 0) {
        throw new Error(`chunk ${chunk} must be a multiple of the group size ${m.size} (term ${t.name}, mask ${maskToString(t.mask)})`);
      }
      continue;
    }
    const r = lagRange(t.mask);
    if (!r) throw new Error(`term ${t.name} (${t.form.kind}) has the unbounded mask ${maskToString(t.mask)}`);
    halo = Math.max(halo, r[1]);
  }
  return halo;
}

/** The chunk loop over one sequence b. */
class ChunkedSequence {
  private readonly s: Sizes;
  private readonly CH: number;
  private readonly state = new Map<string, PrefixState>();
  private readonly byName: ReadonlyMap<string, Term>;

  constructor(
    private readonly p: Program,
    private readonly ev: Evaluator,
    private readonly bound: Bound,
    private readonly C: number,
    private readonly halo: number,
    private readonly b: number,
  ) {
    this.s = bound.sizes;
    this.CH = C + halo;
    this.byName = new Map(p.terms.map((t) => [t.name, t]));
    for (const t of p.terms) if (t.form.kind === 'prefix') this.state.set(t.name, { S: null, z: null });
  }

  /** Fills out ([t, …outAxes] of this sequence) chunk by chunk. */
  run(out: Float64Array): void {
    const per = count(this.p.outAxes, this.s);
    for (let c0 = 0; c0 < this.bound.t; c0 += this.C) {
      const n = Math.min(this.C, this.bound.t - c0);
      const rows = new Map<string, PrefixRows>();
      for (const t of this.p.terms) if (t.form.kind === 'prefix') rows.set(t.name, this.prefixRows(t, t.form, c0, n));
      const acc = new Float64Array(n * per);
      for (const item of this.p.output) {
        const terms = (item.kind === 'term' ? [item.term] : item.terms).map((nm) => this.byName.get(nm)!);
        const blocks = this.scoreBlocks(terms, rows, c0, n);
        const { num, den } = this.applyBlocks(blocks, c0, n);
        for (const t of terms) if (t.form.kind === 'prefix') this.readState(t, t.form, rows.get(t.name)!, n, num, den);
        for (let x = 0; x < n * per; x++) acc[x] += item.kind === 'norm' ? num[x] / (den[x] + item.eps) : num[x];
      }
      out.set(acc, c0 * per);
      for (const t of this.p.terms) if (t.form.kind === 'prefix') this.fold(t, t.form, rows.get(t.name)!, c0, n);
    }
  }

  /** φ, ψ and the cumulative log-decay of a prefix term at each row of the chunk. */
  private prefixRows(t: Term, f: PrefixForm, c0: number, n: number): PrefixRows {
    const phi: Named[] = [];
    const psi: Named[] = [];
    let logDecay: Named[] | null = null;
    for (let r = 0; r < n; r++) {
      const i = c0 + r;
      phi.push(this.ev.pair(f.phi, this.b, i, i));
      psi.push(this.ev.pair(f.psi, this.b, i, i));
    }
    if (f.decay?.kind === 'gate') {
      logDecay = [];
      let L: Named | null = null;
      for (let r = 0; r < n; r++) {
        const alpha = this.ev.token(f.decay.alpha, this.b, c0 + r);
        const bad = alpha.data.findIndex((a) => !(a > 0));
        if (bad >= 0) throw new Error(`term ${t.name}: the chunked form takes log-decays, so decay factors must be > 0 (got ${alpha.data[bad]} at b=${this.b}, t=${c0 + r})`);
        const logA = map(alpha, Math.log);
        L = L ? zip(L, logA, this.s, (x, y) => x + y) : logA;
        logDecay.push(L);
      }
    }
    return { phi, psi, logDecay };
  }

  /**
   * D(c0 + r, c0 + r0) for r0 ≥ −1 (−1: the state before the chunk): exp(L_r − L_r0) for a gate, γ^(r − r0) for
   * a constant decay, null for none.
   */
  private decay(f: PrefixForm, rows: PrefixRows, r: number, r0: number): Named | null {
    if (!f.decay) return null;
    if (f.decay.kind === 'constant') return map(this.ev.pair(f.decay.gamma, this.b, 0, 0), (g) => g ** (r - r0));
    const L = rows.logDecay!;
    return r0 < 0 ? map(L[r], Math.exp) : zip(L[r], L[r0], this.s, (x, y) => Math.exp(x - y));
  }

  /** Σ_feature of a product (the feature axis, when present, is contracted). */
  private contract(f: PrefixForm, x: Named): Named {
    return f.feature ? reduce(x, f.feature, this.s, (a, v) => a + v) : x;
  }

  /** The item's intra-chunk score matrices, one per value its terms read. */
  private scoreBlocks(terms: readonly Term[], rows: ReadonlyMap<string, PrefixRows>, c0: number, n: number): ScoreBlock[] {
    const { C, CH, halo, s } = this;
    const scoreAxes = new Set(terms.flatMap((t) => this.p.nodes[t.score].type.axes));
    const axes = this.p.outAxes.filter((a) => scoreAxes.has(a));
    const W = count(axes, s);
    const blocks = new Map<Id, ScoreBlock>();
    for (const t of terms) {
      let block = blocks.get(t.value);
      if (!block) blocks.set(t.value, (block = { value: t.value, axes, data: new Float64Array(C * CH * W) }));
      const put = (r: number, jj: number, score: Named) =>
        forEachBroadcast(axes, s, [score.axes], (o, [si]) => {
          block.data[(r * CH + jj) * W + o] += score.data[si];
        });
      for (let r = 0; r < n; r++) {
        const i = c0 + r;
        for (let jj = 0; jj < CH; jj++) {
          const j = c0 + jj - halo;
          if (j < 0 || !maskAllows(t.mask, i, j)) continue;
          if (t.form.kind === 'prefix') {
            if (j < c0) continue; // earlier chunks reach a prefix term through its state
            const q = rows.get(t.name)!;
            const d = this.decay(t.form, q, r, j - c0);
            const prod = mul(q.phi[r], q.psi[j - c0], s);
            put(r, jj, this.contract(t.form, d ? mul(prod, d, s) : prod));
          } else {
            put(r, jj, this.ev.pair(t.score, this.b, i, j, new Map()));
          }
        }
      }
    }
    return [...blocks.values()];
  }

  /** num = Σ_blocks A·V and den = Σ_blocks A·1 over the chunk's rows, [n, …outAxes]. */
  private applyBlocks(blocks: readonly ScoreBlock[], c0: number, n: number): { num: Float64Array; den: Float64Array } {
    const { CH, halo, s } = this;
    const outAxes = this.p.outAxes;
    const per = count(outAxes, s);
    const num = new Float64Array(n * per);
    const den = new Float64Array(n * per);
    for (const blk of blocks) {
      const W = count(blk.axes, s);
      for (let jj = 0; jj < CH; jj++) {
        const j = c0 + jj - halo;
        if (j < 0 || j >= this.bound.t) continue;
        const v = this.ev.token(blk.value, this.b, j);
        for (let r = 0; r < n; r++) {
          const base = (r * CH + jj) * W;
          forEachBroadcast(outAxes, s, [blk.axes, v.axes], (o, [ai, vi]) => {
            const a = blk.data[base + ai];
            num[r * per + o] += a * v.data[vi];
            den[r * per + o] += a;
          });
        }
      }
    }
    return { num, den };
  }

  /** Adds Σ_f φ_i ⊙ D(i, c0−1) ⊙ S (and … ⊙ z to den) for every row: what earlier chunks contribute. */
  private readState(t: Term, f: PrefixForm, rows: PrefixRows, n: number, num: Float64Array, den: Float64Array): void {
    const st = this.state.get(t.name)!;
    if (!st.S || !st.z) return;
    const outAxes = this.p.outAxes;
    const per = count(outAxes, this.s);
    for (let r = 0; r < n; r++) {
      const d = this.decay(f, rows, r, -1);
      const w = d ? mul(rows.phi[r], d, this.s) : rows.phi[r];
      const x = this.contract(f, mul(w, st.S, this.s));
      const y = this.contract(f, mul(w, st.z, this.s));
      forEachBroadcast(outAxes, this.s, [x.axes, y.axes], (o, [xi, yi]) => {
        num[r * per + o] += x.data[xi];
        den[r * per + o] += y.data[yi];
      });
    }
  }

  /** S ← D(end, c0−1) ⊙ S + Σ_j D(end, j) ψ_j ⊗ v_j, and z likewise: the chunk folded into the state. */
  private fold(t: Term, f: PrefixForm, rows: PrefixRows, c0: number, n: number): void {
    const st = this.state.get(t.name)!;
    const s = this.s;
    const end = n - 1;
    const carry = this.decay(f, rows, end, -1);
    let S = st.S && carry ? mul(st.S, carry, s) : st.S;
    let z = st.z && carry ? mul(st.z, carry, s) : st.z;
    for (let r = 0; r < n; r++) {
      const d = this.decay(f, rows, end, r);
      const psi = d ? mul(rows.psi[r], d, s) : rows.psi[r];
      S = add(S, mul(psi, this.ev.token(t.value, this.b, c0 + r), s), s);
      z = add(z, psi, s);
    }
    st.S = S;
    st.z = z;
  }
}
