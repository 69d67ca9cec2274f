// Evaluates IR nodes in float64 at token positions and at (i, j) pairs: the semantics of every op, in one place
// (the elementwise functions themselves: src/ir/float-ops.ts).
// Token-, query- and key-side values are memoised per position; pair values are recomputed per pair.
import { BINARY_F64, UNARY_F64 } from '../../src/ir/float-ops.ts';
import type { Bound } from '../../src/ir/shapes.ts';
import { assertNever, type Id, type Node, type Program } from '../../src/ir/types.ts';
import type { Tensor } from '../../src/tensor.ts';
import { count, forEachBroadcast, map, reduce, scalar, slice, zip, type Named, type Sizes } from './named.ts';
import { rotateF64 } from './rope-f64.ts';

export class Evaluator {
  readonly sizes: Sizes;
  private readonly inputs = new Map<string, Tensor>();
  private readonly params = new Map<string, Named>();
  private readonly globalCache = new Map<Id, Named>();
  private readonly posCache = new Map<string, Named>();

  constructor(
    readonly program: Program,
    tensors: Readonly<Record<string, Tensor>>,
    readonly bound: Bound,
    /** Absolute position of local position 0 (the recurrent form evaluates over a window of recent tokens). */
    readonly offset = 0,
  ) {
    this.sizes = bound.sizes;
    for (const d of program.inputs) this.inputs.set(d.name, tensors[d.name]);
    for (const d of program.params) this.params.set(d.name, { axes: d.axes, data: Float64Array.from(tensors[d.name].data) });
  }

  /** A per-token tensor's value at (b, t). */
  token(id: Id, b: number, t: number): Named {
    return this.atPosition(id, b, t, 't');
  }

  /** Any node at the pair (i, j); `memo` is per pair. */
  pair(id: Id, b: number, i: number, j: number, memo = new Map<Id, Named>()): Named {
    const n = this.program.nodes[id];
    switch (n.type.side) {
      case 'const':
      case 'param':
        return this.global(id);
      case 'query':
        return this.atPosition(id, b, i, 'i');
      case 'key':
        return this.atPosition(id, b, j, 'j');
      case 'token':
        throw new Error(`internal: per-token node %${id} evaluated at a pair`);
      case 'pair': {
        const hit = memo.get(id);
        if (hit) return hit;
        const v = this.compute(n, (x) => this.pair(x, b, i, j, memo), { b, i, j });
        memo.set(id, v);
        return v;
      }
      default:
        return assertNever(n.type.side, 'side');
    }
  }

  private global(id: Id): Named {
    let v = this.globalCache.get(id);
    if (!v) {
      v = this.compute(this.program.nodes[id], (x) => this.global(x), {});
      this.globalCache.set(id, v);
    }
    return v;
  }

  /** Token/query/key nodes depend on one position; role says which position op means. */
  private atPosition(id: Id, b: number, t: number, role: 'i' | 'j' | 't'): Named {
    const n = this.program.nodes[id];
    if (n.type.side === 'const' || n.type.side === 'param') return this.global(id);
    const key = `${id}:${b}:${t}`;
    let v = this.posCache.get(key);
    if (!v) {
      v = this.compute(n, (x) => this.atPosition(x, b, t, role), role === 'i' ? { b, i: t } : role === 'j' ? { b, j: t } : { b, t });
      this.posCache.set(key, v);
    }
    return v;
  }

