// Runs a gradient program (src/ir/grad.ts) in float64 with the existing CPU machinery, stage by stage:
//   term stages through the passes and the chunked form (the parallel form for noncausal ones and for quadratic
//   ones under the unbounded causal mask: softmax attention's gradient terms), reverse-time
//   stages on inputs read backwards (shifted, padded) and their output turned forwards again;
//   map, reduce, pairs and params stages with the Evaluator, at every (b, t), summed over (b, t), summed over the
//   mask's pairs with a scatter at the index, and once; an lse stage as m_i + log Σ_j exp(logit − m_i), m_i the
//   largest logit of row i.
// This is what proves that every gradient term is classified by the passes and accepted by the chunked lowering.
import { runPasses } from '../../passes/pipeline.ts';
import { graphAsProgram, type Binding, type Builtin, type GradProgram, type LseStage, type Stage, type StageGraph, type StageOutput, type TermStage } from '../../src/ir/grad.ts';
import { lagRange, maskAllows } from '../../src/ir/masks.ts';
import { bindShapes, shapeOf, type Bound } from '../../src/ir/shapes.ts';
import { unboundedQuadratic } from '../../src/ir/terms.ts';
import type { AxisDef, Program } from '../../src/ir/types.ts';
import { numel, type Tensor } from '../../src/tensor.ts';
import { evaluateChunked } from './chunked.ts';
import { Evaluator } from './evaluator.ts';
import { count, permute, type Sizes } from './named.ts';
import { evaluateParallel, shapesOf } from './parallel.ts';
import { broadcastTo, scatterSlice } from './vjp-f64.ts';

type T64 = Tensor<Float64Array>;

export interface GradRunOptions {
  /** Chunk of the chunked form for term stages (raised to the lcm of a stage's past_groups sizes). Default 3. */
  readonly chunk?: number;
  /**
   * Called with each term stage after the passes, the tensors it ran on (reversed, shifted and padded for a
   * reverse-time stage) and what the chunked or parallel form returned for them (before turning it forwards).
   */
  readonly onTermStage?: (stage: TermStage, passed: Program, run: { inputs: Record<string, T64>; output: T64; offset: number }) => void;
}

export function evaluateGradProgram(gp: GradProgram, tensors: Readonly<Record<string, Tensor>>, dout: Tensor, opts: GradRunOptions = {}): Record<string, T64> {
  const bound = bindShapes(gp.forward, shapesOf(tensors));
  const want = [bound.b, bound.t, ...shapeOf(bound, gp.forward.outAxes)];
  if (dout.shape.join() !== want.join()) {
    throw new Error(`the output cotangent 'o' must have shape [b, t, ${gp.forward.outAxes.join(', ')}] = [${want.join(', ')}], got [${dout.shape.join(', ')}]`);
  }
  const env = new Map<string, T64>();
  for (const [k, v] of Object.entries(tensors)) env.set(k, { shape: v.shape, data: Float64Array.from(v.data) });
  env.set('do', { shape: dout.shape, data: Float64Array.from(dout.data) });
  for (const b of gp.builtins) env.set(b.name, builtin(b, bound));
  for (const st of gp.stages) for (const [name, t] of runStage(st, env, bound, opts)) env.set(name, t);
  return Object.fromEntries(gp.gradients.map((g) => [g, env.get(g)!]));
}

function runStage(st: Stage, env: ReadonlyMap<string, T64>, bound: Bound, opts: GradRunOptions): [string, T64][] {
  switch (st.kind) {
    case 'term':
      return [[st.writes, runTerm(st, env, bound, opts)]];
    case 'map':
    case 'reduce':
    case 'params':
      return runGraph(st.kind, st.graph, st.bindings, st.outputs, env, bound);
    case 'lse':
      return [[st.writes, runLse(st, env, bound)]];
    case 'pairs': {
      const ev = evaluator(st.graph, st.bindings, env, bound);
      const s = bound.sizes;
      const out = new Float64Array(count(st.axes, s));
      const r = lagRange(st.mask);
      for (let b = 0; b < bound.b; b++) {
        for (let i = 0; i < bound.t; i++) {
          const lo = r ? Math.max(0, i - r[1]) : 0;
          const hi = Math.min(bound.t - 1, r ? i - r[0] : i);
          for (let j = lo; j <= hi; j++) {
            if (!maskAllows(st.mask, i, j)) continue;
            const memo = new Map();
            scatterSlice(out, st.axes, st.axis, ev.pair(st.index, b, i, j, memo).data[0], ev.pair(st.contribution, b, i, j, memo), s);
          }
        }
      }
      return [[st.writes, { shape: shapeOf(bound, st.axes), data: out }]];
    }
  }
}

