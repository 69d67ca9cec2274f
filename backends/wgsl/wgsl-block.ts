// Generated WGSL statements as data. A Block holds statements and nested blocks, indents itself when rendered,
// and chooses the names of what is declared in it: a name is the stem asked for unless something visible from
// the block already has it, then stem_1, stem_2, … — so generators never paste prefixes onto names to keep
// them apart, and no two declarations that can see each other collide. Nothing renders until the kernel is
// complete, and nothing rewrites the text afterwards.

/** The names declared in one lexical scope of the generated code. */
export class Scope {
  private readonly names = new Set<string>();
  /** Module-scope declarations made from anywhere below the root scope (the kernel's module), by content. */
  private readonly moduleDecls = new Map<string, { name: string; text: string }>();
  constructor(readonly parent: Scope | null) {}

  /** The outermost scope: the module of the kernel this scope belongs to. */
  root(): Scope {
    let s: Scope = this;
    while (s.parent) s = s.parent;
    return s;
  }

  /**
   * A module-scope declaration (a table of constants, say), made once per kernel for equal `text`: `text` is given
   * the fresh name and returns the declaration. Rendered by KernelBuilder.build after the workgroup arrays.
   */
  moduleDeclaration(stem: string, key: string, text: (name: string) => string): string {
    const root = this.root();
    const hit = root.moduleDecls.get(key);
    if (hit) return hit.name;
    const name = root.fresh(stem);
    root.moduleDecls.set(key, { name, text: text(name) });
    return name;
  }

  /** The module-scope declarations made so far, in order. */
  declarations(): string[] {
    return [...this.root().moduleDecls.values()].map((d) => d.text);
  }

  /** Whether `name` is declared in this scope itself (not one around it). */
  declares(name: string): boolean {
    return this.names.has(name);
  }

  visible(name: string): boolean {
    for (let s: Scope | null = this; s; s = s.parent) if (s.names.has(name)) return true;
    return false;
  }

  /** Declares `name` here; it must not be visible yet (a fixed name such as a kernel-wide index). */
  declare(name: string): string {
    if (this.visible(name)) throw new Error(`internal: WGSL name '${name}' declared twice in one scope chain`);
    this.names.add(name);
    return name;
  }

  /** A name for a new declaration: `stem`, or `stem_k` for the first k that nothing visible has. */
  fresh(stem: string): string {
    let name = stem;
    for (let k = 1; this.visible(name); k++) name = `${stem}_${k}`;
    this.names.add(name);
    return name;
  }
}

/**
 * Some of the workgroup's invocations running a phase beside the others (a chunk kernel's outputs beside its state
 * update): `index`, an invocation's index within the team (lid − the team's first), and `size`, its invocations.
 */
export interface Team {
  readonly index: string;
  readonly size: number;
}

interface Statement {
  readonly code: string;
  readonly note?: string;
}

const text = (s: Statement) => (s.note === undefined ? s.code : s.code ? `${s.code} // ${s.note}` : `// ${s.note}`);

/** Rendered one-line when a nested block holds one statement and the line stays this short. */
const ONE_LINE = 110;

export class Block {
  private readonly items: (Statement | Block)[] = [];

  private constructor(
    readonly scope: Scope,
    private readonly head: string | null,
    private readonly tail: string | null,
  ) {}

  /** A block without braces of its own: a function body, or a fragment rendered on its own. */
  static top(scope: Scope): Block {
    return new Block(scope, null, null);
  }

  /** One statement (or a few that belong on one line), with an optional trailing comment. */
  line(code: string, note?: string): void {
    this.items.push({ code, note });
  }

  /** A comment line. */
  comment(text: string): void {
    this.items.push({ code: '', note: text });
  }

  fresh(stem: string): string {
    return this.scope.fresh(stem);
  }

  /** `let NAME = expr;` with NAME fresh from `stem`; returns NAME. */
  let(stem: string, expr: string, note?: string): string {
    const name = this.fresh(stem);
    this.line(`let ${name} = ${expr};`, note);
    return name;
  }

  /**
   * `let name = expr;` under exactly this name: the few kernel-wide values that code refers to by name (the batch
   * `b`, the head slice `s`, the chunk start `c0`, …). Throws if the name is already visible.
   */
  define(name: string, expr: string, note?: string): string {
    this.line(`let ${this.scope.declare(name)} = ${expr};`, note);
    return name;
  }

  /** `var NAME: type = init;` with NAME fresh from `stem`; returns NAME. */
  var(stem: string, init: string, type = 'f32'): string {
    const name = this.fresh(stem);
    this.line(`var ${name}: ${type} = ${init};`);
    return name;
  }