  private compute(n: Node, arg: (id: Id) => Named, at: { b?: number; t?: number; i?: number; j?: number }): Named {
    const s = this.sizes;
    switch (n.op) {
      case 'input': {
        const x = this.inputs.get(n.name)!;
        const per = count(n.type.axes, s);
        const off = (at.b! * this.bound.t + at.t!) * per;
        return { axes: n.type.axes, data: Float64Array.from(x.data.subarray(off, off + per)) };
      }
      case 'param':
        return this.params.get(n.name)!;
      case 'const':
        return scalar(n.value);
      case 'position':
        return scalar((n.which === 'i' ? at.i! : at.j!) + this.offset);
      case 'unary':
        return map(arg(n.x), UNARY_F64[n.fn]);
      case 'binary':
        return zip(arg(n.a), arg(n.b), s, BINARY_F64[n.fn]);
      case 'sum':
        return reduce(arg(n.x), n.axis, s, (a, v) => a + v);
      case 'norm':
        return reduce(arg(n.x), n.axis, s, (a, v) => a + v * v, 0, Math.sqrt);
      case 'softmax': {
        const x = arg(n.x);
        const m = reduce(x, n.axis, s, Math.max, -Infinity);
        const e = zip(x, m, s, (v, mx) => Math.exp(v - mx));
        const z = reduce(e, n.axis, s, (a, v) => a + v);
        return zip(e, z, s, (v, zz) => v / zz);
      }
      case 'matmul': {
        const prod = zip(arg(n.a), arg(n.b), s, (x, y) => x * y);
        return reduce(prod, n.axis, s, (a, v) => a + v);
      }
      case 'concat': {
        const axes = n.type.axes;
        const rest = axes.slice(0, -1);
        const total = s[n.axis];
        const out = new Float64Array(count(axes, s));
        let base = 0;
        n.xs.forEach((x, k) => {
          const v = arg(x);
          const part = n.parts[k];
          const width = part === null ? 1 : s[part];
          for (let c = 0; c < width; c++) {
            const col = part === null ? v : slice(v, part, c, s);
            forEachBroadcast(rest, s, [col.axes], (o, [src]) => {
              out[o * total + base + c] = col.data[src];
            });
          }
          base += width;
        });
        return { axes, data: out };
      }
      case 'outer': {
        const x = arg(n.x);
        const d = s[n.from];
        const rest = x.axes.filter((a) => a !== n.from);
        const out: number[][] = [];
        for (let p = 0; p < d; p++) for (let q = 0; q < d; q++) {
          const xp = slice(x, n.from, p, s);
          const xq = slice(x, n.from, q, s);
          out.push(Array.from(zip(xp, xq, s, (u, v) => u * v).data));
        }
        // out[pq][rest] → [..axes with from replaced by axis] in x's axis order.
        const axes = n.type.axes;
        const data = new Float64Array(count(axes, s));
        const restCount = count(rest, s);
        const pos = axes.indexOf(n.axis);
        const inner = count(axes.slice(pos + 1), s);
        for (let pq = 0; pq < d * d; pq++) {
          for (let r = 0; r < restCount; r++) {
            const outer = Math.floor(r / inner);
            const innerIdx = r % inner;
            data[(outer * d * d + pq) * inner + innerIdx] = out[pq][r];
          }
        }
        return { axes, data };
      }
      case 'at':
        return this.atPosition(n.x, at.b!, n.which === 'i' ? at.i! : at.j!, 't');
      case 'select': {
        const ix = arg(n.index).data[0];
        const size = s[n.axis];
        if (!Number.isInteger(ix) || ix < 0 || ix >= size) throw new Error(`select: index ${ix} outside ${n.axis} (0..${size - 1})`);
        return slice(arg(n.x), n.axis, ix, s);
      }
      case 'rope':
        // A token-side op, reached through `at` or token(): the position is the token's own.
        return rotateF64(arg(n.x), n.axis, s, at.t! + this.offset, n, n.sign);
      case 'decay': {
        const x = this.program.nodes[n.x];
        const lag = at.i! - at.j!;
        if (lag < 0) throw new Error('decay evaluated at a future pair (j > i)');
        if (x.type.side === 'param' || x.type.side === 'const') return map(this.global(n.x), (g) => g ** lag);
        let acc: Named = { axes: x.type.axes, data: new Float64Array(count(x.type.axes, s)).fill(1) };
        for (let l = at.j! + 1; l <= at.i!; l++) acc = zip(acc, this.atPosition(n.x, at.b!, l, 't'), s, (a, g) => a * g);
        return acc;
      }
      default:
        return assertNever(n, 'op');
    }
  }
}
