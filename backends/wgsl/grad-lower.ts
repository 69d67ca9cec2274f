// GradProgram (src/ir/grad.ts) → GradPlan (grad/plan.ts): the kernels that run a variant's gradient program.
//
// Unfused, every stage is its own launch: each term stage one chunk kernel per value it reads (the parallel form
// for one the chunk kernel cannot run: a noncausal term), each map, reduce, pairs and params stage one kernel. Fused:
//   (a) a normalised item's recomputed numerator n and denominator z are one chunk section (partial mode);
//   (b) term stages that run in the same time direction over the same padded length, where neither needs what
//       the other writes, are sections of one kernel (reverse-time dv, dψ and the convolution's dv in one pass);
//   (c) map stages that write no gradient (the cotangents dN, dZ and the gates) are computed by the kernels that
//       read them, in their prologue, instead of being stored.
// Either way reversal, gate shifts and padding are index transforms in the readers (grad/reader.ts), sums over
// tokens are deterministic workgroup reductions (grad/reductions.ts), and the order of launches follows the
// stages' dependencies.
import { runPasses } from '../../passes/pipeline.ts';
import type { GradProgram, Stage, StageOutput } from '../../src/ir/grad.ts';
import type { Program } from '../../src/ir/types.ts';
import type { ChunkSchedule } from './chunked/analysis.ts';
import { keptBuffer, normalisedItems } from './lower.ts';
import type { Sizes } from './common.ts';
import { mapKernel, paramsKernel } from './grad/elementwise.ts';
import { bufferName, layoutEnv, storedReads, storedSlot, type Env } from './grad/env.ts';
import type { GradKernel, GradPlan } from './grad/plan.ts';
import { pairsKernel, reduceKernel } from './grad/reductions.ts';
import { naiveTermKernel, recomputeGroups, sharedHead, stageGroups, termKernel, termKernelFloats, type TermGroup } from './grad/term-kernels.ts';

export interface GradLowerOptions {
  readonly fuse: boolean;
  /** 'parallel': every term stage in the parallel form (the quadratic reference on the GPU); default chunked. */
  readonly form?: 'chunked' | 'parallel';
  /** The adapter's storage buffers per kernel (maxStorageBuffersPerShaderStage; default WebGPU's 8): fusion stays under it. */
  readonly storageBuffers?: number;
  /** Chunk (raised to fit the stages' group sizes), value columns per workgroup at most, threads. */
  readonly schedule: ChunkSchedule;
  /** The adapter's workgroup memory in f32s (maxComputeWorkgroupStorageSize / 4): fusion and chunks stay under it. */
  readonly workgroupFloats: number;
  /** Add parameter gradients into their buffers instead of writing them (a trainer's gradient accumulation). */
  readonly accumulate?: boolean;
  /**
   * The forward kept every normalised item's n and z (lower.ts, keepNormalisers): the plan reads them from the
   * buffers keptBuffer names instead of recomputing them (fla recomputes; storing costs their memory).
   */
  readonly stored?: boolean;
}

/** A launch to be: term groups run as chunk sections, or one other stage. */
type Unit =
  | { readonly kind: 'term'; readonly groups: readonly TermGroup[] }
  | { readonly kind: 'naive'; readonly group: TermGroup }
  | { readonly kind: 'map'; readonly stage: Extract<Stage, { kind: 'map' }>; readonly outputs: readonly StageOutput[] }
  | { readonly kind: 'other'; readonly stage: Extract<Stage, { kind: 'reduce' | 'pairs' | 'params' }> };

interface Node {
  units: Unit[];
  readonly first: number; // the earliest stage it holds (ties in the launch order)
  reads: Set<string>; // stored tensors
  writes: Set<string>;
}

