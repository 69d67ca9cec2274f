// The recurrent form in float64: one token in, state updated, one output out (what decoding runs).
// State per sequence: for each prefix term S = Σ_j (decay) ψ_j ⊗ v_j and z = Σ_j ψ_j (past_groups terms keep the
// open group apart until it closes), plus a bounded history of the last tokens' inputs for window/group terms
// (the convolution's ring buffer and the open group's keys and values) — unbounded for softmax attention, whose
// state is every earlier token (its key/value cache).
import { maskAllows } from '../../src/ir/masks.ts';
import { bindShapes, type Bound } from '../../src/ir/shapes.ts';
import type { Program, Term } from '../../src/ir/types.ts';
import type { Tensor } from '../../src/tensor.ts';
import { Evaluator } from './evaluator.ts';
import { count, forEachBroadcast, reduce, zip, type Named } from './named.ts';
import { shapesOf } from './parallel.ts';
import { lagRange } from '../../src/ir/masks.ts';

interface PrefixState {
  S?: Named;
  z?: Named;
  openS?: Named; // past_groups: the group still being filled
  openZ?: Named;
}

export interface RecurrentState {
  position: number;
  readonly prefix: Map<string, PrefixState>;
  /** Inputs of the last `historyLength` tokens, oldest first. */
  readonly history: Record<string, Float64Array>[];
}

/** How many past tokens (besides the current one) the window, group and softmax terms can reach (Infinity: all). */
export function historyLength(p: Program): number {
  let h = 0;
  for (const t of p.terms) {
    if (t.form.kind === 'prefix') continue;
    if (t.noncausal) throw new Error(`term ${t.name} is noncausal: it reads future tokens, so ${p.name} cannot be decoded (parallel form only)`);
    if (t.form.kind === 'softmax') {
      h = Infinity; // softmax attention reads every earlier key: the history is its key/value cache
      continue;
    }
    const r = lagRange(t.mask);
    if (!r) throw new Error(`term ${t.name} has an unbounded mask but is not a prefix term`);
    h = Math.max(h, r[1]);
  }
  return h;
}

export function createState(): RecurrentState {
  return { position: 0, prefix: new Map(), history: [] };
}

const add = (a: Named | undefined, b: Named, s: Record<string, number>) => (a ? zip(a, b, s, (x, y) => x + y) : b);

/** The program's shapes for one token ([1, 1, …] inputs, params as given), and the floats of its output. */
export function tokenBinding(program: Program, params: Readonly<Record<string, Tensor>>, sizes: Readonly<Record<string, number>>): { bound: Bound; per: number } {
  const shapes: Record<string, number[]> = {};
  for (const d of program.inputs) shapes[d.name] = [1, 1, ...d.axes.map((a) => sizes[a])];
  for (const d of program.params) shapes[d.name] = [...(params[d.name]?.shape ?? [])];
  const bound = bindShapes(program, shapes, { sizes: { ...sizes } });
  return { bound, per: count(program.outAxes, bound.sizes) };
}

export class Recurrent {
  private readonly bound: Bound;
  private readonly hist: number;
  private readonly per: number;

  /** `p` must have been through the passes (every term classified); params are [...axes] tensors. */
  constructor(
    readonly program: Program,
    readonly params: Readonly<Record<string, Tensor>>,
    sizes: Readonly<Record<string, number>>,
  ) {
    for (const t of program.terms) if (t.form.kind === 'general') throw new Error(`term ${t.name} is unclassified: run the passes first`);
    this.hist = historyLength(program);
    ({ bound: this.bound, per: this.per } = tokenBinding(program, params, sizes));
  }