  /** `head { … }` (a bare `{ … }` when head is ''), the body in a scope of its own. */
  block(head: string, body: (b: Block) => void): void {
    const b = new Block(new Scope(this.scope), head ? `${head} {` : '{', '}');
    this.items.push(b);
    body(b);
  }

  /** `if (c₀) { … } else if (c₁) { … } … else { … }`: one arm per entry; a null condition is the final else. */
  ifChain(arms: readonly (readonly [string | null, (b: Block) => void])[]): void {
    arms.forEach(([cond, body], k) => {
      const head = `${k === 0 ? '' : '} else '}${cond === null ? '' : `if (${cond}) `}{`;
      const b = new Block(new Scope(this.scope), head, k === arms.length - 1 ? '}' : null);
      this.items.push(b);
      body(b);
    });
  }

  /**
   * `for (var i: type = from; test(i); step(i)) { … }`; the loop variable, fresh from `stem` (exactly `stem` when
   * `fixed`, like `define`), lives in the body's scope. `step` defaults to `i++`.
   */
  for(
    stem: string,
    from: string,
    test: (i: string) => string,
    body: (b: Block, i: string) => void,
    opts: { step?: (i: string) => string; type?: string; fixed?: boolean } = {},
  ): void {
    const scope = new Scope(this.scope);
    const i = opts.fixed ? scope.declare(stem) : scope.fresh(stem);
    const step = opts.step ? opts.step(i) : `${i}++`;
    const b = new Block(scope, `for (var ${i}: ${opts.type ?? 'u32'} = ${from}; ${test(i)}; ${step}) {`, '}');
    this.items.push(b);
    body(b, i);
  }

  /**
   * The workgroup-strided loop `for (var i = lid; i < n; i += WG)` over n work items; given a `team`, the team's
   * own: `for (var i = index; i < n; i += size)`, so that two teams share the items of two phases at once.
   */
  strided(stem: string, n: string, body: (b: Block, i: string) => void, team?: Team): void {
    if (!team) return this.for(stem, 'lid', (i) => `${i} < ${n}`, body, { step: (i) => `${i} += WG` });
    this.for(stem, team.index, (i) => `${i} < ${n}`, body, { step: (i) => `${i} += ${team.size}u` });
  }

  /**
   * A team's share of n work items as unrolled trips instead of a strided loop, so that each trip can name registers
   * of its own (held across a barrier, say): trip t takes item index + t·size, `let STEM_t` it, clamped to n − 1
   * where the trip can run past n — `guard` is then the condition that it does not (null where it never does).
   */
  trips(stem: string, n: number, team: Team): { x: string; guard: string | null }[] {
    return [...Array(Math.ceil(n / team.size)).keys()].map((t) => {
      const at = `${team.index} + ${t * team.size}u`;
      const full = (t + 1) * team.size <= n;
      return { x: this.let(`${stem}_${t}`, full ? at : `min(${at}, ${n - 1}u)`), guard: full ? null : `${at} < ${n}u` };
    });
  }

  /**
   * Splits the flat row-major index `flat` over `axes` into one u32 per axis (`let STEM_AXIS = (flat / stride) %
   * size;`, in the order of the axes) and returns the per-axis names.
   */
  split(axes: readonly string[], sizes: Readonly<Record<string, number>>, flat: string, stem: string): Record<string, string> {
    const strides: number[] = [];
    let stride = 1;
    for (let k = axes.length - 1; k >= 0; k--) {
      strides[k] = stride;
      stride *= sizes[axes[k]];
    }
    const idx: Record<string, string> = {};
    axes.forEach((a, k) => {
      idx[a] = this.let(`${stem}_${a}`, `(${flat} / ${strides[k]}u) % ${sizes[a]}u`);
    });
    return idx;
  }

  /** Lines of the statements, indented two spaces per level from `depth`; `compact` puts a one-statement block on one line. */
  render(depth = 0, compact = true): string[] {
    const pad = '  '.repeat(depth);
    const inner = this.head === null ? depth : depth + 1;
    const body = this.items.flatMap((it) => (it instanceof Block ? it.render(inner, compact) : [`${'  '.repeat(inner)}${text(it)}`]));
    if (this.head === null) return body;
    const only = this.items.length === 1 && !(this.items[0] instanceof Block) ? this.items[0] : null;
    if (compact && only && only.note === undefined && this.tail !== null && pad.length + this.head.length + only.code.length < ONE_LINE) {
      return [`${pad}${this.head} ${only.code} ${this.tail}`];
    }
    return [`${pad}${this.head}`, ...body, ...(this.tail === null ? [] : [`${pad}${this.tail}`])];
  }

  /** Statements and braces, one per line as if nothing were compacted: the size of a fragment. */
  lineCount(): number {
    return this.render(0, false).length;
  }
}