export function lowerGrad(gp: GradProgram, sizes: Sizes, opts: GradLowerOptions): GradPlan {
  const passed = new Map<string, Program>(gp.stages.flatMap((st) => (st.kind === 'term' ? [[st.name, runPasses(st.program)] as const] : [])));
  const virtual = new Set(opts.fuse ? gp.stages.flatMap((st) => (st.kind === 'map' ? st.outputs.map((o) => o.tensor).filter((t) => !gp.gradients.includes(t)) : [])) : []);
  const kept = new Map(opts.stored ? normalisedItems(runPasses(gp.forward)).flatMap(({ k }) => [[`n.${k}`, keptBuffer('n', k)], [`z.${k}`, keptBuffer('z', k)]] as const) : []);
  if (opts.stored) {
    for (const { k, denAxes } of normalisedItems(runPasses(gp.forward))) {
      const z = gp.stages.find((st) => st.kind === 'term' && st.writes === `z.${k}`);
      if (!z || z.kind !== 'term' || z.program.outAxes.join() !== denAxes.join()) throw new Error(`internal: ${gp.forward.name}: the kept denominator of item ${k} [${denAxes}] is not what the gradient program recomputes`);
    }
  }
  const env = layoutEnv(gp, sizes, virtual, kept);
  const schedule = { ...opts.schedule, chunk: chunkFor([...passed.values()], opts.schedule.chunk) };
  const nodes = units(gp, env, passed, opts.fuse, opts.form === 'parallel', new Set(kept.keys())).map((u, k) => node(env, u, k));
  const storageBuffers = opts.storageBuffers ?? 8;
  if (opts.fuse) merge(nodes, env, schedule, opts.workgroupFloats, storageBuffers);
  for (const n of nodes) {
    const count = buffersOf(env, n);
    if (count > storageBuffers) throw new Error(`${gp.forward.name}: stage ${stageNames(n).join(' + ')} binds ${count} storage buffers, over the adapter's ${storageBuffers}`);
  }
  const kernels = order(nodes).flatMap((n, k) => emit(gp, env, n, k, schedule, opts));
  return {
    variant: gp.forward.name,
    fused: opts.fuse,
    kernels,
    buffers: env.buffers,
    gradients: gp.gradients.map((name) => ({ name, buffer: bufferName(gp, name) })),
    sizes,
    schedule,
    accumulate: opts.accumulate ?? false,
    stored: [...kept.keys()].filter((t) => t.startsWith('n.')).map((t) => Number(t.slice(2))),
  };
}

/** The stages as launches to be, in program order (every term stage in the parallel form when `parallel`). */
function units(gp: GradProgram, env: Env, passed: ReadonlyMap<string, Program>, fuse: boolean, parallel: boolean, kept: ReadonlySet<string>): Unit[] {
  const out: Unit[] = [];
  const byWrites = new Map(gp.stages.flatMap((st) => (st.kind === 'term' ? [[st.writes, st] as const] : [])));
  const done = new Set<string>();
  for (const st of gp.stages) {
    if (done.has(st.name) || (st.kind === 'term' && kept.has(st.writes))) continue;
    switch (st.kind) {
      case 'term': {
        const k = /^n\.(\d+)$/.exec(st.writes)?.[1];
        const z = k !== undefined ? byWrites.get(`z.${k}`) : undefined;
        const paired = fuse && z && !parallel ? recomputeGroups(st, z, passed.get(st.name)!, passed.get(z.name)!) : undefined;
        if (paired && z) {
          done.add(z.name);
          out.push({ kind: 'term', groups: paired });
          break;
        }
        const groups = stageGroups(st, passed.get(st.name)!, parallel);
        if (groups[0].parallel) out.push({ kind: 'naive', group: groups[0] });
        else if (fuse) out.push({ kind: 'term', groups });
        else out.push(...groups.map((g): Unit => ({ kind: 'term', groups: [g] })));
        break;
      }
      case 'map': {
        const stored = st.outputs.filter((o) => env.slots.get(o.tensor)?.kind === 'buffer');
        if (stored.length) out.push({ kind: 'map', stage: st, outputs: stored });
        break;
      }
      case 'reduce':
      case 'pairs':
      case 'params':
        out.push({ kind: 'other', stage: st });
        break;
    }
  }
  return out;
}