  /** Folds one token (inputs over their axes, without b and t) into the state and returns o at that position. */
  step(state: RecurrentState, token: Readonly<Record<string, Float64Array>>): Float64Array {
    const p = this.program;
    const s = this.bound.sizes;
    state.history.push(Object.fromEntries(p.inputs.map((d) => [d.name, token[d.name]])));
    while (state.history.length > this.hist + 1) state.history.shift();
    const L = state.history.length;
    const here = L - 1;
    const tensors: Record<string, Tensor> = { ...this.params };
    for (const d of p.inputs) {
      const n = count(d.axes, s);
      const data = new Float64Array(L * n);
      state.history.forEach((h, k) => data.set(h[d.name], k * n));
      tensors[d.name] = { shape: [1, L, ...d.axes.map((a) => s[a])], data };
    }
    const pos = state.position;
    const ev = new Evaluator(p, tensors, { ...this.bound, t: L }, pos - here);
    const out = new Float64Array(this.per);
    const byName = new Map(p.terms.map((t) => [t.name, t]));
    for (const item of p.output) {
      const names = item.kind === 'term' ? [item.term] : item.terms;
      const num = new Float64Array(this.per);
      const den = new Float64Array(this.per);
      const accumulate = (score: Named, v: Named | null) => {
        forEachBroadcast(p.outAxes, s, [score.axes, v?.axes ?? []], (o, [si, vi]) => {
          num[o] += v ? score.data[si] * v.data[vi] : score.data[si];
        });
      };
      const accumulateDen = (score: Named) => {
        forEachBroadcast(p.outAxes, s, [score.axes], (o, [si]) => {
          den[o] += score.data[si];
        });
      };
      for (const name of names) {
        const t = byName.get(name)!;
        if (t.form.kind === 'prefix') {
          const [n, d] = this.prefixStep(t, state, ev, here, pos);
          if (n) accumulate(n, null);
          if (d) accumulateDen(d);
        } else {
          for (let jl = 0; jl <= here; jl++) {
            const j = pos - here + jl;
            if (!maskAllows(t.mask, pos, j)) continue;
            const score = ev.pair(t.score, 0, here, jl, new Map());
            accumulate(score, ev.token(t.value, 0, jl));
            accumulateDen(score);
          }
        }
      }
      for (let o = 0; o < this.per; o++) out[o] += item.kind === 'norm' ? num[o] / (den[o] + item.eps) : num[o];
    }
    state.position++;
    return out;
  }

  /** Updates one prefix term's state with token `pos` and returns (φ·S, φ·z) for it. */
  private prefixStep(t: Term, state: RecurrentState, ev: Evaluator, here: number, pos: number): [Named | null, Named | null] {
    if (t.form.kind !== 'prefix') throw new Error('internal');
    const f = t.form;
    const s = this.bound.sizes;
    let st = state.prefix.get(t.name);
    if (!st) state.prefix.set(t.name, (st = {}));
    const phi = ev.pair(f.phi, 0, here, here);
    const psi = ev.pair(f.psi, 0, here, here);
    const v = ev.token(t.value, 0, here);
    const kv = zip(psi, v, s, (a, b) => a * b);
    const mask = t.mask[0];
    if (mask.kind === 'past_groups') {
      if (pos % mask.size === 0 && st.openS) {
        st.S = add(st.S, st.openS, s);
        st.z = add(st.z, st.openZ!, s);
        st.openS = st.openZ = undefined;
      }
      st.openS = add(st.openS, kv, s);
      st.openZ = add(st.openZ, psi, s);
    } else {
      if (f.decay) {
        const g = f.decay.kind === 'constant' ? ev.pair(f.decay.gamma, 0, here, here) : ev.token(f.decay.alpha, 0, here);
        if (st.S) st.S = zip(st.S, g, s, (a, b) => a * b);
        if (st.z) st.z = zip(st.z, g, s, (a, b) => a * b);
      }
      st.S = add(st.S, kv, s);
      st.z = add(st.z, psi, s);
    }
    if (!st.S || !st.z) return [null, null];
    const read = (x: Named) => {
      const prod = zip(phi, x, s, (a, b) => a * b);
      return f.feature ? reduce(prod, f.feature, s, (a, b) => a + b) : prod;
    };
    return [read(st.S), read(st.z)];
  }
}

/** Runs the recurrent form over whole sequences (b sequences, t steps): the test harness of `step`. */
export function evaluateRecurrent(p: Program, tensors: Readonly<Record<string, Tensor>>): Tensor<Float64Array> {
  const bound = bindShapes(p, shapesOf(tensors));
  const params = Object.fromEntries(p.params.map((d) => [d.name, tensors[d.name]]));
  const rec = new Recurrent(p, params, bound.sizes);
  const per = count(p.outAxes, bound.sizes);
  const out = new Float64Array(bound.b * bound.t * per);
  for (let b = 0; b < bound.b; b++) {
    const state = createState();
    for (let t = 0; t < bound.t; t++) {
      const token: Record<string, Float64Array> = {};
      for (const d of p.inputs) {
        const n = count(d.axes, bound.sizes);
        token[d.name] = Float64Array.from(tensors[d.name].data.subarray((b * bound.t + t) * n, (b * bound.t + t + 1) * n));
      }
      out.set(rec.step(state, token), (b * bound.t + t) * per);
    }
  }
  return { shape: [bound.b, bound.t, ...p.outAxes.map((a) => bound.sizes[a])], data: out };
}
