// Staging helpers the softmax prefill kernels share (softmax-chunked.ts, softmax-tiled.ts): a block of rows' query or
// key features, and the value's columns, each element computed from the program's inputs by ExprGen at its position.
import { offset, type Index } from './expr.ts';
import type { WorkgroupArray } from './kernel-builder.ts';
import { featureOffsets, type SoftmaxAnalysis, type SoftmaxFeature } from './softmax-analysis.ts';
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
 * The value's columns for rows r < n of a block at `first`; when `zeroed` is given, rows n … C−1 of it are set to
 * 0 first (padding a short last block, so that 0·value stays 0).
 */
export function valueRows(b: Block, a: SoftmaxAnalysis, head: Index, first: string, n: string, emit: (at: Block, col: string, idx: Index, pos: string, row: string) => void, zeroed?: WorkgroupArray): void {
  b.strided('x', `${a.NR}u * ${zeroed ? `${zeroed.length / a.NR}u` : n}`, (c, x) => {
    const r = c.let('r', `${x} / ${a.NR}u`);
    const col = c.let('col', `${x} % ${a.NR}u`);
    const fill = (w: Block) => {
      const pos = w.let('tp', `${first} + ${r}`);
      const idx = { ...head, ...w.split(a.rest, a.sizes, col, 'vc') };
      emit(w, col, idx, pos, r);
    };
    if (!zeroed) return fill(c);
    c.ifChain([[`${r} < ${n}`, fill], [null, (w) => w.line(`${zeroed.name}[${x}] = 0.0;`)]]);
  });
}
