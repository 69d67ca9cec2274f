// IR expression → WGSL statements. Every kernel evaluates IR nodes through this one generator; what differs
// between kernels is where leaves come from (a Resolver): inputs read from global memory, features already
// staged in workgroup memory, positions. Axis sizes are compile-time constants, so loops have literal bounds.
import { assertNever, operands, type Id, type Node, type Program } from '../../src/ir/types.ts';

/** WGSL u32 expressions for the index along each axis of the element being computed. */
export type Index = Readonly<Record<string, string>>;

/** The WGSL u32 variable that holds the token position a token-side node is read at. */
export type Where = string;

/**
 * Supplies leaves and short-circuits: returns a WGSL f32 expression for (node, index, where), or null to let
 * the generator compute the node from its operands.
 */
export type Resolver = (n: Node, idx: Index, where: Where) => string | null;

export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`cannot write ${x} as a WGSL f32 literal`);
  if (Number.isInteger(x) && Math.abs(x) < 1e15) return `${x}.0`;
  const s = x.toString();
  return /[.eE]/.test(s) ? s : `${s}.0`;
}

const UNARY: Record<string, (x: string) => string> = {
  neg: (x) => `(-${x})`,
  exp: (x) => `exp(${x})`,
  log: (x) => `log(${x})`,
  elu: (x) => `select(exp(${x}) - 1.0, ${x}, ${x} > 0.0)`,
  relu: (x) => `max(${x}, 0.0)`,
  sigmoid: (x) => `(1.0 / (1.0 + exp(-${x})))`,
  silu: (x) => `(${x} / (1.0 + exp(-${x})))`,
  cos: (x) => `cos(${x})`,
  sin: (x) => `sin(${x})`,
  sqrt: (x) => `sqrt(${x})`,
  abs: (x) => `abs(${x})`,
  tanh: (x) => `tanh(${x})`,
  recip: (x) => `(1.0 / ${x})`,
};

export class ExprGen {
  private readonly lines: string[] = [];
  private depth: number;
  private counter = 0;
  private readonly scopes: Map<string, string>[] = [new Map()];

  constructor(
    readonly program: Program,
    readonly sizes: Readonly<Record<string, number>>,
    readonly resolve: Resolver,
    /** WGSL u32 variables holding the query and key positions (absolute). */
    readonly pos: { readonly i: string; readonly j: string },
    indent = 1,
    private readonly prefix = 'x',
  ) {
    this.depth = indent;
  }

  /** The statements emitted so far. */
  code(): string {
    return this.lines.join('\n');
  }

  emit(line: string): void {
    this.lines.push('  '.repeat(this.depth) + line);
  }

  fresh(stem = this.prefix): string {
    return `${stem}${this.counter++}`;
  }

  /** Emits the statements that compute node `id` at `idx` and returns the name of an f32 holding it. */
  value(id: Id, idx: Index, where: Where): string {
    const n = this.program.nodes[id];
    const key = `${id}|${where}|${n.type.axes.map((a) => idx[a]).join(',')}`;
    for (let s = this.scopes.length - 1; s >= 0; s--) {
      const hit = this.scopes[s].get(key);
      if (hit) return hit;
    }
    const resolved = this.resolve(n, idx, where);
    const expr = resolved ?? this.compute(n, idx, where);
    const name = this.fresh();
    this.emit(`let ${name} = ${expr}; // %${n.id} ${n.op}`);
    this.scopes[this.scopes.length - 1].set(key, name);
    return name;
  }

  /** Emits `for (l in 0..size(axis))` around body; values computed inside stay inside. */
  loop(axis: string, body: (l: string) => void): void {
    const l = this.fresh('l');
    this.emit(`for (var ${l}: u32 = 0u; ${l} < ${this.sizes[axis]}u; ${l}++) {`);
    this.block(() => body(l));
    this.emit('}');
  }

  block(body: () => void): void {
    this.depth++;
    this.scopes.push(new Map());
    body();
    this.scopes.pop();
    this.depth--;
  }

  private reduceOver(x: Id, axis: string, idx: Index, where: Where, init: string, step: (acc: string, v: string) => string): string {
    const acc = this.fresh('acc');
    this.emit(`var ${acc}: f32 = ${init};`);
    this.loop(axis, (l) => {
      const v = this.value(x, { ...idx, [axis]: l }, where);
      this.emit(`${acc} = ${step(acc, v)};`);
    });
    return acc;
  }

