// The gradient oracle: reverse mode over the parallel form (parallel.ts), in float64, on the program as written.
// It knows nothing of prefix sums, reversed time or chunks; it walks the same double loop over (i, j) backwards:
//
//   forward, per b, i and output item:  n_i = Σ_terms Σ_{j∈M(i)} s(i,j) ⊙ v_j,   z_i = Σ_terms Σ_j s(i,j)
//                                      o_i += n_i, or n_i / (z_i + ε) for a normalised item
//   backward, with the cotangent do_i:  dn_i = do_i (plain) or do_i / (z_i + ε);  dz_i = −do_i ⊙ n_i / (z_i + ε)² (normalised)
//     per pair:   ds(i,j) = Σ_{axes of v not in s} (dn_i ⊙ v_j + dz_i),    dv_j += Σ_{…} s(i,j) ⊙ dn_i
//     then ds flows back through the score's expression (vjp-f64.ts), reaching token values read at i or j,
//     parameters (a select scatters into its index), and decays:
//       d/dx_l Π_{m=j+1..i} x_m = Π_{m≠l} x_m (no division, so gates at 0 are fine);  d/dγ γ^(i−j) = (i−j) γ^(i−j−1).
//   Token values then flow back position by position to the inputs, and parameter-side values to the parameters.
//
// gradientParallel returns d<name> for every input ([b, t, …axes]) and parameter ([…axes]).
import { maskAllows } from '../../src/ir/masks.ts';
import { bindShapes, shapeOf, type Bound } from '../../src/ir/shapes.ts';
import { operands, type Id, type Node, type Program } from '../../src/ir/types.ts';
import type { Tensor } from '../../src/tensor.ts';
import { Evaluator } from './evaluator.ts';
import { count, forEachBroadcast, type Named, type Sizes } from './named.ts';
import { candidateKeys, shapesOf } from './parallel.ts';
import { ropeVjpF64, scatterSlice, vjpF64 } from './vjp-f64.ts';

export function gradientParallel(
  p: Program,
  tensors: Readonly<Record<string, Tensor>>,
  dout: Tensor,
): Record<string, Tensor<Float64Array>> {
  const bound = bindShapes(p, shapesOf(tensors));
  const s = bound.sizes;
  const want = [bound.b, bound.t, ...shapeOf(bound, p.outAxes)];
  if (dout.shape.join() !== want.join()) {
    throw new Error(`the output cotangent 'o' must have shape [b, t, ${p.outAxes.join(', ')}] = [${want.join(', ')}], got [${dout.shape.join(', ')}]`);
  }
  const ev = new Evaluator(p, tensors, bound);
  const adj = new Adjoints(p, bound);
  const outAxes = p.outAxes;
  const per = count(outAxes, s);
  const byName = new Map(p.terms.map((t) => [t.name, t]));

  for (let b = 0; b < bound.b; b++) {
    for (let i = 0; i < bound.t; i++) {
      const dOut = dout.data.subarray((b * bound.t + i) * per, (b * bound.t + i + 1) * per);
      for (const item of p.output) {
        const terms = (item.kind === 'term' ? [item.term] : item.terms).map((n) => byName.get(n)!);
        const pairs = terms.flatMap((term) => {
          const [lo, hi] = candidateKeys(term, i, bound.t);
          const js: number[] = [];
          for (let j = lo; j <= hi; j++) if (maskAllows(term.mask, i, j)) js.push(j);
          return js.map((j) => ({ term, j }));
        });
        // forward: this item's numerator and denominator at i
        const num = new Float64Array(per);
        const den = new Float64Array(per);
        for (const { term, j } of pairs) {
          const sc = ev.pair(term.score, b, i, j);
          const v = ev.token(term.value, b, j);
          forEachBroadcast(outAxes, s, [sc.axes, v.axes], (o, [si, vi]) => {
            num[o] += sc.data[si] * v.data[vi];
            den[o] += sc.data[si];
          });
        }
        const dn = new Float64Array(per);
        const dz = new Float64Array(per);
        for (let o = 0; o < per; o++) {
          if (item.kind === 'norm') {
            const z = den[o] + item.eps;
            dn[o] = dOut[o] / z;
            dz[o] = (-dOut[o] * num[o]) / (z * z);
          } else dn[o] = dOut[o];
        }
        // backward: every pair of the item
        for (const { term, j } of pairs) {
          const memo = new Map<Id, Named>();
          const sc = ev.pair(term.score, b, i, j, memo);
          const v = ev.token(term.value, b, j);
          const ds = new Float64Array(sc.data.length);
          const dv = new Float64Array(v.data.length);
          forEachBroadcast(outAxes, s, [sc.axes, v.axes], (o, [si, vi]) => {
            ds[si] += dn[o] * v.data[vi] + dz[o];
            dv[vi] += dn[o] * sc.data[si];
          });
          adj.addToken(term.value, b, j, { axes: v.axes, data: dv });
          pairBackward(p, ev, adj, term.score, { axes: sc.axes, data: ds }, b, i, j, memo);
        }
      }
    }
  }
  return adj.finish(ev);
}

