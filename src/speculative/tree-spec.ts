// The `--tree SPEC` syntax: which token tree a draft source is asked to fill each speculative step.
//
//   [[0],[0,0],[1],[0,1]]   a static tree as a list of paths (Medusa's "choices"): each path lists candidate
//                           ranks from the root's children down — [0] is the draft's best child of the root,
//                           [0,1] the second-best child of that node. Every path's parent path must be in the
//                           list too; order does not matter; duplicates are an error.
//   chain:N                 a static chain of N draft nodes: [[0],[0,0],…] (N ≥ 1)
//   top:K                   dynamic: level by level, the K candidates with the highest cumulative draft
//                           probability (product along the path) among all children of the last level,
//                           until --max-nodes draft nodes are placed or the draft has nothing more (K ≥ 1)
//   best:K                  best-first over the whole tree: of every node's K best candidates, the one with the
//                           highest cumulative draft probability anywhere in the tree is placed next, until
//                           --max-nodes — the tree that maximises the expected accepted length when the
//                           probabilities are acceptance rates (the adaptive draft's). Asks the draft one node at
//                           a time, so it suits drafts that answer from a table; deterministic drafts only.
//
// Sizes count draft nodes; the root (the last chosen token) is verified too, so a tree of N draft nodes is
// a verification of N + 1 rows. Errors name the column of the offending character.

export type TreeShape =
  | {
      readonly kind: 'static';
      readonly spec: string;
      /** Paths sorted by length, then rank by rank: parents come before children. */
      readonly paths: readonly (readonly number[])[];
    }
  | { readonly kind: 'dynamic'; readonly spec: string; readonly width: number }
  | { readonly kind: 'best'; readonly spec: string; readonly width: number };

export class TreeSpecError extends Error {
  constructor(
    readonly spec: string,
    /** 1-based column of the offending character (spec.length + 1: at the end). */
    readonly column: number,
    readonly detail: string,
  ) {
    super(`--tree ${JSON.stringify(spec)}: column ${column}: ${detail}\n  ${spec}\n  ${' '.repeat(Math.max(0, column - 1))}^`);
    this.name = 'TreeSpecError';
  }
}

/** Draft nodes of a shape that fills completely (static), or the budget a dynamic one fills at most. */
export function shapeSize(shape: TreeShape, budget: number): number {
  return shape.kind === 'static' ? shape.paths.length : budget;
}

/** Deepest draft level a shape reaches (dynamic: unbounded, so the budget). */
export function shapeDepth(shape: TreeShape, budget: number): number {
  return shape.kind === 'static' ? Math.max(0, ...shape.paths.map((p) => p.length)) : budget;
}

/** Candidates per node a shape asks a draft for. */
export function candidatesPerNode(shape: TreeShape): number {
  return shape.kind === 'static' ? Math.max(...shape.paths.map((p) => p[p.length - 1])) + 1 : shape.width;
}

export function chainShape(n: number): TreeShape {
  if (!Number.isInteger(n) || n < 1) throw new Error(`chain shape needs n ≥ 1, got ${n}`);
  return { kind: 'static', spec: `chain:${n}`, paths: Array.from({ length: n }, (_, i) => new Array<number>(i + 1).fill(0)) };
}

/**
 * Medusa's sparse tree for M heads (M ≥ 1): the top three first guesses, two second guesses under the best, the best
 * chain below and one more guess under it (8 draft nodes at 3 heads). On the trained nano model it was accepted 3.0–3.1
 * tokens a step against chain:3's 2.6–2.7 (docs/speculative.md).
 */
export function medusaSparseTree(M: number): TreeShape {
  const paths: number[][] = [[0], [1], [2]];
  if (M >= 2) paths.push([0, 0], [0, 1], [1, 0]);
  for (let d = 3; d <= M; d++) paths.push(new Array<number>(d).fill(0));
  if (M >= 3) paths.push([0, 0, 1]);
  return parseTreeSpec(JSON.stringify(paths));
}

