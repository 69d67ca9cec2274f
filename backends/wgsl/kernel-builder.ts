// A compute kernel as data. Its storage bindings and workgroup arrays are records declared once: the kernel's
// binding list, the WGSL declarations and the workgroup memory it needs (what the scheduler keeps under the
// adapter's limit) all come from those records. Its body is a Block (wgsl-block.ts), which chooses local names;
// module-level names (bindings, arrays) are chosen here, in one scope, so no local can shadow them.
import { wgslName, type Kernel } from './plan.ts';
import { Block, Scope } from './wgsl-block.ts';

export interface Binding {
  readonly buffer: string; // the plan's buffer name ('in:q', 'state:S0', …)
  readonly name: string; // its WGSL identifier
  readonly write: boolean;
  /** Bound even when the body never reads it (an output, or a buffer the launch sequence expects). */
  readonly always: boolean;
}

export interface WorkgroupArray {
  readonly name: string;
  readonly type: 'f32' | 'i32' | 'u32' | 'vec4<f32>';
  readonly length: number;
  readonly note?: string;
}

/** The entry point's builtins, by the name the body reads them as. */
const BUILTINS = {
  wid: '@builtin(workgroup_id) wid: vec3u',
  lid: '@builtin(local_invocation_index) lid: u32',
  gid: '@builtin(global_invocation_id) gid: vec3u',
  nwg: '@builtin(num_workgroups) nwg: vec3u',
  /** The invocation's lane in its subgroup: a kernel reading it enables subgroups (build). */
  lane: '@builtin(subgroup_invocation_id) lane: u32',
} as const;
export type Builtin = keyof typeof BUILTINS;

/** The uniform every kernel reads at binding 0; pos0 is the absolute position of the first token (decoding). */
const DIMS = ['struct Dims { b: u32, t: u32, pos0: u32, pad: u32 }', bindingDecl(0, 'dims', 'uniform', 'Dims')];

/** One `@group(0) @binding(index)` declaration; `type` is the struct of a uniform or the storage array's type. */
export function bindingDecl(index: number, name: string, access: 'uniform' | 'read' | 'read_write', type: string): string {
  return `@group(0) @binding(${index}) var<${access === 'uniform' ? 'uniform' : `storage, ${access}`}> ${name}: ${type};`;
}

export class KernelBuilder {
  private readonly module = new Scope(null);
  private readonly bindings: Binding[] = [];
  private readonly used = new Set<Binding>();
  private readonly arrays: WorkgroupArray[] = [];
  private readonly shared = new Map<string, { name: string; type: 'f32'; length: number; note: string }>();
  /** The entry point's body: builtins and `dims` are in scope. */
  readonly body: Block;

  constructor(
    readonly workgroupSize: number,
    private readonly builtins: readonly Builtin[],
  ) {
    for (const n of ['Dims', 'dims', 'WG', 'main']) this.module.declare(n);
    const fn = new Scope(this.module);
    for (const b of builtins) fn.declare(b);
    this.body = Block.top(fn);
  }

  /** Declares a storage binding of `buffer` (named after it unless `name` is given); the kernel binds it once used. */
  storage(buffer: string, write: boolean, opts: { name?: string; always?: boolean } = {}): Binding {
    const b: Binding = { buffer, write, always: opts.always ?? false, name: this.module.fresh(opts.name ?? wgslName(buffer)) };
    this.bindings.push(b);
    return b;
  }

  /** The WGSL name of `b`, which the kernel then binds. */
  use(b: Binding): string {
    this.used.add(b);
    return b.name;
  }

  /** Declares `var<workgroup> NAME: array<type, length>` with NAME fresh from `stem`. */
  workgroup(stem: string, length: number, note?: string, type: WorkgroupArray['type'] = 'f32'): WorkgroupArray {
    const a: WorkgroupArray = { name: this.module.fresh(stem), type, length, note };
    this.arrays.push(a);
    return a;
  }

  /**
   * A workgroup array that parts of the kernel share because they never use it at the same time (sections that
   * run in turn, with a barrier between them): the array of `slot`, declared by its first user under a name fresh
   * from `stem`, grown to the longest length any user asks for; each user's note is kept in its comment.
   */
  sharedWorkgroup(slot: string, stem: string, length: number, note: string): WorkgroupArray {
    let a = this.shared.get(slot);
    if (!a) {
      a = { name: this.module.fresh(stem), type: 'f32', length, note };
      this.shared.set(slot, a);
      this.arrays.push(a);
    } else {
      a.length = Math.max(a.length, length);
      a.note = `${a.note}; ${note}`;
    }
    return a;
  }