/** A launch to be with the stored tensors it reads and writes (by name: the intermediates share one buffer). */
function node(env: Env, u: Unit, first: number): Node {
  const toBuffers = (tensors: Iterable<string>) => storedReads(env, tensors);
  let reads: Set<string>;
  let writes: Set<string>;
  switch (u.kind) {
    case 'term':
      reads = toBuffers(u.groups.flatMap((g) => g.reads));
      writes = new Set(u.groups.flatMap((g) => g.writes));
      // a group that adds into a sum reads it
      for (const g of u.groups) if (g.out.accumulate) g.writes.forEach((w) => reads.add(w));
      break;
    case 'naive':
      reads = toBuffers(u.group.reads);
      writes = new Set(u.group.writes);
      break;
    case 'map':
      reads = toBuffers(Object.values(u.stage.bindings).map((b) => b.tensor));
      writes = new Set(u.outputs.map((o) => o.tensor));
      break;
    case 'other': {
      const st = u.stage;
      reads = toBuffers(Object.values(st.bindings).map((b) => b.tensor));
      writes = new Set(st.kind === 'pairs' ? [st.writes] : st.outputs.map((o) => o.tensor));
      break;
    }
  }
  return { units: [u], first, reads, writes };
}

/** Does `to` need, directly or through other nodes, what `from` writes? */
function needs(nodes: readonly Node[], to: Node, from: Node, seen = new Set<Node>()): boolean {
  if (seen.has(to)) return false;
  seen.add(to);
  return nodes.some((n) => n !== to && [...n.writes].some((w) => to.reads.has(w)) && (n === from || needs(nodes, n, from, seen)));
}

/** The storage buffers a node's kernel binds (the intermediates' arena once). */
function buffersOf(env: Env, n: Node): number {
  return new Set([...n.reads, ...n.writes].map((t) => storedSlot(env, t).buffer)).size;
}

function stageNames(n: Node): string[] {
  return n.units.flatMap((u) => (u.kind === 'term' ? u.groups.flatMap((g) => g.stages) : u.kind === 'naive' ? u.group.stages : [u.stage.name]));
}

/**
 * (b): term nodes of one class (time, padding, head axes) join while independent, within the adapter's storage
 * buffers and, with at least 8 value columns per workgroup, within its workgroup memory.
 */
function merge(nodes: Node[], env: Env, schedule: ChunkSchedule, limit: number, storageBuffers: number): void {
  const groups = (n: Node) => n.units.flatMap((u) => (u.kind === 'term' ? u.groups : []));
  const fits = (gs: TermGroup[]) => {
    if (sharedHead(gs, schedule.chunk) === null) return false;
    for (let cols = schedule.cols; ; cols >>= 1) {
      if (termKernelFloats({ env, groups: gs, schedule: { ...schedule, cols }, label: 'fit', barriers: true }) <= limit) return true;
      if (cols <= 8) return false;
    }
  };
  for (let i = 1; i < nodes.length; i++) {
    const a = nodes[i];
    if (a.units[0].kind !== 'term') continue;
    const ga = groups(a);
    for (let j = 0; j < i; j++) {
      const b = nodes[j];
      if (b.units[0].kind !== 'term') continue;
      const gb = groups(b);
      if (gb[0].time !== ga[0].time || gb[0].pad !== ga[0].pad) continue;
      const joint: Node = { units: [], first: 0, reads: new Set([...a.reads, ...b.reads]), writes: new Set([...a.writes, ...b.writes]) };
      if (needs(nodes, a, b) || needs(nodes, b, a) || buffersOf(env, joint) > storageBuffers || !fits([...gb, ...ga])) continue;
      b.units.push(...a.units);
      a.writes.forEach((w) => b.writes.add(w));
      a.reads.forEach((r) => b.reads.add(r));
      nodes.splice(i--, 1);
      break;
    }
  }
}

