// Appends typed nodes to a graph. Types are inferred here, once, for the frontend and every pass alike;
// identical ops are shared (hash-consing), so building the graph is also common-subexpression elimination.
import { SourceError, type Span } from './span.ts';
import type { AxisDef, Id, Node, Op, Side, Type } from './types.ts';

export function joinSides(a: Side, b: Side, span?: Span): Side {
  if (a === b) return a;
  if (a === 'const') return b;
  if (b === 'const') return a;
  if (a === 'param') return b;
  if (b === 'param') return a;
  if (a === 'token' || b === 'token') {
    throw new SourceError(
      'cannot combine a per-token tensor with a value read at a position: inside a score, read every per-token tensor at i or j (q[i], k[j])',
      span,
    );
  }
  return 'pair'; // query ⊔ key, or anything ⊔ pair
}

function unionAxes(a: readonly string[], b: readonly string[]): string[] {
  return [...a, ...b.filter((x) => !a.includes(x))];
}

function opKey(op: Op): string {
  return JSON.stringify(op);
}

export class GraphBuilder {
  readonly nodes: Node[];
  readonly axes: Record<string, AxisDef>;
  private readonly byKey = new Map<string, Id>();

  constructor(nodes: readonly Node[] = [], axes: Readonly<Record<string, AxisDef>> = {}) {
    this.nodes = [...nodes];
    this.axes = { ...axes };
    for (const n of this.nodes) {
      const { id: _id, type: _type, span: _span, ...op } = n;
      this.byKey.set(opKey(op as Op), n.id);
    }
  }

  type(id: Id): Type {
    const n = this.nodes[id];
    if (!n) throw new Error(`no node %${id}`);
    return n.type;
  }

  node(id: Id): Node {
    return this.nodes[id];
  }

  /** Adds a leaf whose type is declared rather than inferred (inputs and params). */
  leaf(op: Extract<Op, { op: 'input' | 'param' }>, axes: readonly string[], span?: Span): Id {
    return this.push(op, { side: op.op === 'input' ? 'token' : 'param', axes: [...axes] }, span);
  }

  const(value: number): Id {
    return this.add({ op: 'const', value });
  }

  add(op: Op, span?: Span): Id {
    const key = opKey(op);
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    return this.push(op, this.infer(op, span), span);
  }

  private push(op: Op, type: Type, span?: Span): Id {
    const id = this.nodes.length;
    this.nodes.push({ ...op, id, type, ...(span ? { span } : {}) } as Node);
    this.byKey.set(opKey(op), id);
    return id;
  }

  defineAxis(name: string, def: AxisDef, span?: Span): void {
    const old = this.axes[name];
    if (old && JSON.stringify(old) !== JSON.stringify(def)) {
      throw new SourceError(`axis '${name}' is already defined differently; give the new axis another name`, span);
    }
    this.axes[name] = def;
  }

  private need(id: Id, axis: string, what: string, span?: Span): void {
    const t = this.type(id);
    if (!t.axes.includes(axis)) {
      throw new SourceError(`${what} over axis '${axis}', but the operand has axes [${t.axes.join(', ')}]`, span);
    }
  }

  private infer(op: Op, span?: Span): Type {
    switch (op.op) {
      case 'input':
      case 'param':
        throw new Error('leaves are added with leaf()');
      case 'const':
        return { side: 'const', axes: [] };
      case 'position':
        return { side: op.which === 'i' ? 'query' : 'key', axes: [] };
      case 'unary':
        return this.type(op.x);
      case 'binary': {
        const a = this.type(op.a);
        const b = this.type(op.b);
        return { side: joinSides(a.side, b.side, span), axes: unionAxes(a.axes, b.axes) };
      }
      case 'sum':
      case 'norm': {
        this.need(op.x, op.axis, op.op === 'sum' ? 'sum' : 'norm', span);
        const t = this.type(op.x);
        return { side: t.side, axes: t.axes.filter((a) => a !== op.axis) };
      }
      case 'softmax':
        this.need(op.x, op.axis, 'softmax', span);
        return this.type(op.x);
      case 'matmul': {
        this.need(op.a, op.axis, 'matmul contracts', span);
        this.need(op.b, op.axis, 'matmul contracts', span);
        const a = this.type(op.a);
        const b = this.type(op.b);
        const left = a.axes.filter((x) => x !== op.axis);
        return { side: joinSides(a.side, b.side, span), axes: unionAxes(left, b.axes.filter((x) => x !== op.axis)) };
      }
      case 'concat': {
        let side: Side = 'const';
        let rest: string[] = [];
        op.xs.forEach((x, k) => {
          const t = this.type(x);
          side = joinSides(side, t.side, span);
          rest = unionAxes(rest, t.axes.filter((a) => a !== op.parts[k]));
        });
        if (rest.includes(op.axis)) throw new SourceError(`concat's new axis '${op.axis}' is already an axis of an operand`, span);
        return { side, axes: [...rest, op.axis] };
      }
      case 'outer': {
        this.need(op.x, op.from, 'outer product', span);
        const t = this.type(op.x);
        return { side: t.side, axes: t.axes.map((a) => (a === op.from ? op.axis : a)) };
      }
      case 'at': {
        const t = this.type(op.x);
        if (t.side !== 'token') throw new SourceError(`only per-token tensors are read at a position (this one is ${t.side})`, span);
        return { side: op.which === 'i' ? 'query' : 'key', axes: t.axes };
      }
      case 'select': {
        const x = this.type(op.x);
        const ix = this.type(op.index);
        this.need(op.x, op.axis, 'index', span);
        if (ix.axes.length) throw new SourceError('an index must be a scalar expression of the lag', span);
        return { side: joinSides(x.side, ix.side, span), axes: x.axes.filter((a) => a !== op.axis) };
      }
      case 'rope': {
        this.need(op.x, op.axis, 'rope', span);
        const t = this.type(op.x);
        if (t.side !== 'token') {
          throw new SourceError(`rope rotates a per-token tensor by its own position: apply it in a let (let qr = rope(q, d)) and read that at i or j (qr[i]); here it is applied to a ${t.side} value`, span);
        }
        return t;
      }
      case 'decay': {
        const t = this.type(op.x);
        if (t.side !== 'token' && t.side !== 'param') {
          throw new SourceError(`decay(x) takes a per-token gate or a parameter (got a ${t.side} value)`, span);
        }
        return { side: 'pair', axes: t.axes };
      }
    }
  }
}
