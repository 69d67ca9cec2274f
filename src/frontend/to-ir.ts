// AST → IR: resolves names, infers sides and axes, and rejects what cannot be causal attention.
// Every error is a SourceError at the offending expression.
import { GraphBuilder } from '../ir/builder.ts';
import { SourceError, type Span } from '../ir/span.ts';
import { lagRange } from '../ir/masks.ts';
import { checkRopeSpec, DEFAULT_ROPE, ropeOp, type RopeScaling, type RopeSpec } from '../ir/rope.ts';
import { operands, type AxisDef, type Id, type MaskAtom, type OutputItem, type Program, type Term, type TensorDecl, type UnaryFn } from '../ir/types.ts';
import { extentOf, type Decl, type Expr, type MaskAtomAst, type TermDecl, type VariantAst } from './ast.ts';

export interface CompileOptions {
  /** Overrides of `size` declarations (e.g. K = 8 from a model config). */
  sizes?: Record<string, number>;
  /** The position encoding of a model (config.json's rope_theta, rope_scaling): replaces every rope(…)'s θ and scaling. */
  rope?: RopeSpec;
}

const UNARY: Record<string, UnaryFn> = {
  exp: 'exp', log: 'log', elu: 'elu', relu: 'relu', sigmoid: 'sigmoid', silu: 'silu',
  cos: 'cos', sin: 'sin', sqrt: 'sqrt', abs: 'abs', tanh: 'tanh',
};
const AXIS_FNS = ['sum', 'norm', 'softmax'] as const;
const FUNCTIONS = [...Object.keys(UNARY), 'pow', 'max', 'min', 'dot', ...AXIS_FNS, 'concat', 'outer', 'decay', 'rope'];
const MASKS = ['causal', 'window', 'group', 'past_groups', 'centered'];
const POSITIONS = ['i', 'j', 'lag'];

type Binding =
  | { kind: 'input' | 'param' | 'let'; id: Id; span: Span }
  | { kind: 'size'; value: number; span: Span };

type Context = 'let' | 'score' | 'value' | 'constant';