/** The stage's axes fixed to the forward's bound sizes (a stage may name an axis that none of its tensors binds). */
function withSizes<P extends { axes: Readonly<Record<string, AxisDef>> }>(p: P, s: Sizes): P {
  return { ...p, axes: Object.fromEntries(Object.keys(p.axes).map((a) => [a, { kind: 'size', value: s[a] } as AxisDef])) };
}

function runTerm(st: TermStage, env: ReadonlyMap<string, T64>, bound: Bound, opts: GradRunOptions): T64 {
  const passed = withSizes(runPasses(st.program), bound.sizes);
  const T = bound.t;
  const reversed = st.time === 'reverse';
  const Tpad = reversed ? Math.ceil(T / st.pad) * st.pad : T;
  const tensors: Record<string, T64> = {};
  for (const d of passed.inputs) {
    const b = st.bindings[d.name];
    let x = env.get(b.tensor)!;
    if (b.shift) x = shifted(x, b.shift);
    tensors[d.name] = reversed ? reverse(x, Tpad, b.pad) : x;
  }
  for (const d of passed.params) tensors[d.name] = env.get(st.bindings[d.name].tensor)!;
  const offset = st.positions === 'negated' ? -(Tpad - 1) : 0;
  const groups = passed.terms.flatMap((t) => t.mask.flatMap((m) => (m.kind === 'past_groups' ? [m.size] : [])));
  const chunk = groups.length ? groups.reduce(lcm) : (opts.chunk ?? 3);
  const parallel = passed.terms.some((t) => t.noncausal || unboundedQuadratic(t));
  const out = parallel ? evaluateParallel(passed, tensors, offset) : evaluateChunked(passed, tensors, chunk, offset);
  opts.onTermStage?.(st, passed, { inputs: { ...tensors }, output: out, offset });
  return reversed ? unreverse(out, T) : out;
}

/** lse[b, i, …] = m + log Σ_{j ≤ i} exp(logit(i, j) − m), m = max_j logit(i, j), per element of the output axes. */
function runLse(st: LseStage, env: ReadonlyMap<string, T64>, bound: Bound): T64 {
  const p = withSizes(runPasses(st.program), bound.sizes);
  const t = p.terms[0];
  if (t.form.kind !== 'softmax') throw new Error(`internal: ${st.name}: the passes do not classify its term as softmax attention`);
  const tensors = Object.fromEntries([...p.inputs, ...p.params].map((d) => [d.name, env.get(st.bindings[d.name].tensor)!]));
  const ev = new Evaluator(p, tensors, bound);
  const s = bound.sizes;
  const per = count(p.outAxes, s);
  const data = new Float64Array(bound.b * bound.t * per);
  for (let b = 0; b < bound.b; b++) {
    for (let i = 0; i < bound.t; i++) {
      const rows = Array.from({ length: i + 1 }, (_, j) => permute(broadcastTo(ev.pair(t.form.kind === 'softmax' ? t.form.logit : t.score, b, i, j), p.outAxes, s), p.outAxes, s).data);
      for (let e = 0; e < per; e++) {
        let m = -Infinity;
        for (const r of rows) m = Math.max(m, r[e]);
        let z = 0;
        for (const r of rows) z += Math.exp(r[e] - m);
        data[(b * bound.t + i) * per + e] = m + Math.log(z);
      }
    }
  }
  return { shape: [bound.b, bound.t, ...shapeOf(bound, p.outAxes)], data };
}

