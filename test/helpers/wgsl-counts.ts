// Static execution counts of a chunk kernel's WGSL, read from its text alone (independent of the generator's own
// data): how many times per chunk, summed over the workgroup's invocations, a statement inside the chunk loop
// runs. The counter follows the invocation-strided index: every invocation's `lid`, then the values an
// invocation-strided loop `for (x = lid; x < N; x += S)` gives it, filtered by guards on that index
// (`if ((x + K) < N)`); constant loops multiply by their trips, a loop over the chunk's rows (`j < n`) by C. Other
// `if`s are taken (an upper bound). A header the counter does not know is an error, never a guess.

/** Where a statement runs: the values of the current invocation-strided index, once each, times `mult`. */
interface Context {
  readonly index: string;
  readonly values: readonly number[];
  readonly mult: number;
}

const runs = (ctx: Context) => ctx.values.length * ctx.mult;

/** Per-chunk execution count of every line of the chunk loop's body (line index into code.split('\n')). */
export function chunkLineCounts(code: string, C: number, WG: number): Map<number, number> {
  const lines = code.split('\n');
  const start = lines.findIndex((l) => /^\s*for \(var c: u32 = /.test(l));
  if (start < 0) throw new Error('no chunk loop (for (var c: u32 = …)) in this kernel');
  const counts = new Map<number, number>();
  const stack: Context[] = [{ index: 'lid', values: [...Array(WG).keys()], mult: 1 }]; // every invocation runs the body
  for (let k = start + 1; k < lines.length && stack.length; k++) {
    const text = lines[k].replace(/\/\/.*$/, '').trim();
    if (/^\}/.test(text)) stack.pop();
    if (!stack.length) break; // the chunk loop's own closing brace
    const top = stack[stack.length - 1];
    const opens = text.endsWith('{');
    const balanced = !opens && text.includes('{');
    const ctx = opens || balanced ? enter(text.replace(/^\}\s*/, ''), top, C, WG) : top;
    counts.set(k, runs(balanced ? ctx : top));
    if (opens) stack.push(ctx);
  }
  return counts;
}

/** The context of a block's body, entered from `outer` through `header`. */
function enter(header: string, outer: Context, C: number, WG: number): Context {
  const guard = /^if \(\(?(\w+)(?: \+ (\d+)u)?\)? < (\d+)u\)/.exec(header);
  if (guard && guard[1] === outer.index) {
    const [K, N] = [Number(guard[2] ?? 0), Number(guard[3])];
    return { ...outer, values: outer.values.filter((v) => v + K < N) };
  }
  if (!header.startsWith('for')) {
    if (/^(\{|if \(|else)/.test(header)) return outer;
    throw new Error(`unknown block header: ${header}`);
  }
  const strided = /^for \(var (\w+): u32 = (\w+); \1 < (\d+)u; \1 \+= (WG|\d+u)\)/.exec(header);
  if (strided && strided[2] === outer.index) {
    const N = Number(strided[3]);
    const S = strided[4] === 'WG' ? WG : Number(strided[4].slice(0, -1));
    const values: number[] = [];
    for (const v0 of outer.values) for (let v = v0; v < N; v += S) values.push(v);
    return { index: strided[1], values, mult: outer.mult };
  }
  const counted = /^for \(var (\w+): [iu]32 = ([^;]+); \1 (<|<=) ([^;]+); \1(\+\+| \+= (\d+)u?)\)/.exec(header);
  if (!counted) throw new Error(`unknown loop header: ${header}`);
  const bound = (s: string, what: string): number => {
    if (s === 'n') return C; // the chunk's rows
    const lit = /^(-?\d+)u?$/.exec(s);
    if (lit) return Number(lit[1]);
    if (what === 'start' && /^\w+$/.test(s)) return 0; // a variable start (tj, …): at least 0, an upper bound on trips
    throw new Error(`unknown loop ${what}: ${s} in ${header}`);
  };
  const from = bound(counted[2].trim(), 'start');
  const to = bound(counted[4].trim(), 'end') + (counted[3] === '<=' ? 1 : 0);
  const step = counted[6] ? Number(counted[6]) : 1;
  return { ...outer, mult: outer.mult * Math.max(0, Math.ceil((to - from) / step)) };
}

/**
 * Per-chunk evaluations of IR node `id` in a kernel: its tagged statements (`// %id op`, what ExprGen emits for
 * each node it computes) weighted by their execution counts. A statement that only reads the node back from a
 * workgroup array (a staged value) is not an evaluation.
 */
export function nodeEvaluations(code: string, id: number, C: number, WG: number): number {
  const lines = code.split('\n');
  const staged = new Set([...code.matchAll(/var<workgroup> (\w+):/g)].map((m) => m[1]));
  const tag = new RegExp(`// %${id} `);
  let n = 0;
  for (const [k, count] of chunkLineCounts(code, C, WG)) {
    if (!tag.test(lines[k])) continue;
    if (readBack(lines[k], staged)) continue;
    n += count;
  }
  return n;
}

/** Per-chunk executions of the chunk loop's statements that match `pattern` (`/exp\(/`: its exponentials). */
export function matchingExecutions(code: string, pattern: RegExp, C: number, WG: number): number {
  const lines = code.split('\n');
  let n = 0;
  for (const [k, count] of chunkLineCounts(code, C, WG)) if (pattern.test(lines[k].replace(/\/\/.*$/, ''))) n += count;
  return n;
}

/** Whether a statement only reads a workgroup array: `let x = arr[…];` with nothing after the closing bracket. */
function readBack(line: string, staged: ReadonlySet<string>): boolean {
  const m = /^\s*let \w+ = (\w+)\[(.*)\];\s*\/\//.exec(line);
  if (!m || !staged.has(m[1])) return false;
  let depth = 1;
  for (const ch of m[2]) {
    depth += ch === '[' ? 1 : ch === ']' ? -1 : 0;
    if (depth === 0) return false; // the array's bracket closed before the end: more follows (arr[i] * …)
  }
  return true;
}
