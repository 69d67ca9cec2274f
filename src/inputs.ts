// Seeded random inputs and parameters for a compiled variant, named and shaped as it declares them:
// inputs are [b, t, …axes], parameters [...axes]. Backs `linattn inputs VARIANT.la … --out FILE.safetensors`
// and every test that needs data for an arbitrary variant.
//
// Sizes: a `size` axis takes the program's value; a free axis takes `axes[name]`, else a default
// (h = 2, d = e = m = 8, any other free axis 8); concat/outer axes follow from their parts.
// Values, chosen so that every form stays well-conditioned in float32:
//   - a tensor that feeds decay(·) (directly or through elementwise functions, e.g. sigmoid(g)^(1/16))
//     is drawn so that each decay factor is uniform in (0.8, 0.99), by inverting that function;
//   - other inputs ~ N(0, 1/√n), n the size of their last axis, so that q·k has unit variance
//     (the softmax temperature 1/√d split between q and k);
//   - other parameters ~ N(0, 0.2²): small weights.
import { assertNever, type Id, type Program, type TensorDecl } from './ir/types.ts';
import { numel, rng, type Tensor } from './tensor.ts';
import { BINARY_F64, UNARY_F64 } from './ir/float-ops.ts';

export const DEFAULT_AXIS_SIZES: Readonly<Record<string, number>> = { h: 2, d: 8, e: 8, m: 8 };
const OTHER_FREE_AXIS = 8;
export const GATE_RANGE: readonly [number, number] = [0.8, 0.99];
const PARAM_SCALE = 0.2;

export interface InputOptions {
  b: number;
  t: number;
  /** Sizes of free axes; a size the variant fixes (`size K = 4`) may be repeated only with its own value. */
  axes?: Readonly<Record<string, number>>;
  seed?: number;
}

export function makeInputs(p: Program, opts: InputOptions): Record<string, Tensor<Float32Array>> {
  const { b, t } = opts;
  const seed = opts.seed ?? 0;
  for (const [k, v] of [['b', b], ['t', t]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`makeInputs: ${k} must be a positive integer, got ${v}`);
  }
  const sizes = axisSizes(p, opts.axes ?? {});
  const gates = new Map([...gateFunctions(p)].map(([id, f]) => [id, gateSampler(f, declOf(p, id))]));
  const out: Record<string, Tensor<Float32Array>> = {};
  for (const [decls, token] of [[p.inputs, true], [p.params, false]] as const) {
    for (const decl of decls) {
      const shape = [...(token ? [b, t] : []), ...decl.axes.map((a) => sizes[a])];
      const draw = rng((seed ^ hashName(decl.name)) >>> 0);
      const data = new Float32Array(numel(shape));
      const gate = gates.get(decl.id);
      if (gate) {
        for (let n = 0; n < data.length; n++) data[n] = gate(draw);
      } else {
        const last = decl.axes.length ? sizes[decl.axes[decl.axes.length - 1]] : 1;
        const scale = token ? last ** -0.25 : PARAM_SCALE;
        for (let n = 0; n < data.length; n++) data[n] = scale * normal(draw);
      }
      out[decl.name] = { shape, data };
    }
  }
  return out;
}

/** Every axis of the program with a size: declared sizes, requested or default free sizes, derived ones. */
export function axisSizes(p: Program, requested: Readonly<Record<string, number>>): Record<string, number> {
  const sizes: Record<string, number> = {};
  for (const [name, n] of Object.entries(requested)) {
    const def = p.axes[name];
    if (!def) throw new Error(`makeInputs: ${p.name} has no axis '${name}' (axes: ${Object.keys(p.axes).join(', ')})`);
    if (!Number.isInteger(n) || n < 1) throw new Error(`makeInputs: axis ${name} must be a positive integer, got ${n}`);
    if (def.kind === 'size' && def.value !== n) {
      throw new Error(`makeInputs: ${p.name} fixes ${name} = ${def.value} (size ${name}); compile it with sizes { ${name}: ${n} } to change it`);
    }
    if (def.kind === 'concat' || def.kind === 'outer') throw new Error(`makeInputs: axis ${name} is built by ${def.kind} and follows from its parts`);
  }
  const size = (name: string): number => {
    if (sizes[name] !== undefined) return sizes[name];
    const def = p.axes[name];
    switch (def.kind) {
      case 'size': return (sizes[name] = def.value);
      case 'free': return (sizes[name] = requested[name] ?? DEFAULT_AXIS_SIZES[name] ?? OTHER_FREE_AXIS);
      case 'concat': return (sizes[name] = def.parts.reduce((s, part) => s + (part === null ? 1 : size(part)), 0));
      case 'outer': return (sizes[name] = size(def.of) ** 2);
      default: return assertNever(def, 'axis');
    }
  };
  for (const name of Object.keys(p.axes)) size(name);
  return sizes;
}

/**
 * For each input or parameter that a decay(·) reads, the elementwise function from its value to the
 * decay factor (identity when decay reads it directly).
 */