  /** Workgroup memory of the declared arrays, in 4-byte elements. */
  workgroupFloats(): number {
    return this.arrays.reduce((n, a) => n + a.length * (a.type === 'vec4<f32>' ? 4 : 1), 0);
  }

  /** The bindings the kernel binds, in declaration order. */
  boundBindings(): Binding[] {
    return this.bindings.filter((b) => b.always || this.used.has(b));
  }

  /** The module: header comment, Dims, bindings, WG, workgroup arrays, then the entry point around the body. */
  build(o: { label: string; comment: readonly string[]; workgroups: Kernel['workgroups']; launch?: Kernel['launch'] }): Kernel {
    const bound = this.boundBindings();
    const code = [
      // An enable directive must precede every declaration; the subgroup builtins and functions need this one.
      ...(this.builtins.includes('lane') ? ['enable subgroups;'] : []),
      ...o.comment.map((c) => `// ${c}`),
      ...DIMS,
      ...bound.map((b, k) => bindingDecl(k + 1, b.name, b.write ? 'read_write' : 'read', 'array<f32>')),
      `const WG = ${this.workgroupSize}u;`,
      ...this.arrays.map((a) => `var<workgroup> ${a.name}: array<${a.type}, ${a.length}>;${a.note ? ` // ${a.note}` : ''}`),
      ...this.module.declarations(),
      '',
      `@compute @workgroup_size(${this.workgroupSize})`,
      `fn main(${this.builtins.map((b) => BUILTINS[b]).join(', ')}) {`,
      ...this.body.render(1),
      '}',
      '',
    ].join('\n');
    return {
      label: o.label,
      code,
      bindings: bound.map((b) => ({ buffer: b.buffer, write: b.write })),
      workgroups: o.workgroups,
      ...(o.launch ? { launch: o.launch } : {}),
    };
  }
}

/** `let flat = …`: the flat invocation index of a `grid` launch (plan.ts), in a body with gid and nwg. */
export function flatIndex(b: Block): string {
  return b.let('flat', 'gid.x + gid.y * nwg.x * WG');
}

/**
 * The prologue of a `grid` launch with one invocation per element of a [b, t, …axes] tensor: the flat index
 * (invocations past the end return), the position under the fixed name `pos` (which resolvers read), the
 * batch `b`, and the element's index over `axes`. `at`: the flat index already computed (eachGridElement).
 */
export function tokenElement(b: Block, axes: readonly string[], sizes: Readonly<Record<string, number>>, pos: string, at?: string): { flat: string; idx: Record<string, string> } {
  const per = axes.reduce((n, a) => n * sizes[a], 1);
  const flat = at ?? flatIndex(b);
  b.line(`if (${flat} >= dims.b * dims.t * ${per}u) { return; }`);
  const e = b.let('e_flat', `${flat} % ${per}u`);
  b.define(pos, `(${flat} / ${per}u) % dims.t`);
  b.define('b', `${flat} / (${per}u * dims.t)`);
  return { flat, idx: b.split(axes, sizes, e, 'ix') };
}

/**
 * Elements an invocation of an elementwise `grid` launch takes (eachGridElement), and invocations a workgroup. One
 * element an invocation in workgroups of 64 (b·t·1024 / 64 = 262,144 workgroups at b 4, t 4096, h 16, d 64) ran
 * at the rate the H200 starts workgroups, not at its bandwidth: a copy of 67 MB took 0.166 ms (0.8 TB/s).
 */
export const GRID_ELEMENTS = 4;
export const GRID_WG = 256;

/**
 * A `grid` launch whose invocations take `n` elements each (plan.ts launch size WG·n): `body` once per element,
 * flat index ((workgroup · n + r) · WG + lid), so each round's loads are a workgroup's WG neighbouring elements. The
 * body may `return` past the end: later rounds are further on. Needs the wid, lid and nwg builtins.
 */
export function eachGridElement(b: Block, n: number, body: (l: Block, flat: string) => void): void {
  b.for('r', '0u', (r) => `${r} < ${n}u`, (l, r) => body(l, l.let('flat', `((wid.x + wid.y * nwg.x) * ${n}u + ${r}) * WG + lid`)));
}