  private compute(n: Node, idx: Index, where: Where): string {
    switch (n.op) {
      case 'input':
      case 'param':
        throw new Error(`internal: no resolver for ${n.op} %${n.id}`);
      case 'position':
        return `f32(${n.which === 'i' ? this.pos.i : this.pos.j})`;
      case 'const':
        return f32(n.value);
      case 'unary':
        return UNARY[n.fn](this.value(n.x, idx, where));
      case 'binary': {
        const a = this.value(n.a, idx, where);
        const bn = this.program.nodes[n.b];
        if (n.fn === 'pow' && bn.op === 'const' && Number.isInteger(bn.value) && bn.value >= 1 && bn.value <= 4) {
          return Array(bn.value).fill(a).join(' * '); // exact for negative bases, unlike pow()
        }
        const b = this.value(n.b, idx, where);
        switch (n.fn) {
          case 'add': return `${a} + ${b}`;
          case 'sub': return `${a} - ${b}`;
          case 'mul': return `${a} * ${b}`;
          case 'div': return `${a} / ${b}`;
          case 'pow': return `pow(${a}, ${b})`;
          case 'max': return `max(${a}, ${b})`;
          case 'min': return `min(${a}, ${b})`;
          default: throw new Error(`unknown binary fn`);
        }
      }
      case 'sum':
        return this.reduceOver(n.x, n.axis, idx, where, '0.0', (acc, v) => `${acc} + ${v}`);
      case 'norm':
        return `sqrt(${this.reduceOver(n.x, n.axis, idx, where, '0.0', (acc, v) => `${acc} + ${v} * ${v}`)})`;
      case 'softmax': {
        const m = this.reduceOver(n.x, n.axis, idx, where, '-3.4e38', (acc, v) => `max(${acc}, ${v})`);
        const z = this.reduceOver(n.x, n.axis, idx, where, '0.0', (acc, v) => `${acc} + exp(${v} - ${m})`);
        return `exp(${this.value(n.x, idx, where)} - ${m}) / ${z}`;
      }
      case 'matmul': {
        const acc = this.fresh('acc');
        this.emit(`var ${acc}: f32 = 0.0;`);
        this.loop(n.axis, (l) => {
          const a = this.value(n.a, { ...idx, [n.axis]: l }, where);
          const b = this.value(n.b, { ...idx, [n.axis]: l }, where);
          this.emit(`${acc} = ${acc} + ${a} * ${b};`);
        });
        return acc;
      }
      case 'concat': {
        const r = this.fresh('cat');
        const at = idx[n.axis];
        this.emit(`var ${r}: f32 = 0.0;`);
        let base = 0;
        n.xs.forEach((x, k) => {
          const part = n.parts[k];
          const width = part === null ? 1 : this.sizes[part];
          const cond = `${at} >= ${base}u && ${at} < ${base + width}u`;
          this.emit(`${k === 0 ? '' : '} else '}if (${cond}) {`);
          const inner = part === null ? idx : { ...idx, [part]: `(${at} - ${base}u)` };
          this.block(() => this.emit(`${r} = ${this.value(x, inner, where)};`));
          base += width;
        });
        this.emit('}');
        return r;
      }
      case 'outer': {
        const w = this.sizes[n.from];
        const at = idx[n.axis];
        const a = this.value(n.x, { ...idx, [n.from]: `(${at} / ${w}u)` }, where);
        const b = this.value(n.x, { ...idx, [n.from]: `(${at} % ${w}u)` }, where);
        return `${a} * ${b}`;
      }
      case 'at':
        return this.value(n.x, idx, n.which === 'i' ? this.pos.i : this.pos.j);
      case 'select': {
        const ix = this.value(n.index, idx, where);
        return this.value(n.x, { ...idx, [n.axis]: `u32(round(${ix}))` }, where);
      }
      case 'decay': {
        const x = this.program.nodes[n.x];
        const lag = `f32(${this.pos.i} - ${this.pos.j})`;
        if (x.type.side !== 'token') return `pow(${this.value(n.x, idx, where)}, ${lag})`;
        // Π_{l=j+1..i} x_l, read token by token.
        const acc = this.fresh('gate');
        const l = this.fresh('l');
        this.emit(`var ${acc}: f32 = 1.0;`);
        this.emit(`for (var ${l}: u32 = ${this.pos.j} + 1u; ${l} <= ${this.pos.i}; ${l}++) {`);
        this.block(() => this.emit(`${acc} = ${acc} * ${this.value(n.x, idx, l)};`));
        this.emit('}');
        return acc;
      }
      default:
        return assertNever(n, 'op');
    }
  }
}

/** Row-major offset of `idx` in a tensor over `axes`, as a WGSL u32 expression. */
export function offset(axes: readonly string[], sizes: Readonly<Record<string, number>>, idx: Index, base = ''): string {
  let expr = base;
  for (const a of axes) {
    const i = idx[a];
    if (i === undefined) throw new Error(`internal: no index for axis ${a}`);
    expr = expr ? `(${expr}) * ${sizes[a]}u + ${i}` : i;
  }
  return expr || '0u';
}

/** The nodes reachable from `roots` (inclusive), in id order. */
export function reachable(p: Program, roots: readonly Id[]): Id[] {
  const seen = new Set<Id>();
  const stack = [...roots];
  while (stack.length) {
    const id = stack.pop()!;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...operands(p.nodes[id]));
  }
  return [...seen].sort((a, b) => a - b);
}