function gateFunctions(p: Program): Map<Id, (u: number) => number> {
  const gates = new Map<Id, (u: number) => number>();
  for (const n of p.nodes) {
    if (n.op !== 'decay') continue;
    const chain = elementwise(p, n.x);
    if (!chain) throw new Error(`makeInputs: decay(%${n.x}) in ${p.name} is not an elementwise function of one input or parameter; cannot choose a stable range`);
    gates.set(chain.leaf, chain.f);
  }
  return gates;
}

function declOf(p: Program, id: Id): TensorDecl {
  return [...p.inputs, ...p.params].find((d) => d.id === id)!;
}

function elementwise(p: Program, id: Id): { leaf: Id; f: (u: number) => number } | null {
  const n = p.nodes[id];
  switch (n.op) {
    case 'input':
    case 'param':
      return { leaf: id, f: (u) => u };
    case 'unary': {
      const inner = elementwise(p, n.x);
      const g = UNARY_F64[n.fn];
      return inner && { leaf: inner.leaf, f: (u) => g(inner.f(u)) };
    }
    case 'binary': {
      const ca = constant(p, n.a);
      const cb = constant(p, n.b);
      const g = BINARY_F64[n.fn];
      if (ca !== null && cb === null) {
        const inner = elementwise(p, n.b);
        return inner && { leaf: inner.leaf, f: (u) => g(ca, inner.f(u)) };
      }
      if (cb !== null && ca === null) {
        const inner = elementwise(p, n.a);
        return inner && { leaf: inner.leaf, f: (u) => g(inner.f(u), cb) };
      }
      return null;
    }
    default:
      return null;
  }
}

function constant(p: Program, id: Id): number | null {
  const n = p.nodes[id];
  if (n.op === 'const') return n.value;
  if (n.op === 'unary') {
    const x = constant(p, n.x);
    return x === null ? null : UNARY_F64[n.fn](x);
  }
  if (n.op === 'binary') {
    const a = constant(p, n.a);
    const b = constant(p, n.b);
    return a === null || b === null ? null : BINARY_F64[n.fn](a, b);
  }
  return null;
}

/**
 * Draws u with f(u) uniform in GATE_RANGE: finds once an interval of u over which f crosses the whole
 * range (scanning a grid over [−40, 40]), then inverts f over it through a fine table (INVERSE_CELLS).
 */
function gateSampler(f: (u: number) => number, decl: TensorDecl): (draw: () => number) => number {
  const [lo, hi] = GATE_RANGE;
  const cells = 800;
  const grid = Array.from({ length: cells + 1 }, (_, c) => -40 + (80 * c) / cells);
  const values = grid.map(f);
  const crossings = (target: number) =>
    grid.slice(0, -1).flatMap((_, c) => ((values[c] - target) * (values[c + 1] - target) <= 0 ? [c] : []));
  let best: [number, number] | null = null;
  for (const a of crossings(lo)) {
    for (const b of crossings(hi)) {
      const span: [number, number] = [Math.min(a, b), Math.max(a, b) + 1];
      if (!best || span[1] - span[0] < best[1] - best[0]) best = span;
    }
  }
  if (!best) throw new Error(`makeInputs: no value of ${decl.name} gives decay factors across (${lo}, ${hi}); cannot draw it in a stable range`);
  const [u0, u1] = [grid[best[0]], grid[best[1]]];
  // f tabulated finely over [u0, u1] once (monotone there), then each draw is a binary search of the table and a
  // linear interpolation inside its cell: bisecting f itself per element took 86 s for gla's 16.7 M gates.
  const n = INVERSE_CELLS;
  const us = Float64Array.from({ length: n + 1 }, (_, c) => u0 + ((u1 - u0) * c) / n);
  const fs = Float64Array.from(us, f);
  const sign = fs[n] > fs[0] ? 1 : -1;
  return (draw) => {
    const target = sign * (lo + (hi - lo) * draw());
    let a = 0;
    let b = n;
    while (b - a > 1) {
      const mid = (a + b) >> 1;
      if (sign * fs[mid] < target) a = mid;
      else b = mid;
    }
    const fa = sign * fs[a];
    const fb = sign * fs[b];
    const w = fb > fa ? Math.min(1, Math.max(0, (target - fa) / (fb - fa))) : 0.5;
    return us[a] + w * (us[b] - us[a]);
  };
}

/** Cells of the gate sampler's table of f: linear interpolation in a cell errs ~1e-10, far below float32's step. */
const INVERSE_CELLS = 1 << 16;

function normal(draw: () => number): number {
  const u = Math.max(draw(), 1e-12);
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * draw());
}

/** FNV-1a, so that each tensor has its own stream and adding a tensor does not change the others. */
function hashName(name: string): number {
  let h = 0x811c9dc5;
  for (let c = 0; c < name.length; c++) h = Math.imul(h ^ name.charCodeAt(c), 0x01000193);
  return h >>> 0;
}