function runGraph(
  kind: 'map' | 'reduce' | 'params',
  g: StageGraph,
  bindings: Readonly<Record<string, Binding>>,
  outputs: readonly StageOutput[],
  env: ReadonlyMap<string, T64>,
  bound: Bound,
): [string, T64][] {
  const ev = evaluator(g, bindings, env, bound);
  const s = bound.sizes;
  return outputs.map((o): [string, T64] => {
    const per = count(o.axes, s);
    const put = (v: ReturnType<Evaluator['token']>) => permute(broadcastTo(v, [...o.axes, ...v.axes.filter((a) => !o.axes.includes(a))], s), o.axes, s).data;
    if (kind === 'params') return [o.tensor, { shape: shapeOf(bound, o.axes), data: Float64Array.from(put(ev.pair(o.id, 0, 0, 0))) }];
    const data = new Float64Array((kind === 'map' ? bound.b * bound.t : 1) * per);
    for (let b = 0; b < bound.b; b++) {
      for (let t = 0; t < bound.t; t++) {
        const v = put(ev.token(o.id, b, t));
        if (kind === 'map') data.set(v, (b * bound.t + t) * per);
        else for (let k = 0; k < per; k++) data[k] += v[k];
      }
    }
    return [o.tensor, { shape: kind === 'map' ? [bound.b, bound.t, ...shapeOf(bound, o.axes)] : shapeOf(bound, o.axes), data }];
  });
}

function evaluator(g: StageGraph, bindings: Readonly<Record<string, Binding>>, env: ReadonlyMap<string, T64>, bound: Bound): Evaluator {
  const p = withSizes(graphAsProgram('stage', g), bound.sizes);
  const tensors = Object.fromEntries([...g.inputs, ...g.params].map((d) => [d.name, env.get(bindings[d.name].tensor)!]));
  return new Evaluator(p, tensors, bound);
}

/** x[b, t + k], 1 past the end. */
function shifted(x: T64, k: number): T64 {
  const [B, T] = x.shape;
  const per = numel(x.shape.slice(2));
  const data = new Float64Array(x.data.length).fill(1);
  for (let b = 0; b < B; b++) for (let t = 0; t + k < T; t++) data.set(x.data.subarray((b * T + t + k) * per, (b * T + t + k + 1) * per), (b * T + t) * per);
  return { shape: x.shape, data };
}

/** Reversed position r holds t = Tpad − 1 − r; positions t ≥ T are padding. */
function reverse(x: T64, Tpad: number, pad: Binding['pad']): T64 {
  const [B, T] = x.shape;
  const per = numel(x.shape.slice(2));
  const data = new Float64Array(B * Tpad * per);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < Tpad; r++) {
      const t = Tpad - 1 - r;
      const at = (b * Tpad + r) * per;
      if (t < T) data.set(x.data.subarray((b * T + t) * per, (b * T + t + 1) * per), at);
      else if (pad === 'edge') data.set(x.data.subarray((b * T + T - 1) * per, (b * T + T) * per), at);
      else if (pad === 'one') data.fill(1, at, at + per);
    }
  }
  return { shape: [B, Tpad, ...x.shape.slice(2)], data };
}

function unreverse(x: T64, T: number): T64 {
  const [B, Tpad] = x.shape;
  const per = numel(x.shape.slice(2));
  const data = new Float64Array(B * T * per);
  for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) data.set(x.data.subarray((b * Tpad + Tpad - 1 - t) * per, (b * Tpad + Tpad - t) * per), (b * T + t) * per);
  return { shape: [B, T, ...x.shape.slice(2)], data };
}

function builtin(b: Builtin, bound: Bound): T64 {
  const s = bound.sizes;
  const shape = [...(b.kind === 'ones' && b.token ? [bound.b, bound.t] : []), ...shapeOf(bound, b.axes)];
  const data = new Float64Array(numel(shape));
  switch (b.kind) {
    case 'ones':
      data.fill(1);
      break;
    case 'concat-part': {
      const width = (p: string | null) => (p === null ? 1 : s[p]);
      const base = b.parts.slice(0, b.part).reduce((acc, p) => acc + width(p), 0);
      const w = width(b.parts[b.part]);
      for (let p = 0; p < w; p++) data[(base + p) * w + p] = 1;
      break;
    }
    case 'outer-factor': {
      const d = s[b.from];
      for (let pq = 0; pq < d * d; pq++) data[pq * d + (b.which === 0 ? Math.floor(pq / d) : pq % d)] = 1;
      break;
    }
  }
  return { shape, data };
}

function gcd(a: number, b: number): number {
  return b ? gcd(b, a % b) : a;
}

function lcm(a: number, b: number): number {
  return (a * b) / gcd(a, b);
}