/** The nodes in an order that runs every writer before its readers (program order among the free ones). */
function order(nodes: readonly Node[]): Node[] {
  const left = [...nodes];
  const out: Node[] = [];
  while (left.length) {
    const ready = left.filter((n) => !left.some((m) => m !== n && [...m.writes].some((w) => n.reads.has(w))));
    if (!ready.length) throw new Error('internal: the gradient stages depend on each other in a cycle');
    const next = ready.reduce((x, y) => (y.first < x.first ? y : x));
    out.push(next);
    left.splice(left.indexOf(next), 1);
  }
  return out;
}

function emit(gp: GradProgram, env: Env, n: Node, k: number, schedule: ChunkSchedule, opts: GradLowerOptions): GradKernel[] {
  const label = (what: string) => `${gp.forward.name}.grad${k}.${what}`;
  const u = n.units[0];
  switch (u.kind) {
    case 'term': {
      const groups = n.units.flatMap((x) => (x.kind === 'term' ? x.groups : []));
      const name = [...new Set(groups.flatMap((g) => g.stages))].join('+');
      const req = { env, groups, schedule: fitSchedule(env, groups, schedule, opts.workgroupFloats, name), label: label(name), barriers: true };
      return [termKernel(req)];
    }
    case 'naive':
      return [naiveTermKernel(env, u.group, label(u.group.stages.join('+')))];
    case 'map':
      return [mapKernel(env, u.stage, u.outputs, label(u.stage.name))];
    case 'other':
      switch (u.stage.kind) {
        case 'reduce':
          return [reduceKernel(env, u.stage, label(u.stage.name))];
        case 'pairs':
          return [pairsKernel(env, u.stage, label(u.stage.name))];
        case 'params':
          return [paramsKernel(env, u.stage, opts.accumulate ?? false, label(u.stage.name))];
      }
  }
}

/** The schedule with fewer value columns, then a smaller chunk, until the kernel fits workgroup memory. */
function fitSchedule(env: Env, groups: readonly TermGroup[], s: ChunkSchedule, limit: number, what: string): ChunkSchedule {
  const programs = groups.map((g) => g.program);
  let cur = s;
  for (;;) {
    if (termKernelFloats({ env, groups, schedule: cur, label: 'fit', barriers: true }) <= limit) return cur;
    if (cur.cols > 1) cur = { ...cur, cols: Math.max(1, cur.cols >> 1) };
    else if (cur.chunk > 1 && chunkFor(programs, cur.chunk >> 1) < cur.chunk) cur = { ...cur, cols: s.cols, chunk: chunkFor(programs, cur.chunk >> 1) };
    else throw new Error(`${what}: even chunk ${cur.chunk} with one value column needs more workgroup memory than the adapter's ${limit * 4} bytes`);
  }
}

/** A chunk that divides or is a multiple of every past_groups size (and group of a prefix term) the stages use. */
function chunkFor(programs: readonly Program[], want: number): number {
  const sizes = new Set(programs.flatMap((p) => p.terms.flatMap((t) => t.mask.flatMap((m) => (m.kind === 'past_groups' || (m.kind === 'group' && t.form.kind === 'prefix') ? [m.size] : [])))));
  let c = Math.max(1, want);
  for (let guard = 0; guard < 8; guard++) {
    const bad = [...sizes].find((g) => c % g !== 0 && g % c !== 0);
    if (bad === undefined) return c;
    c = Math.ceil(c / bad) * bad;
  }
  throw new Error(`no chunk near ${want} suits the group sizes ${[...sizes].join(', ')}`);
}

export type { GradPlan, GradKernel } from './grad/plan.ts';
export { paddedLength } from './grad/plan.ts';