/** Adjoints of token values at (b, t) and of parameter-side values, and the gradients of the leaves. */
class Adjoints {
  private readonly token = new Map<string, Float64Array>();
  private readonly param = new Map<Id, Float64Array>();
  private readonly s: Sizes;

  constructor(
    private readonly p: Program,
    private readonly bound: Bound,
  ) {
    this.s = bound.sizes;
  }

  private add(map: Map<string | Id, Float64Array>, key: string | Id, n: Node, A: Named): void {
    let cur = map.get(key);
    if (!cur) map.set(key, (cur = new Float64Array(count(n.type.axes, this.s))));
    forEachBroadcast(n.type.axes, this.s, [A.axes], (o, [a]) => {
      cur[o] += A.data[a];
    });
  }

  /** A must be over a subset of the node's axes (it is broadcast, never summed, here). */
  addToken(id: Id, b: number, t: number, A: Named): void {
    this.add(this.token as Map<string | Id, Float64Array>, `${id}:${b}:${t}`, this.p.nodes[id], A);
  }

  addParam(id: Id, A: Named): void {
    this.add(this.param as Map<string | Id, Float64Array>, id, this.p.nodes[id], A);
  }

  scatterParam(id: Id, axis: string, ix: number, A: Named): void {
    const n = this.p.nodes[id];
    let cur = this.param.get(id);
    if (!cur) this.param.set(id, (cur = new Float64Array(count(n.type.axes, this.s))));
    scatterSlice(cur, n.type.axes, axis, ix, A, this.s);
  }

  /** Runs the token side position by position, then the parameter side, and collects d<name>. */
  finish(ev: Evaluator): Record<string, Tensor<Float64Array>> {
    const { p, bound, s } = this;
    const grads: Record<string, Tensor<Float64Array>> = {};
    for (const d of p.inputs) grads[`d${d.name}`] = { shape: [bound.b, bound.t, ...shapeOf(bound, d.axes)], data: new Float64Array(bound.b * bound.t * count(d.axes, s)) };
    for (const d of p.params) grads[`d${d.name}`] = { shape: shapeOf(bound, d.axes), data: new Float64Array(count(d.axes, s)) };
    const route = (x: Id, A: Named, b: number, t: number) => {
      const side = p.nodes[x].type.side;
      if (side === 'token') this.addToken(x, b, t, A);
      else if (side === 'param') this.addParam(x, A);
    };
    const down = [...p.nodes].reverse();
    for (let b = 0; b < bound.b; b++) {
      for (let t = 0; t < bound.t; t++) {
        for (const n of down) {
          if (n.type.side !== 'token') continue;
          const data = this.token.get(`${n.id}:${b}:${t}`);
          if (!data) continue;
          const A: Named = { axes: n.type.axes, data };
          if (n.op === 'input') {
            const per = count(n.type.axes, s);
            grads[`d${n.name}`].data.set(data, (b * bound.t + t) * per);
            continue;
          }
          if (n.op === 'rope') {
            route(...ropeVjpF64(n, A, s, t + ev.offset), b, t);
            continue;
          }
          for (const [x, g] of vjpF64(n, (id) => ev.token(id, b, t), A, s)) route(x, g, b, t);
        }
      }
    }
    for (const n of down) {
      if (n.type.side !== 'param') continue;
      const data = this.param.get(n.id);
      if (!data) continue;
      if (n.op === 'param') {
        grads[`d${n.name}`].data.set(data);
        continue;
      }
      if (n.op === 'select') {
        this.scatterParam(n.x, n.axis, ev.pair(n.index, 0, 0, 0).data[0], { axes: n.type.axes, data });
        continue;
      }
      for (const [x, g] of vjpF64(n, (id) => ev.pair(id, 0, 0, 0), { axes: n.type.axes, data }, s)) route(x, g, 0, 0);
    }
    return grads;
  }
}

