// The per-token reductions under a decode step's feature maps (llama's L2 norms over d, hedgehog's softmax, a
// projection's matmul), staged once per workgroup in workgroup memory, and the operands they reduce, one thread
// per element. Without this every feature element recomputes the reduction it reads: llama's
// φ(q)_x = rope(q)_x / ‖rope(q)‖ walked all d elements of rope(q) for each of its d features (d² rotations per
// head per token, per workgroup); with the reduction alone staged, one thread would still rotate all d.
import { operands, type Id, type Program } from '../../src/ir/types.ts';
import { count, type Sizes } from './common.ts';
import { ExprGen, offset, type Index, type Resolver } from './expr.ts';
import type { KernelBuilder } from './kernel-builder.ts';
import { rowAxes, type Layout } from './layout.ts';
import type { Block } from './wgsl-block.ts';

const REDUCING = new Set(['sum', 'norm', 'matmul', 'softmax']);

/**
 * Reductions at this token (token, query or key side) under `roots` and their computed operands (an input is read
 * as it is), each after the nodes it reads.
 */
export function tokenReductions(p: Program, roots: readonly Id[]): Id[] {
  const seen = new Set<Id>();
  const order: Id[] = [];
  const visit = (id: Id) => {
    if (seen.has(id)) return;
    seen.add(id);
    const n = p.nodes[id];
    if (n.type.side === 'pair' || n.type.side === 'const' || n.type.side === 'param') return;
    for (const o of operands(n)) visit(o);
    if (!REDUCING.has(n.op)) return;
    for (const o of operands(n)) {
      const side = p.nodes[o].type.side;
      if (p.nodes[o].op !== 'input' && (side === 'token' || side === 'query' || side === 'key') && !order.includes(o)) order.push(o);
    }
    order.push(id);
  };
  roots.forEach(visit);
  return order;
}

/**
 * Emits into `step` the staging of every reduction under `roots` at position `pos` and returns `read` extended to
 * read them from there at `pos`. Nodes are staged in levels (a node after every staged node it reads), threads
 * strided over the elements of the nodes of a level in turn, one barrier per level: llama's two rotations, then
 * its two norms.
 */
export function stageReductions(p: Program, sizes: Sizes, L: Layout, kb: KernelBuilder, step: Block, head: Index, read: Resolver, roots: readonly Id[]): Resolver {
  const order = tokenReductions(p, roots);
  const level = stagingLevels(p, order);
  const staged = new Map<Id, { name: string; axes: string[] }>();
  const resolver: Resolver = (n, idx, where, at) => {
    const s = staged.get(n.id);
    if (s && where === 'pos') return `${s.name}[${offset(s.axes, sizes, idx)}]`;
    return read(n, idx, where, at);
  };
  const levels = Math.max(0, ...level.values());
  for (let k = 1; k <= levels; k++) {
    let first = 0; // the level's nodes start on successive threads: llama's two norms run on two threads
    const now = order.filter((id) => level.get(id) === k).map((id) => {
      const axes = rowAxes(p, L, id);
      const n = count(axes, sizes);
      const arr = kb.workgroup(`red${id}`, n, `%${id} ${p.nodes[id].op} at this token`);
      const shift = (kb.workgroupSize - (first % kb.workgroupSize)) % kb.workgroupSize;
      first += n;
      step.for('x', shift ? `(lid + ${shift}u) % WG` : 'lid', (x) => `${x} < ${n}u`, (b, x) => {
        const idx = b.split(axes, sizes, x, `n${id}`);
        const v = new ExprGen(p, sizes, resolver, { i: 'pos', j: 'pos' }).value(b, id, { ...head, ...idx }, 'pos');
        b.line(`${arr.name}[${x}] = ${v};`);
      }, { step: (x) => `${x} += WG` });
      return [id, { name: arr.name, axes }] as const;
    });
    step.line('workgroupBarrier();');
    for (const [id, s] of now) staged.set(id, s);
  }
  return resolver;
}

/** Per staged node: 1 + the highest level among the staged nodes it reads (directly or through others). */
function stagingLevels(p: Program, order: readonly Id[]): Map<Id, number> {
  const isStaged = new Set(order);
  const highest = new Map<Id, number>(); // the highest level at or under a node, 0 for none
  const level = new Map<Id, number>();
  const under = (id: Id): number => {
    const hit = highest.get(id);
    if (hit !== undefined) return hit;
    const below = Math.max(0, ...operands(p.nodes[id]).map(under));
    const h = isStaged.has(id) ? below + 1 : below;
    if (isStaged.has(id)) level.set(id, h);
    highest.set(id, h);
    return h;
  };
  order.forEach(under);
  return level;
}