export function toIr(ast: VariantAst, options: CompileOptions = {}): Program {
  const g = new GraphBuilder();
  const env = new Map<string, Binding>();
  const sizes: Record<string, number> = {};
  const axes: Record<string, AxisDef> = {};
  const inputs: TensorDecl[] = [];
  const params: TensorDecl[] = [];
  const lets: Record<string, Id> = {};
  const terms: Term[] = [];
  let output: OutputItem[] | null = null;
  let outputSpan: Span | undefined;

  const declare = (name: string, b: Binding) => {
    const old = env.get(name);
    if (old) throw new SourceError(`'${name}' is already declared at line ${old.span.line}`, b.span);
    if (POSITIONS.includes(name) || name === 'pi') throw new SourceError(`'${name}' is reserved`, b.span);
    env.set(name, b);
  };

  const overrides = new Set(Object.keys(options.sizes ?? {}));
  for (const d of ast.decls) {
    switch (d.kind) {
      case 'size': {
        const value = options.sizes?.[d.name] ?? d.value;
        overrides.delete(d.name);
        if (!Number.isInteger(value) || value < 1) throw new SourceError(`size ${d.name} must be a positive integer (got ${value})`, d.span);
        declare(d.name, { kind: 'size', value, span: d.span });
        sizes[d.name] = value;
        axes[d.name] = { kind: 'size', value };
        g.defineAxis(d.name, { kind: 'size', value }, d.span);
        break;
      }
      case 'input':
      case 'param':
        for (const t of d.tensors) {
          const seen = new Set<string>();
          for (const a of t.axes) {
            if (seen.has(a.name)) throw new SourceError(`axis '${a.name}' appears twice in ${t.name}`, a.span);
            seen.add(a.name);
            const b = env.get(a.name);
            if (b && b.kind !== 'size') throw new SourceError(`'${a.name}' is a tensor, not an axis`, a.span);
            if (!axes[a.name]) {
              axes[a.name] = { kind: 'free' };
              g.defineAxis(a.name, { kind: 'free' }, a.span);
            }
          }
          if (d.kind === 'input' && t.axes.length === 0) throw new SourceError(`input ${t.name} needs at least one axis (e.g. ${t.name}[h])`, t.span);
          const axisNames = t.axes.map((a) => a.name);
          const id = g.leaf({ op: d.kind, name: t.name }, axisNames, t.span);
          declare(t.name, { kind: d.kind, id, span: t.span });
          (d.kind === 'input' ? inputs : params).push({ name: t.name, axes: axisNames, id, span: t.span });
        }
        break;
      case 'let': {
        const id = expr(d.expr, 'let');
        declare(d.name, { kind: 'let', id, span: d.span });
        lets[d.name] = id;
        break;
      }
      case 'term':
        if (terms.some((t) => t.name === d.name)) throw new SourceError(`term '${d.name}' is already declared`, d.span);
        if (env.has(d.name)) throw new SourceError(`'${d.name}' is already declared as a ${env.get(d.name)!.kind}`, d.span);
        terms.push(term(d));
        break;
      case 'output':
        if (output) throw new SourceError('a variant has one output declaration', d.span);
        output = outputItems(d);
        outputSpan = d.span;
        break;
    }
  }
  if (overrides.size) {
    throw new SourceError(`unknown size ${[...overrides].map((s) => `'${s}'`).join(', ')}: ${ast.name} declares ${Object.keys(sizes).join(', ') || 'no sizes'}`, ast.span);
  }
  if (inputs.length === 0) throw new SourceError(`variant ${ast.name} declares no inputs`, ast.span);
  if (terms.length === 0) throw new SourceError(`variant ${ast.name} declares no terms`, ast.span);
  if (!output) throw new SourceError(`variant ${ast.name} has no 'output' declaration (e.g. output ${terms.map((t) => t.name).join(' + ')})`, ast.span);
  const used = new Set((output as OutputItem[]).flatMap((o) => (o.kind === 'term' ? [o.term] : [...o.terms])));
  for (const t of terms) if (!used.has(t.name)) throw new SourceError(`term '${t.name}' is not used in the output`, t.span ?? outputSpan);
  const outAxes = g.type(terms[0].value).axes;
  for (const t of terms) {
    const ax = g.type(t.value).axes;
    if (ax.join() !== outAxes.join()) {
      throw new SourceError(`term '${t.name}' has values over [${ax.join(', ')}] but term '${terms[0].name}' has [${outAxes.join(', ')}]; every term adds into the same output`, t.span);
    }
  }
  return { name: ast.name, file: ast.file, sizes, axes: g.axes, inputs, params, nodes: g.nodes, lets, terms, output: output as OutputItem[], outAxes };

  function constant(e: Expr): number {
    switch (e.kind) {
      case 'number':
        return e.value;
      case 'name': {
        const b = env.get(e.name);
        if (b?.kind === 'size') return b.value;
        if (e.name === 'pi') return Math.PI;
        throw new SourceError(`expected a number or a size, found '${e.name}'`, e.span);
      }
      case 'unary':
        return -constant(e.arg);
      case 'binary': {
        const a = constant(e.lhs);
        const b = constant(e.rhs);
        switch (e.op) {
          case '+': return a + b;
          case '-': return a - b;
          case '*': return a * b;
          case '/': return a / b;
          case '**': return a ** b;
          case '@': break;
        }
        throw new SourceError('expected a constant expression', e.span);
      }
      default:
        throw new SourceError('expected a constant expression', e.span);
    }
  }

  /**
   * The axis a concat or outer creates. The same name may be created again only with the same definition,
   * so that one feature map can be applied to q and to k (φ(q)[f] · φ(k)[f] needs one axis f).
   */
  function newAxis(name: string, def: AxisDef, what: string, span: Span): void {
    const old = axes[name];
    if (old && JSON.stringify(old) !== JSON.stringify(def)) {
      const was = old.kind === 'free' || old.kind === 'size' ? `already an axis (${old.kind === 'size' ? 'a size' : 'of an input or parameter'})` : `already built by a ${old.kind} of different parts`;
      throw new SourceError(`${what}'s new axis '${name}' is ${was}; give it another name`, span);
    }
    if (env.has(name)) throw new SourceError(`${what}'s new axis '${name}' is already declared as a ${env.get(name)!.kind}`, span);
    g.defineAxis(name, def, span);
    axes[name] = def;
  }

  function axisArg(e: Expr, what: string): string {
    if (e.kind !== 'name') throw new SourceError(`${what} expects an axis name here`, e.span);
    return e.name;
  }

  function expr(e: Expr, ctx: Context): Id {
    switch (e.kind) {
      case 'number':
        return g.const(e.value);
      case 'name': {
        if (POSITIONS.includes(e.name)) {
          if (ctx !== 'score') throw new SourceError(`'${e.name}' is a position and exists only inside a term's score`, e.span);
          if (e.name === 'i') return g.add({ op: 'position', which: 'i' }, e.span);
          if (e.name === 'j') return g.add({ op: 'position', which: 'j' }, e.span);
          return g.add({ op: 'binary', fn: 'sub', a: g.add({ op: 'position', which: 'i' }), b: g.add({ op: 'position', which: 'j' }) }, e.span);
        }
        if (e.name === 'pi') return g.const(Math.PI);
        const b = env.get(e.name);
        if (!b) {
          const hint = FUNCTIONS.includes(e.name) ? ` ('${e.name}' is a function: call it)` : '';
          throw new SourceError(`unknown name '${e.name}'${hint}`, e.span);
        }
        if (b.kind === 'size') return g.const(b.value);
        if (ctx === 'score' && g.type(b.id).side === 'token') {
          throw new SourceError(`'${e.name}' is per-token: inside a score read it at a position, ${e.name}[i] or ${e.name}[j]`, e.span);
        }
        return b.id;
      }
      case 'unary':
        return g.add({ op: 'unary', fn: 'neg', x: expr(e.arg, ctx) }, e.span);
      case 'binary': {
        const a = expr(e.lhs, ctx);
        const b = expr(e.rhs, ctx);
        if (e.op === '@') {
          const ax = g.type(a).axes;
          if (ax.length === 0) throw new SourceError('the left side of @ needs an axis to contract (its last axis)', e.span);
          return g.add({ op: 'matmul', a, b, axis: ax[ax.length - 1] }, e.span);
        }
        const fn = ({ '+': 'add', '-': 'sub', '*': 'mul', '/': 'div', '**': 'pow' } as const)[e.op];
        return g.add({ op: 'binary', fn, a, b }, e.span);
      }
      case 'call':
        return call(e, ctx);
      case 'index':
        return index(e, ctx);
    }
  }

  function call(e: Extract<Expr, { kind: 'call' }>, ctx: Context): Id {
    const arity = (n: number | [number, number]) => {
      const [lo, hi] = typeof n === 'number' ? [n, n] : n;
      if (e.args.length < lo || e.args.length > hi) {
        throw new SourceError(`${e.fn} takes ${lo === hi ? lo : `${lo} to ${hi}`} argument${hi === 1 ? '' : 's'}, got ${e.args.length}`, e.span);
      }
    };
    const fn = UNARY[e.fn];
    if (fn) {
      arity(1);
      return g.add({ op: 'unary', fn, x: expr(e.args[0], ctx) }, e.span);
    }
    switch (e.fn) {
      case 'pow':
      case 'max':
      case 'min':
        arity(2);
        return g.add({ op: 'binary', fn: e.fn, a: expr(e.args[0], ctx), b: expr(e.args[1], ctx) }, e.span);
      case 'sum':
      case 'norm':
      case 'softmax':
        arity(2);
        return g.add({ op: e.fn, x: expr(e.args[0], ctx), axis: axisArg(e.args[1], e.fn) }, e.span);
      case 'dot': {
        arity(3);
        const axis = axisArg(e.args[2], 'dot');
        const [x, y] = [expr(e.args[0], ctx), expr(e.args[1], ctx)];
        for (const [k, id] of [x, y].entries()) {
          const ax = g.type(id).axes;
          if (!ax.includes(axis)) throw new SourceError(`dot over axis '${axis}', but operand ${k + 1} has axes [${ax.join(', ')}]`, e.args[2].span);
        }
        const prod = g.add({ op: 'binary', fn: 'mul', a: x, b: y }, e.span);
        return g.add({ op: 'sum', x: prod, axis }, e.span);
      }
      case 'outer': {
        arity(2);
        const x = expr(e.args[0], ctx);
        const ax = g.type(x).axes;
        if (ax.length === 0) throw new SourceError('outer needs a tensor with an axis (its last axis is squared)', e.args[0].span);
        const axis = axisArg(e.args[1], 'outer');
        newAxis(axis, { kind: 'outer', of: ax[ax.length - 1] }, 'outer', e.args[1].span);
        return g.add({ op: 'outer', x, from: ax[ax.length - 1], axis }, e.span);
      }
      case 'concat': {
        if (e.args.length < 3) throw new SourceError('concat takes two or more tensors and the name of the new axis', e.span);
        const axis = axisArg(e.args[e.args.length - 1], 'concat');
        const xs = e.args.slice(0, -1).map((a) => expr(a, ctx));
        const ranked = xs.map((x) => g.type(x).axes).filter((a) => a.length > 0);
        const common = ranked.length ? ranked.reduce((acc, a) => acc.filter((x) => a.includes(x))) : [];
        const extras = xs.map((x) => g.type(x).axes.filter((a) => !common.includes(a)));
        const allShared = extras.every((x) => x.length === 0);
        const parts = xs.map((x, k): string | null => {
          const ax = g.type(x).axes;
          if (extras[k].length > 1) throw new SourceError(`concat: operand ${k + 1} has more than one axis the others lack (${extras[k].join(', ')})`, e.args[k].span);
          if (extras[k].length === 1) return extras[k][0];
          return allShared && ax.length > 0 ? ax[ax.length - 1] : null;
        });
        newAxis(axis, { kind: 'concat', parts }, 'concat', e.args[e.args.length - 1].span);
        return g.add({ op: 'concat', xs, parts, axis }, e.span);
      }
      case 'rope':
        return rope(e, ctx, arity);
      case 'decay': {
        arity(1);
        if (ctx !== 'score') throw new SourceError('decay(x) is a factor of a score (Π_{l=j+1..i} x_l); use it inside a term', e.span);
        const arg = e.args[0];
        if (arg.kind !== 'name') throw new SourceError('decay takes the name of a gate (a per-token tensor or a parameter)', arg.span);
        const b = env.get(arg.name);
        if (!b || b.kind === 'size') throw new SourceError(`unknown gate '${arg.name}'`, arg.span);
        return g.add({ op: 'decay', x: b.id }, e.span);
      }
      default:
        throw new SourceError(`unknown function '${e.fn}' (known: ${FUNCTIONS.join(', ')})`, e.fnSpan);
    }
  }

  /**
   * rope(x, axis[, theta[, linear(F) | llama3(F, LOW, HIGH, ORIGINAL)]]): x rotated along `axis` by its token's
   * position (src/ir/rope.ts); θ defaults to 10000. A model's rope settings (options.rope) replace the written ones.
   */
  function rope(e: Extract<Expr, { kind: 'call' }>, ctx: Context, arity: (n: number | [number, number]) => void): Id {
    arity([2, 4]);
    const x = expr(e.args[0], ctx);
    const axis = axisArg(e.args[1], 'rope');
    const xt = g.type(x);
    if (!xt.axes.includes(axis)) throw new SourceError(`rope along axis '${axis}', but ${xt.axes.length ? `the tensor has axes [${xt.axes.join(', ')}]` : 'the value is a scalar'}`, e.args[1].span);
    const size = axisSize(axis);
    if (size !== undefined && size % 2 !== 0) throw new SourceError(`rope rotates pairs (f, f + ${axis}/2): axis '${axis}' must have an even size, it is ${size}`, e.args[1].span);
    let written: RopeSpec = DEFAULT_ROPE;
    if (e.args.length >= 3) written = { theta: constant(e.args[2]), scaling: e.args[3] ? ropeScaling(e.args[3]) : { kind: 'none' } };
    const spec = options.rope ?? written;
    try {
      checkRopeSpec(spec);
    } catch (err) {
      throw new SourceError((err as Error).message + (options.rope ? ' (from the model configuration)' : ''), e.args[2]?.span ?? e.span);
    }
    return g.add(ropeOp(x, axis, spec), e.span);
  }

  /** rope's fourth argument: linear(FACTOR) or llama3(FACTOR, LOW_FREQ_FACTOR, HIGH_FREQ_FACTOR, ORIGINAL_MAX_POSITIONS). */
  function ropeScaling(a: Expr): RopeScaling {
    if (a.kind === 'call' && a.fn === 'linear' && a.args.length === 1) return { kind: 'linear', factor: constant(a.args[0]) };
    if (a.kind === 'call' && a.fn === 'llama3' && a.args.length === 4) {
      const [factor, lowFreqFactor, highFreqFactor, originalMaxPositions] = a.args.map(constant);
      return { kind: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositions };
    }
    throw new SourceError('rope scaling is linear(FACTOR) or llama3(FACTOR, LOW_FREQ_FACTOR, HIGH_FREQ_FACTOR, ORIGINAL_MAX_POSITIONS)', a.span);
  }

  function index(e: Extract<Expr, { kind: 'index' }>, ctx: Context): Id {
    if (e.base.kind !== 'name') throw new SourceError('only named tensors can be indexed', e.base.span);
    const name = e.base.name;
    const b = env.get(name);
    if (!b || b.kind === 'size') throw new SourceError(`unknown tensor '${name}'`, e.base.span);
    const t = g.type(b.id);
    if (e.args.length === 1 && e.args[0].kind === 'position') {
      if (t.side !== 'token') {
        throw new SourceError(`'${name}' is ${t.side === 'param' ? 'a parameter, the same at every position' : `already ${t.side}-side`}: it cannot be read at a position`, e.span);
      }
      const which = positionOf(e.args[0].expr, name);
      if (ctx === 'value' && which === 'i') throw new SourceError(`a term's value is read at the key position: write ${name} or ${name}[j]`, e.span);
      if (ctx !== 'score' && ctx !== 'value') throw new SourceError(`${name}[${which}] reads a position; positions exist only inside a term's score`, e.span);
      return g.add({ op: 'at', x: b.id, which }, e.span);
    }
    let id = b.id;
    for (const a of e.args) {
      if (a.kind !== 'named') throw new SourceError(`index ${name} by naming the axis: ${name}[AXIS = expr]`, a.span);
      if (!g.type(id).axes.includes(a.axis)) throw new SourceError(`'${name}' has no axis '${a.axis}' (axes: ${t.axes.join(', ')})`, a.axisSpan);
      if (g.type(id).side !== 'param') throw new SourceError(`only parameters can be indexed along an axis ('${name}' is ${g.type(id).side}-side)`, e.span);
      const ix = expr(a.expr, ctx);
      id = g.add({ op: 'select', x: id, axis: a.axis, index: ix }, a.span);
    }
    return id;
  }

  /** x[i] / x[j]; anything else is a future reference or not a position at all. */
  function positionOf(p: Expr, name: string): 'i' | 'j' {
    if (p.kind === 'name' && (p.name === 'i' || p.name === 'j')) return p.name;
    if (p.kind === 'binary' && (p.op === '+' || p.op === '-') && p.lhs.kind === 'name' && (p.lhs.name === 'i' || p.lhs.name === 'j')) {
      let off = 0;
      try {
        off = constant(p.rhs);
      } catch {
        throw new SourceError(`${name}[…]: a position offset must be a constant`, p.rhs.span);
      }
      const signed = p.op === '+' ? off : -off;
      if (signed > 0) {
        throw new SourceError(`future reference: ${name}[${p.lhs.name} + ${signed}] reads a position after ${p.lhs.name}, which a causal variant cannot see (negative lag)`, extentOf(p));
      }
      throw new SourceError(`${name}[${p.lhs.name} - ${-signed}]: shifted reads are written as a window term (window(K) with a score indexed by lag)`, extentOf(p));
    }
    throw new SourceError(`a per-token tensor is read at i (query position) or j (key position), e.g. ${name}[i]`, extentOf(p));
  }

  function mask(atoms: MaskAtomAst[], noncausal: boolean, termSpan: Span): MaskAtom[] {
    const out: MaskAtom[] = atoms.map((a) => {
      if (!MASKS.includes(a.name)) throw new SourceError(`unknown mask '${a.name}' (known: ${MASKS.join(', ')})`, a.span);
      if (a.name === 'causal') {
        if (a.arg) throw new SourceError('causal takes no argument', a.span);
        return { kind: 'causal' };
      }
      if (!a.arg) throw new SourceError(`${a.name} needs a size, e.g. ${a.name}(4)`, a.span);
      const size = constant(a.arg);
      if (!Number.isInteger(size) || size < 1) throw new SourceError(`${a.name}(${size}): the size must be a positive integer`, a.arg.span);
      return { kind: a.name as 'window' | 'group' | 'past_groups' | 'centered', size };
    });
    const hasCentered = out.some((m) => m.kind === 'centered');
    if (hasCentered && !noncausal) {
      throw new SourceError('centered(K) reads positions after i (the encoder-style leak); mark the term `noncausal` (parallel form only) or use window(K)', atoms.find((a) => a.name === 'centered')!.span);
    }
    if (!noncausal && out.length === 0) throw new SourceError('a term needs a mask', termSpan);
    if (noncausal && !hasCentered) throw new SourceError('a noncausal term needs a centered(K) mask (otherwise drop `noncausal`)', termSpan);
    return out;
  }

  function term(d: TermDecl): Term {
    const m = mask(d.mask, d.noncausal, d.span);
    const score = expr(d.score, 'score');
    const st = g.type(score);
    if (st.side === 'token') throw new SourceError('a score reads per-token tensors at i or j', extentOf(d.score));
    let value = expr(d.value, 'value');
    const vn = g.node(value);
    if (vn.op === 'at') {
      if (vn.which !== 'j') throw new SourceError('the value is read at the key position j', extentOf(d.value));
      value = vn.x;
    }
    const vt = g.type(value);
    if (vt.side !== 'token') throw new SourceError(`the value must be a per-token tensor (it is read at j); this one is ${vt.side}-side`, extentOf(d.value));
    const extra = st.axes.filter((a) => !vt.axes.includes(a));
    if (extra.length) {
      throw new SourceError(`the score has axes [${st.axes.join(', ')}] but the value has [${vt.axes.join(', ')}]: contract ${extra.join(', ')} with sum(…) or dot(…)`, extentOf(d.score));
    }
    checkSelectIndices(score, m, extentOf(d.score));
    return { name: d.name, span: d.span, noncausal: d.noncausal, mask: m, score, value, form: { kind: 'general' } };
  }

  /** Every `select` index under a bounded lag range must stay inside its axis (a negative index reads the future). */
  function checkSelectIndices(root: Id, m: MaskAtom[], span: Span) {
    const range = lagRange(m);
    const seen = new Set<Id>();
    const visit = (id: Id) => {
      if (seen.has(id)) return;
      seen.add(id);
      const n = g.node(id);
      if (n.op === 'select') {
        const size = axisSize(n.axis);
        const f = lagFunction(n.index);
        if (!f) throw new SourceError(`the index of ${n.axis} must be a function of lag alone`, n.span ?? span);
        if (range && size !== undefined) {
          for (let lag = range[0]; lag <= range[1]; lag++) {
            const ix = f(lag);
            if (!Number.isInteger(ix) || ix < 0 || ix >= size) {
              throw new SourceError(`index ${n.axis} = ${ix} at lag ${lag} is outside 0..${size - 1}${ix < 0 ? ' (a negative index reads the future)' : ''}`, n.span ?? span);
            }
          }
        } else if (!range) {
          throw new SourceError(`indexing by lag needs a bounded mask (window(K)) so that every lag has a tap`, n.span ?? span);
        }
      }
      for (const o of operands(n)) visit(o);
    };
    visit(root);
  }

  function axisSize(axis: string): number | undefined {
    const a = axes[axis];
    return a?.kind === 'size' ? a.value : undefined;
  }

  /** The index as a function of lag, when it depends on nothing else. */
  function lagFunction(id: Id): ((lag: number) => number) | null {
    const n = g.node(id);
    switch (n.op) {
      case 'const':
        return () => n.value;
      case 'binary': {
        if (n.fn === 'sub') {
          const a = g.node(n.a);
          const b = g.node(n.b);
          if (a.op === 'position' && a.which === 'i' && b.op === 'position' && b.which === 'j') return (lag) => lag;
        }
        const fa = lagFunction(n.a);
        const fb = lagFunction(n.b);
        if (!fa || !fb) return null;
        const op = { add: (x: number, y: number) => x + y, sub: (x: number, y: number) => x - y, mul: (x: number, y: number) => x * y } as Record<string, (x: number, y: number) => number>;
        const f = op[n.fn];
        return f ? (lag) => f(fa(lag), fb(lag)) : null;
      }
      case 'unary':
        if (n.fn === 'neg') {
          const f = lagFunction(n.x);
          return f ? (lag) => -f(lag) : null;
        }
        return null;
      default:
        return null;
    }
  }

  function outputItems(d: Extract<Decl, { kind: 'output' }>): OutputItem[] {
    const names = new Set<string>();
    const check = (name: string, span: Span) => {
      if (!terms.some((t) => t.name === name)) throw new SourceError(`unknown term '${name}' (terms: ${terms.map((t) => t.name).join(', ') || 'none yet: declare terms before the output'})`, span);
      if (names.has(name)) throw new SourceError(`term '${name}' appears twice in the output`, span);
      names.add(name);
    };
    return d.items.map((it): OutputItem => {
      if (it.kind === 'term') {
        check(it.name, it.span);
        return { kind: 'term', term: it.name };
      }
      for (const t of it.terms) check(t.name, t.span);
      const eps = constant(it.eps);
      if (!(eps >= 0)) throw new SourceError('normalize(…, eps): eps must be ≥ 0', it.eps.span);
      return { kind: 'norm', terms: it.terms.map((t) => t.name), eps };
    });
  }
}