/** Pushes a score's adjoint at the pair (i, j) back to token values at i and j and to parameter-side values. */
function pairBackward(p: Program, ev: Evaluator, adj: Adjoints, root: Id, ds: Named, b: number, i: number, j: number, memo: Map<Id, Named>): void {
  const s = ev.sizes;
  const val = (id: Id) => ev.pair(id, b, i, j, memo);
  const local = new Map<Id, Named>();
  const accumulate = (x: Id, A: Named) => {
    const n = p.nodes[x];
    if (n.type.side === 'const') return;
    if (n.type.side === 'param') return adj.addParam(x, A);
    const cur = local.get(x);
    local.set(x, cur ? sum(cur, A, n, s) : A);
  };
  accumulate(root, ds);
  // Ids are a topological order: visiting the reached pair-, query- and key-side nodes downwards sees every
  // consumer of a node before the node itself.
  const reached = new Set<Id>();
  const stack = [root];
  while (stack.length) {
    const id = stack.pop()!;
    const n = p.nodes[id];
    if (reached.has(id) || n.type.side === 'param' || n.type.side === 'const') continue;
    reached.add(id);
    if (n.op !== 'at' && n.op !== 'decay') stack.push(...operands(n));
  }
  for (const id of [...reached].sort((a, b2) => b2 - a)) {
    const A = local.get(id);
    if (!A) continue;
    const n = p.nodes[id];
    switch (n.op) {
      case 'at':
        adj.addToken(n.x, b, n.which === 'i' ? i : j, A);
        break;
      case 'position':
        break;
      case 'select': {
        if (p.nodes[n.x].type.side !== 'param') throw new Error(`gradient oracle: select of a ${p.nodes[n.x].type.side}-side value`);
        adj.scatterParam(n.x, n.axis, val(n.index).data[0], A);
        break;
      }
      case 'decay': {
        const x = p.nodes[n.x];
        const lag = i - j;
        if (x.type.side === 'param' || x.type.side === 'const') {
          if (x.type.side === 'param' && lag > 0) {
            const g = val(n.x);
            adj.addParam(n.x, mulNamed(A, { axes: g.axes, data: g.data.map((v) => lag * v ** (lag - 1)) }, s));
          }
          break;
        }
        // d/dx_l Π_{m=j+1..i} x_m = Π_{m≠l} x_m, from prefix and suffix products
        const xs: Named[] = [];
        for (let l = j + 1; l <= i; l++) xs.push(ev.token(n.x, b, l));
        const ones = (): Named => ({ axes: x.type.axes, data: new Float64Array(count(x.type.axes, s)).fill(1) });
        const pre: Named[] = [ones()];
        for (const v of xs) pre.push(mulNamed(pre[pre.length - 1], v, s));
        let suf = ones();
        for (let k = xs.length - 1; k >= 0; k--) {
          adj.addToken(n.x, b, j + 1 + k, mulNamed(A, mulNamed(pre[k], suf, s), s));
          suf = mulNamed(suf, xs[k], s);
        }
        break;
      }
      default:
        for (const [x, g] of vjpF64(n, val, A, s)) accumulate(x, g);
    }
  }
}

function mulNamed(a: Named, b: Named, s: Sizes): Named {
  const axes = [...a.axes, ...b.axes.filter((x) => !a.axes.includes(x))];
  const data = new Float64Array(count(axes, s));
  forEachBroadcast(axes, s, [a.axes, b.axes], (o, [ia, ib]) => {
    data[o] = a.data[ia] * b.data[ib];
  });
  return { axes, data };
}

/** a + b over the node's axes. */
function sum(a: Named, b: Named, n: Node, s: Sizes): Named {
  const data = new Float64Array(count(n.type.axes, s));
  forEachBroadcast(n.type.axes, s, [a.axes, b.axes], (o, [ia, ib]) => {
    data[o] = a.data[ia] + b.data[ib];
  });
  return { axes: n.type.axes, data };
}
