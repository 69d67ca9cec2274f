// Staging helpers the softmax prefill kernels share (softmax-chunked.ts, softmax-tiled.ts): a block of rows' query or
// key features, and the value's columns, each element computed from the program's inputs by ExprGen at its position.
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import { cacheIndex, featureOffsets, keyCache, VALUE_CACHE, type SoftmaxAnalysis, type SoftmaxFeature } from './softmax-analysis.ts';
import type { cacheBindings } from './softmax-decode.ts';
import type { Block } from './wgsl-block.ts';

export type RowEmit = (at: Block, f: SoftmaxFeature, slot: string, idx: Index, pos: string) => void;

/** Per feature, its elements for rows r < n of a block starting at `first`: emit(…, slot r·width + offset + x, index, position). */
export function stageRows(b: Block, a: SoftmaxAnalysis, fs: readonly SoftmaxFeature[], head: Index, first: string, n: string, width: number, emit: RowEmit): void {
  const offs = featureOffsets(fs);
  for (const f of fs) {
    b.strided('x', `${f.W}u * ${n}`, (c, x) => {
      const r = c.let('r', `${x} / ${f.W}u`);
      const e = c.let('e', `${x} % ${f.W}u`);
      const pos = c.let('tp', `${first} + ${r}`);
      const idx = { ...head, ...c.split(f.axes, a.sizes, e, `f${f.id}`) };
      emit(c, f, `${r} * ${width}u + ${offs.get(f.id)}u + ${e}`, idx, pos);
    });
  }
}

/**
 * The value's columns for rows r < n of a block at `first`, element x = r · NR + column; when `zeroed` is given, its
 * rows n … rows − 1 are set to 0 instead (padding a short last block, so that 0·value stays 0).
 */
export function valueRows(
  b: Block,
  a: SoftmaxAnalysis,
  head: Index,
  first: string,
  n: string,
  emit: (at: Block, col: string, idx: Index, pos: string, row: string, x: string) => void,
  zeroed?: { readonly rows: number; readonly zero: (at: Block, x: string) => void },
): void {
  b.strided('x', `${a.NR}u * ${zeroed ? `${zeroed.rows}u` : n}`, (c, x) => {
    const r = c.let('r', `${x} / ${a.NR}u`);
    const col = c.let('col', `${x} % ${a.NR}u`);
    const fill = (w: Block) => {
      const pos = w.let('tp', `${first} + ${r}`);
      const idx = { ...head, ...w.split(a.rest, a.sizes, col, 'vc') };
      emit(w, col, idx, pos, r, x);
    };
    if (!zeroed) return fill(c);
    c.ifChain([[`${r} < ${n}`, fill], [null, (w) => zeroed.zero(w, x)]]);
  });
}

/** Both prefill kernels' export of their own rows q0 … q0 + nq − 1 into the key/value cache (softmax-analysis.ts). */
export function writeCacheRows(b: Block, a: SoftmaxAnalysis, head: Index, read: Resolver, caches: ReturnType<typeof cacheBindings>): void {
  const { p, sizes } = a;
  stageRows(b, a, a.key, head, 'q0', 'nq', a.WK, (at, f, _slot, idx, pos) =>
    at.line(`${caches.use(keyCache(f.id))}[${cacheIndex(a, f.W, pos, offset(f.axes, sizes, idx))}] = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(at, f.id, idx, pos)};`),
  );
  valueRows(b, a, head, 'q0', 'nq', (at, col, idx, pos) => at.line(`${caches.use(VALUE_CACHE)}[${cacheIndex(a, a.NR, pos, col)}] = ${new ExprGen(p, sizes, read, { i: pos, j: pos }).value(at, a.term.value, idx, pos)};`));
}
