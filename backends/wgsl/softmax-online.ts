// The online softmax one workgroup runs for one query (a decode step's token, a tree node) over a stream of keys:
// a running max m, the sum l = Σ exp(s_j − m) and acc[col] = Σ exp(s_j − m) v_j[col] in workgroup memory, folded
// tile by tile (WG keys at once: a max and a sum reduction) or key by key (a tree path's own nodes), then
// o[col] = acc[col] / l. Every exp sees s − m ≤ 0, so logits of any size stay finite in float32. Every invocation
// holds the same m and l (they come from the reductions), so they live in registers.
import type { KernelBuilder, WorkgroupArray } from './kernel-builder.ts';
import type { Block } from './wgsl-block.ts';

/** Below any logit and still finite: exp(NO_LOGIT − m) is 0, and NO_LOGIT − m never overflows. */
export const NO_LOGIT = '-3.0e38';

export interface OnlineSoftmax {
  readonly WG: number;
  readonly NR: number;
  /** The tile's probabilities [WG]. */
  readonly sh: WorkgroupArray;
  /** Reduction scratch [WG]. */
  readonly red: WorkgroupArray;
  /** acc[col] [NR]. */
  readonly acc: WorkgroupArray;
  /** The running max and sum: register names, identical in every invocation. */
  m: string;
  l: string;
}

export function declareOnline(kb: KernelBuilder, WG: number, NR: number): OnlineSoftmax {
  if ((WG & (WG - 1)) !== 0) throw new Error(`internal: the online softmax reduces over a power-of-two workgroup, got ${WG}`);
  return { WG, NR, sh: kb.workgroup('sh', WG, 'a tile\'s exp(s − m)'), red: kb.workgroup('red', WG, 'reductions'), acc: kb.workgroup('acc', NR, 'Σ exp(s − m) v per column'), m: '', l: '' };
}

/** m = NO_LOGIT, l = 0, acc = 0 (the caller's next barrier publishes acc). */
export function emitOnlineStart(b: Block, o: OnlineSoftmax): void {
  o.m = b.var('m', NO_LOGIT);
  o.l = b.var('l', '0.0');
  b.strided('col', `${o.NR}u`, (c, col) => c.line(`${o.acc.name}[${col}] = 0.0;`));
}

function reduce(b: Block, o: OnlineSoftmax, op: (x: string, y: string) => string): void {
  b.for('st', `${o.WG / 2}u`, (st) => `${st} > 0u`, (l, st) => {
    l.line(`if (lid < ${st}) { ${o.red.name}[lid] = ${op(`${o.red.name}[lid]`, `${o.red.name}[lid + ${st}]`)}; }`);
    l.line('workgroupBarrier();');
  }, { step: (st) => `${st} = ${st} >> 1u` });
}

/**
 * Folds keys 0 … n−1 (n a uniform u32 expression) in tiles of WG: invocation lid evaluates the logit of key j0 + lid
 * (`logit` emits it into a block and returns its name), then every column reads the tile's values (`value(j, col)`).
 */
export function emitOnlineTiles(b: Block, o: OnlineSoftmax, n: string, logit: (at: Block, j: string) => string, value: (j: string, col: string) => string): void {
  b.for('j0', '0u', (j0) => `${j0} < ${n}`, (t, j0) => {
    const j = t.let('j', `${j0} + lid`);
    const sc = t.var('sc', NO_LOGIT);
    t.block(`if (${j} < ${n})`, (k) => k.line(`${sc} = ${logit(k, j)};`));
    t.line(`${o.red.name}[lid] = ${sc};`);
    t.line('workgroupBarrier();');
    reduce(t, o, (x, y) => `max(${x}, ${y})`);
    const mt = t.let('mt', `max(${o.m}, ${o.red.name}[0])`);
    const scale = t.let('scale', `exp(${o.m} - ${mt})`);
    const pj = t.let('pj', `exp(${sc} - ${mt})`);
    t.line(`${o.sh.name}[lid] = ${pj};`);
    t.line('workgroupBarrier();');
    t.line(`${o.red.name}[lid] = ${pj};`);
    t.line('workgroupBarrier();');
    reduce(t, o, (x, y) => `${x} + ${y}`);
    t.line(`${o.l} = ${o.l} * ${scale} + ${o.red.name}[0];`);
    t.line(`${o.m} = ${mt};`);
    const cnt = t.let('cnt', `min(${o.WG}u, ${n} - ${j0})`);
    t.strided('col', `${o.NR}u`, (c, col) => {
      const a = c.var('a', `${o.acc.name}[${col}] * ${scale}`);
      c.for('c', '0u', (cc) => `${cc} < ${cnt}`, (r, cc) => r.line(`${a} = ${a} + ${o.sh.name}[${cc}] * ${value(`${j0} + ${cc}`, col)};`));
      c.line(`${o.acc.name}[${col}] = ${a};`);
    });
    t.line('workgroupBarrier();');
  }, { step: (j0) => `${j0} += ${o.WG}u` });
}

/** Folds one key whose logit every invocation computes alike (`sc`, a name) and whose values `value(col)` reads. */
export function emitOnlineOne(b: Block, o: OnlineSoftmax, sc: string, value: (col: string) => string): void {
  const mt = b.let('mt', `max(${o.m}, ${sc})`);
  const scale = b.let('scale', `exp(${o.m} - ${mt})`);
  const pj = b.let('pj', `exp(${sc} - ${mt})`);
  b.strided('col', `${o.NR}u`, (c, col) => c.line(`${o.acc.name}[${col}] = ${o.acc.name}[${col}] * ${scale} + ${pj} * ${value(col)};`));
  b.line(`${o.l} = ${o.l} * ${scale} + ${pj};`);
  b.line(`${o.m} = ${mt};`);
}

/** o[col] = acc[col] / l, stored by `store(col, value)` (after the caller's barrier). */
export function emitOnlineOutput(b: Block, o: OnlineSoftmax, store: (at: Block, col: string, value: string) => void): void {
  b.strided('col', `${o.NR}u`, (c, col) => store(c, col, `${o.acc.name}[${col}] / ${o.l}`));
}
