// Local vector–Jacobian products of the IR's ops in float64, on concrete values: given a node's operand values,
// its own value y and the adjoint A of y (over y's axes), the adjoint each operand receives (over that operand's
// axes). The gradient oracle (grad-oracle.ts) chains these; they are written from the ops' definitions in
// evaluator.ts, independently of the symbolic rules in passes/autodiff/vjp.ts, so the two check each other.
//
// Broadcasting: an operand missing an axis of y was broadcast along it, so its adjoint is summed over that axis.
// Conventions at kinks (measure-zero sets): relu′(0) = 0, abs′(0) = 0, d max(a, b)/da = [a > b], d min(a, b)/da = [a < b].
import { assertNever, type Id, type Node } from '../../src/ir/types.ts';
import { count, forEachBroadcast, permute, reduce, slice, zip, type Named, type Sizes } from './named.ts';
import { rotateF64 } from './rope-f64.ts';

/** x over `axes` (a superset of x's axes): copies along the missing ones. */
export function broadcastTo(x: Named, axes: readonly string[], s: Sizes): Named {
  const data = new Float64Array(count(axes, s));
  forEachBroadcast(axes, s, [x.axes], (o, [i]) => {
    data[o] = x.data[i];
  });
  return { axes, data };
}

/** x summed over every axis not in `axes`, in the order of `axes` (which must be a subset of x's axes). */
export function reduceTo(x: Named, axes: readonly string[], s: Sizes): Named {
  let r = x;
  for (const a of x.axes) if (!axes.includes(a)) r = reduce(r, a, s, (acc, v) => acc + v);
  for (const a of axes) if (!r.axes.includes(a)) r = broadcastTo(r, [...r.axes, a], s);
  return permute(r, axes, s);
}

const D_UNARY: Record<string, (x: number, y: number) => number> = {
  neg: () => -1,
  exp: (_x, y) => y,
  log: (x) => 1 / x,
  elu: (x) => (x > 0 ? 1 : Math.exp(x)),
  relu: (x) => (x > 0 ? 1 : 0),
  sigmoid: (_x, y) => y * (1 - y),
  silu: (x) => {
    const sg = 1 / (1 + Math.exp(-x));
    return sg * (1 + x * (1 - sg));
  },
  cos: (x) => -Math.sin(x),
  sin: (x) => Math.cos(x),
  sqrt: (_x, y) => 1 / (2 * y),
  abs: (x) => (x > 0 ? 1 : x < 0 ? -1 : 0),
  tanh: (_x, y) => 1 - y * y,
  recip: (_x, y) => -y * y,
  step: () => 0,
};

/** ∂y/∂a and ∂y/∂b of a binary op at one element. */
const D_BINARY: Record<string, (a: number, b: number, y: number) => [number, number]> = {
  add: () => [1, 1],
  sub: () => [1, -1],
  mul: (a, b) => [b, a],
  div: (a, b, y) => [1 / b, -y / b],
  pow: (a, b, y) => [b === 0 ? 0 : b * a ** (b - 1), a > 0 ? y * Math.log(a) : 0],
  max: (a, b) => (a > b ? [1, 0] : [0, 1]),
  min: (a, b) => (a < b ? [1, 0] : [0, 1]),
};

/**
 * The operands' adjoints for a node other than the leaves and the position-dependent ops (`at`, `select`, `decay`,
 * `rope`, which the oracle handles itself; rope's adjoint is the inverse rotation at the token's position). `val` gives any node's value at the current position or pair.
 */