export function parseTreeSpec(spec: string): TreeShape {
  const s = spec.trim();
  const lead = spec.length - spec.trimStart().length; // columns refer to the spec as given
  if (s === '') throw new TreeSpecError(spec, 1, 'empty tree spec (give [[0],[0,0],…], chain:N, top:K or best:K)');
  const named = /^([a-z]+):(.*)$/.exec(s);
  if (named) {
    const [, kind, arg] = named;
    const argCol = lead + kind.length + 2;
    if (kind !== 'chain' && kind !== 'top' && kind !== 'best') throw new TreeSpecError(spec, lead + 1, `unknown tree kind '${kind}' (chain:N, top:K, best:K or a list of paths [[0],[0,0],…])`);
    if (!/^\d+$/.test(arg)) throw new TreeSpecError(spec, argCol, `${kind}: expects a positive integer, got '${arg}'`);
    const n = Number(arg);
    if (n < 1) throw new TreeSpecError(spec, argCol, `${kind}: must be at least 1, got ${n}`);
    return kind === 'chain' ? chainShape(n) : { kind: kind === 'top' ? 'dynamic' : 'best', spec: s, width: n };
  }
  return { kind: 'static', spec: s, paths: parsePaths(spec) };
}

/** [[r, …], …] with columns in errors; checks that every parent path is present and no path repeats. */
function parsePaths(spec: string): number[][] {
  let i = 0;
  const fail = (msg: string, at = i): never => {
    throw new TreeSpecError(spec, at + 1, msg);
  };
  const ws = () => {
    while (i < spec.length && /\s/.test(spec[i])) i++;
  };
  const found = () => (i < spec.length ? `'${spec[i]}'` : 'the end');
  /** After an element of a list: consumes ',' (false: more follow) or ']' (true: the list is closed). */
  const closes = (element: string): boolean => {
    ws();
    if (spec[i] === ',' || spec[i] === ']') return spec[i++] === ']';
    return fail(`expected ',' or ']' after ${element}, found ${found()}`);
  };
  const expect = (c: string, what: string) => {
    ws();
    if (spec[i] !== c) fail(`expected ${what}, found ${found()}`);
    i++;
  };
  const paths: { ranks: number[]; at: number }[] = [];
  expect('[', "'[' to open the list of paths");
  ws();
  if (spec[i] === ']') fail('the list of paths is empty (a tree needs at least one draft node)');
  for (;;) {
    ws();
    const at = i;
    expect('[', "'[' to open a path");
    const ranks: number[] = [];
    ws();
    if (spec[i] === ']') fail('empty path (the root is implied; a path names at least one draft node)');
    for (;;) {
      ws();
      const start = i;
      while (i < spec.length && /\d/.test(spec[i])) i++;
      if (i === start) fail(`expected a rank (a non-negative integer), found ${found()}`);
      ranks.push(Number(spec.slice(start, i)));
      if (closes('a rank')) break;
    }
    paths.push({ ranks, at });
    if (closes('a path')) break;
  }
  ws();
  if (i < spec.length) fail(`unexpected ${found()} after the list of paths`);

  const seen = new Map<string, number>();
  for (const p of paths) {
    const key = p.ranks.join(',');
    if (seen.has(key)) fail(`path [${key}] is listed twice (first at column ${seen.get(key)! + 1})`, p.at);
    seen.set(key, p.at);
  }
  for (const p of paths) {
    if (p.ranks.length > 1) {
      const parent = p.ranks.slice(0, -1).join(',');
      if (!seen.has(parent)) fail(`path [${p.ranks.join(',')}] needs its parent path [${parent}] in the list`, p.at);
    }
  }
  return paths
    .map((p) => p.ranks)
    .sort((a, b) => a.length - b.length || compareRanks(a, b));
}

function compareRanks(a: readonly number[], b: readonly number[]): number {
  for (let k = 0; k < Math.min(a.length, b.length); k++) if (a[k] !== b[k]) return a[k] - b[k];
  return a.length - b.length;
}
