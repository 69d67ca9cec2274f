// Binds a program's axes to sizes from the shapes of the tensors the user supplies, with errors that
// name the tensor and the shape it should have. Inputs are [b, t, …axes]; parameters are [...axes].
import type { AxisDef, Program } from './types.ts';

export interface Bound {
  readonly b: number;
  readonly t: number;
  readonly sizes: Readonly<Record<string, number>>;
}

export class ShapeError extends Error {
  override name = 'ShapeError';
}

export function axisSize(axes: Readonly<Record<string, AxisDef>>, sizes: Record<string, number>, name: string): number {
  if (sizes[name] !== undefined) return sizes[name];
  const d = axes[name];
  if (!d) throw new ShapeError(`unknown axis '${name}'`);
  switch (d.kind) {
    case 'size': return (sizes[name] = d.value);
    case 'free': throw new ShapeError(`axis '${name}' has no size: no input or parameter fixes it`);
    case 'concat': return (sizes[name] = d.parts.reduce((s, p) => s + (p === null ? 1 : axisSize(axes, sizes, p)), 0));
    case 'outer': {
      const n = axisSize(axes, sizes, d.of);
      return (sizes[name] = n * n);
    }
  }
}

/**
 * Shapes of the tensors a caller supplies, checked against the declarations. `shapes` maps tensor names to
 * shapes; `fixed` may pre-set axis sizes (e.g. from a config); `b`, `t` may be pre-set too.
 */
export function bindShapes(
  p: Program,
  shapes: Readonly<Record<string, readonly number[] | undefined>>,
  fixed: { b?: number; t?: number; sizes?: Record<string, number> } = {},
): Bound {
  const sizes: Record<string, number> = { ...(fixed.sizes ?? {}) };
  let b = fixed.b;
  let t = fixed.t;
  const origin: Record<string, string> = {};
  const describe = (decl: { name: string; axes: readonly string[] }, token: boolean) =>
    `[${[...(token ? ['b', 't'] : []), ...decl.axes].join(', ')}]`;
  const missing: string[] = [];
  for (const [decls, token] of [[p.inputs, true], [p.params, false]] as const) {
    for (const decl of decls) {
      const shape = shapes[decl.name];
      const kind = token ? 'input' : 'parameter';
      if (!shape) {
        missing.push(`${kind} '${decl.name}' ${describe(decl, token)}`);
        continue;
      }
      const want = (token ? 2 : 0) + decl.axes.length;
      if (shape.length !== want) {
        throw new ShapeError(`${kind} '${decl.name}' must have ${want} dimensions ${describe(decl, token)}, got [${shape.join(', ')}]`);
      }
      const dims: [string, number][] = [];
      if (token) {
        if (b === undefined) b = shape[0];
        if (t === undefined) t = shape[1];
        if (shape[0] !== b || shape[1] !== t) {
          throw new ShapeError(`input '${decl.name}' has [b, t] = [${shape[0]}, ${shape[1]}] but the other inputs have [${b}, ${t}]`);
        }
      }
      decl.axes.forEach((a, k) => dims.push([a, shape[(token ? 2 : 0) + k]]));
      for (const [a, n] of dims) {
        const def = p.axes[a];
        const known = sizes[a] ?? (def?.kind === 'size' ? def.value : undefined);
        if (known !== undefined && known !== n) {
          const from = origin[a] ? `'${origin[a]}'` : def?.kind === 'size' ? `size ${a} = ${def.value}` : 'the configuration';
          throw new ShapeError(`${kind} '${decl.name}' has axis ${a} = ${n}, but ${from} fixes ${a} = ${known} (expected ${describe(decl, token)})`);
        }
        if (!(n >= 1)) throw new ShapeError(`${kind} '${decl.name}' has an empty axis ${a}`);
        sizes[a] = n;
        origin[a] ??= decl.name;
      }
    }
  }
  if (missing.length) throw new ShapeError(`missing tensor${missing.length > 1 ? 's' : ''}: ${missing.join('; ')}`);
  for (const a of Object.keys(p.axes)) axisSize(p.axes, sizes, a);
  for (const n of p.nodes) {
    if (n.op === 'rope' && sizes[n.axis] % 2 !== 0) throw new ShapeError(`rope(…) rotates pairs (f, f + ${n.axis}/2): axis ${n.axis} needs an even size, got ${sizes[n.axis]}`);
  }
  if (b === undefined || t === undefined || b < 1 || t < 1) throw new ShapeError('inputs must have b ≥ 1 and t ≥ 1');
  return { b, t, sizes };
}

export function shapeOf(bound: Bound, axes: readonly string[]): number[] {
  return axes.map((a) => bound.sizes[a]);
}