export function vjpF64(n: Node, val: (id: Id) => Named, A: Named, s: Sizes): [Id, Named][] {
  const Y = n.type.axes;
  switch (n.op) {
    case 'unary': {
      const x = val(n.x);
      const y = val(n.id);
      const d = D_UNARY[n.fn];
      const g = zip(zip(x, y, s, d), A, s, (dv, a) => dv * a);
      return [[n.x, reduceTo(g, x.axes, s)]];
    }
    case 'binary': {
      const a = val(n.a);
      const b = val(n.b);
      const y = broadcastTo(val(n.id), Y, s);
      const full = broadcastTo(A, Y, s);
      const ga = new Float64Array(full.data.length);
      const gb = new Float64Array(full.data.length);
      const d = D_BINARY[n.fn];
      forEachBroadcast(Y, s, [a.axes, b.axes], (o, [ia, ib]) => {
        const [pa, pb] = d(a.data[ia], b.data[ib], y.data[o]);
        ga[o] = full.data[o] * pa;
        gb[o] = full.data[o] * pb;
      });
      return [
        [n.a, reduceTo({ axes: Y, data: ga }, a.axes, s)],
        [n.b, reduceTo({ axes: Y, data: gb }, b.axes, s)],
      ];
    }
    case 'sum':
      return [[n.x, broadcastTo(A, val(n.x).axes, s)]];
    case 'norm': {
      // y = √Σ x²: ∂y/∂x = x / y
      const x = val(n.x);
      const y = val(n.id);
      return [[n.x, zip(x, zip(A, y, s, (a, yy) => a / yy), s, (xx, q) => xx * q)]];
    }
    case 'softmax': {
      // dx = y ⊙ (A − Σ_axis A ⊙ y)
      const y = val(n.id);
      const Ay = zip(A, y, s, (a, yy) => a * yy);
      const dot = reduce(Ay, n.axis, s, (acc, v) => acc + v);
      return [[n.x, permute(zip(y, zip(A, dot, s, (a, d) => a - d), s, (yy, q) => yy * q), val(n.x).axes, s)]];
    }
    case 'matmul': {
      // y = Σ_axis a ⊙ b: the product's adjoint is A broadcast along the contracted axis
      const a = val(n.a);
      const b = val(n.b);
      const P = [...a.axes, ...b.axes.filter((x) => !a.axes.includes(x))];
      const dp = broadcastTo(A, P, s);
      return [
        [n.a, reduceTo(zip(dp, b, s, (g, v) => g * v), a.axes, s)],
        [n.b, reduceTo(zip(dp, a, s, (g, v) => g * v), b.axes, s)],
      ];
    }
    case 'concat': {
      const total = s[n.axis];
      const rest = Y.slice(0, -1);
      const full = broadcastTo(A, Y, s);
      const out: [Id, Named][] = [];
      let base = 0;
      n.xs.forEach((x, k) => {
        const part = n.parts[k];
        const width = part === null ? 1 : s[part];
        const axes = part === null ? rest : [...rest, part];
        const data = new Float64Array(count(axes, s));
        const rows = count(rest, s);
        for (let r = 0; r < rows; r++) for (let c = 0; c < width; c++) data[r * width + c] = full.data[r * total + base + c];
        out.push([x, reduceTo({ axes, data }, val(x).axes, s)]);
        base += width;
      });
      return out;
    }
    case 'outer': {
      // y[…, p·d + q] = x[…, p] x[…, q]  ⇒  dx[…, r] = Σ_q A[…, r·d + q] x[…, q] + Σ_p A[…, p·d + r] x[…, p]
      const x = val(n.x);
      const full = broadcastTo(A, Y, s);
      const d = s[n.from];
      const pos = x.axes.indexOf(n.from);
      const inner = count(x.axes.slice(pos + 1), s);
      const outer = count(x.axes.slice(0, pos), s);
      const dx = new Float64Array(x.data.length);
      for (let o = 0; o < outer; o++) for (let r = 0; r < d; r++) for (let w = 0; w < inner; w++) {
        let acc = 0;
        for (let q = 0; q < d; q++) {
          const xq = x.data[(o * d + q) * inner + w];
          acc += full.data[(o * d * d + r * d + q) * inner + w] * xq + full.data[(o * d * d + q * d + r) * inner + w] * xq;
        }
        dx[(o * d + r) * inner + w] = acc;
      }
      return [[n.x, { axes: x.axes, data: dx }]];
    }
    case 'input':
    case 'param':
    case 'const':
    case 'position':
      return [];
    case 'at':
    case 'select':
    case 'decay':
    case 'rope':
      throw new Error(`internal: vjpF64 called on ${n.op} (the oracle handles it)`);
    default:
      return assertNever(n, 'op');
  }
}

/**
 * rope's adjoint at the token's position: a rotation by sign·p·ω_f is orthogonal, so x receives the opposite
 * rotation of A (over the node's axes). The oracle calls it with the position the evaluator numbers the token by.
 */
export function ropeVjpF64(n: Extract<Node, { op: 'rope' }>, A: Named, s: Sizes, position: number): [Id, Named] {
  return [n.x, rotateF64(broadcastTo(A, n.type.axes, s), n.axis, s, position, n, n.sign === 1 ? -1 : 1)];
}

/** Adds A into the slice axis = ix of a tensor over `axes` (the adjoint of a select). */
export function scatterSlice(target: Float64Array, axes: readonly string[], axis: string, ix: number, A: Named, s: Sizes): void {
  const rest = axes.filter((a) => a !== axis);
  const full = broadcastTo(A, rest, s);
  const idx = { axes: [...axes], data: new Float64Array(count(axes, s)) };
  // the flat offsets of the slice: evaluate where each element of the slice lands
  forEachBroadcast(axes, s, [], (o) => {
    idx.data[o] = o;
  });
  const offsets = slice(idx, axis, ix, s);
  for (let k = 0; k < full.data.length; k++) target[offsets.data[k]] += full.data[k];
}
