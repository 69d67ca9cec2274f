// GradProgram (src/ir/grad.ts) → GradPlan (grad/plan.ts): the kernels that run a variant's gradient program.
//
// Unfused, every stage is its own launch: each term stage one chunk kernel per value it reads (the parallel form
// for one the chunk kernel cannot run: a noncausal term; by rows for softmax attention's quadratic causal terms,
// grad/quadratic-rows.ts, which also runs the lse stage), each map, reduce, pairs and params stage one kernel. Fused:
//   (a) a normalised item's recomputed numerator n and denominator z are one chunk section (partial mode);
//   (b) term stages that run in the same time direction, where neither needs what the other writes, are sections
//       of one kernel (reverse-time dv, dψ and the convolution's dv in one pass), padded as the most padded needs;
//   (c) map stages that write no gradient (the cotangents dN, dZ and the gates) are computed by the kernels that
//       read them, in their prologue, instead of being stored.
// Either way reversal, gate shifts and padding are index transforms in the readers (grad/reader.ts), sums over
// tokens are deterministic workgroup reductions (grad/reductions.ts), and the order of launches follows the
// stages' dependencies.
import { runPasses } from '../../passes/pipeline.ts';
import type { GradProgram, Stage, StageOutput } from '../../src/ir/grad.ts';
import { operands, type Id, type Program } from '../../src/ir/types.ts';
import type { ChunkSchedule } from './chunked/analysis.ts';
import { keptBuffer, normalisedItems } from './lower.ts';
import type { Sizes } from './common.ts';
import type { PlanBuffer } from './plan.ts';
import { mapKernel, paramsKernel } from './grad/elementwise.ts';
import { bufferName, layoutEnv, storedReads, storedSlot, type Env } from './grad/env.ts';
import type { GradKernel, GradPlan } from './grad/plan.ts';
import { pairsKernel, reduceKernel } from './grad/reductions.ts';
import { lseKernel, rowAxes, rowsTermKernel } from './grad/quadratic-rows.ts';
import { segmentedTermKernels } from './grad/segmented-terms.ts';
import { naiveTermKernel, recomputeGroups, sharedHead, stageGroups, termKernel, termKernelFloats, type Epilogue, type TermGroup } from './grad/term-kernels.ts';

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
  | { readonly kind: 'rows'; readonly group: TermGroup }
  | { readonly kind: 'lse'; readonly stage: Extract<Stage, { kind: 'lse' }> }
  | { readonly kind: 'map'; readonly stage: Extract<Stage, { kind: 'map' }>; readonly outputs: readonly StageOutput[] }
  | { readonly kind: 'other'; readonly stage: Extract<Stage, { kind: 'reduce' | 'pairs' | 'params' }> };

interface Node {
  units: Unit[];
  readonly first: number; // the earliest stage it holds (ties in the launch order)
  reads: Set<string>; // stored tensors
  writes: Set<string>;
}

export function lowerGrad(gp: GradProgram, sizes: Sizes, opts: GradLowerOptions): GradPlan {
  const passed = new Map<string, Program>(gp.stages.flatMap((st) => (st.kind === 'term' || st.kind === 'lse' ? [[st.name, runPasses(st.program)] as const] : [])));
  const virtual = new Set(opts.fuse ? gp.stages.flatMap((st) => (st.kind === 'map' ? st.outputs.map((o) => o.tensor).filter((t) => !gp.gradients.includes(t)) : [])) : []);
  const kept = new Map(opts.stored ? normalisedItems(runPasses(gp.forward)).flatMap(({ k }) => [[`n.${k}`, keptBuffer('n', k)], [`z.${k}`, keptBuffer('z', k)]] as const) : []);
  if (opts.stored) {
    for (const { k, denAxes } of normalisedItems(runPasses(gp.forward))) {
      const z = gp.stages.find((st) => st.kind === 'term' && st.writes === `z.${k}`);
      if (!z || z.kind !== 'term' || z.program.outAxes.join() !== denAxes.join()) throw new Error(`internal: ${gp.forward.name}: the kept denominator of item ${k} [${denAxes}] is not what the gradient program recomputes`);
    }
  }
  let env = layoutEnv(gp, sizes, virtual, kept);
  const schedule = { ...opts.schedule, chunk: chunkFor([...passed.values()], opts.schedule.chunk, true) };
  const nodes = units(gp, env, passed, opts.fuse, opts.form === 'parallel', new Set(kept.keys())).map((u, k) => node(env, u, k));
  const storageBuffers = opts.storageBuffers ?? 8;
  if (opts.fuse) merge(nodes, env, schedule, opts.workgroupFloats, storageBuffers);
  if (opts.fuse) {
    const unstored = foldEpilogues(gp, env, nodes, storageBuffers);
    if (unstored.size) env = layoutEnv(gp, sizes, virtual, kept, unstored);
  }
  for (const n of nodes) {
    const count = buffersOf(env, n);
    if (count > storageBuffers) throw new Error(`${gp.forward.name}: stage ${stageNames(n).join(' + ')} binds ${count} storage buffers, over the adapter's ${storageBuffers}`);
  }
  const segmentBuffers: PlanBuffer[] = [];
  const kernels = order(nodes).flatMap((n, k) => emit(gp, env, n, k, schedule, opts, passed, segmentBuffers));
  return {
    variant: gp.forward.name,
    fused: opts.fuse,
    kernels,
    buffers: [...env.buffers, ...segmentBuffers],
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
        if (groups[0].parallel && rowAxes(groups[0], env.sizes)) out.push({ kind: 'rows', group: groups[0] });
        else if (groups[0].parallel) out.push({ kind: 'naive', group: groups[0] });
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
      case 'lse':
        out.push({ kind: 'lse', stage: st });
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
    case 'rows':
      reads = toBuffers(u.group.reads);
      writes = new Set(u.group.writes);
      break;
    case 'lse':
      reads = toBuffers(Object.values(u.stage.bindings).map((b) => b.tensor));
      writes = new Set([u.stage.writes]);
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
  return n.units.flatMap((u) => (u.kind === 'term' ? u.groups.flatMap((g) => g.stages) : u.kind === 'naive' || u.kind === 'rows' ? u.group.stages : [u.stage.name]));
}

/**
 * (b): term nodes of one time direction whose head axes agree join while independent, within the adapter's storage
 * buffers and within its workgroup memory with at least 8 value columns per workgroup and at least half the chunk
 * (a reverse-time kernel pads to what each of its stages needs).
 */
function merge(nodes: Node[], env: Env, schedule: ChunkSchedule, limit: number, storageBuffers: number): void {
  const groups = (n: Node) => n.units.flatMap((u) => (u.kind === 'term' ? u.groups : []));
  const fits = (gs: TermGroup[]) => {
    const programs = gs.map((g) => g.program);
    for (const chunk of new Set([schedule.chunk, chunkFor(programs, Math.max(1, schedule.chunk >> 1))])) {
      if (sharedHead(gs, chunk) === null) continue;
      for (let cols = schedule.cols; ; cols >>= 1) {
        if (termKernelFloats({ env, groups: gs, schedule: { ...schedule, chunk, cols }, label: 'fit', barriers: true }) <= limit) return true;
        if (cols <= 8) break;
      }
    }
    return false;
  };
  for (let i = 1; i < nodes.length; i++) {
    const a = nodes[i];
    if (a.units[0].kind !== 'term') continue;
    const ga = groups(a);
    for (let j = 0; j < i; j++) {
      const b = nodes[j];
      if (b.units[0].kind !== 'term') continue;
      const gb = groups(b);
      if (gb[0].time !== ga[0].time) continue;
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

/**
 * (c), the epilogue: an output of a map stage (the token sweep's d<input>) that is elementwise in one term stage's
 * sum — dq = adj.fq ⊙ φ′(q) — or the plain sum of several computed by sections of one kernel — dv = adj.value +
 * adj.conv.value — is computed where those sections store, and leaves the map stage (which goes when nothing is
 * left of it). A sum only such epilogues read is no longer stored: the returned tensors.
 */
function foldEpilogues(gp: GradProgram, env: Env, nodes: Node[], storageBuffers: number): Set<string> {
  // the group that sums into each tensor (a stage of one group: a sum over several is not one value at the store)
  const owners = new Map<string, { node: Node; unit: number; group: number }>();
  const shared = new Set<string>();
  nodes.forEach((node) => node.units.forEach((u, unit) => {
    if (u.kind !== 'term') return;
    u.groups.forEach((g, group) => {
      if (g.out.kind !== 'sum') return;
      if (owners.has(g.out.tensor) || g.out.accumulate) shared.add(g.out.tensor);
      owners.set(g.out.tensor, { node, unit, group });
    });
  }));
  for (const t of shared) owners.delete(t);
  const readers = (t: string) => gp.stages.filter((st) => Object.values(st.bindings).some((b) => b.tensor === t));
  const folded = new Map<string, Set<string>>(); // map stage → its outputs now epilogues
  const epilogues = new Map<string, Epilogue[]>(); // `${unit}/${group}` of a node's … keyed by owner below
  const add = (o: { node: Node; unit: number; group: number }, e: Epilogue) => {
    const key = `${nodes.indexOf(o.node)}/${o.unit}/${o.group}`;
    epilogues.set(key, [...(epilogues.get(key) ?? []), e]);
  };
  for (const node of nodes) {
    const u = node.units[0];
    if (u.kind !== 'map') continue;
    const st = u.stage;
    for (const o of u.outputs) {
      const shape = epilogueShape(env, st, o.id);
      if (!shape) continue;
      const sums = shape.leaves.map((l) => ({ ...l, owner: owners.get(l.tensor) }));
      if (sums.some((x) => !x.owner || storedSlot(env, x.tensor).axes.join() !== o.axes.join())) continue;
      if (shape.kind === 'sum' && new Set(sums.map((x) => x.owner!.node)).size !== 1) continue;
      // the kernel then also binds the gradient and what else the expression reads
      const host = sums[0].owner!.node;
      const own = new Set(sums.map((x) => x.tensor));
      const extra = [o.tensor, ...Object.values(st.bindings).map((b) => b.tensor).filter((t) => !own.has(t) && env.slots.get(t)?.kind === 'buffer' && reads(st, o.id, t))];
      if (buffersOf(env, { ...host, writes: new Set([...host.writes, ...extra]) }) > storageBuffers) continue;
      extra.forEach((t) => (t === o.tensor ? host.writes.add(t) : host.reads.add(t)));
      if (shape.kind === 'elementwise') add(sums[0].owner!, { tensor: o.tensor, stage: st, id: o.id, from: sums[0].name, accumulate: false });
      else {
        // the first section in the kernel writes, the later ones add (each after the earlier ones' stores)
        const inOrder = [...sums].sort((x, y) => x.owner!.unit - y.owner!.unit || x.owner!.group - y.owner!.group);
        inOrder.forEach((x, k) => add(x.owner!, { tensor: o.tensor, stage: st, id: x.id, from: x.name, accumulate: k > 0 }));
      }
      folded.set(st.name, (folded.get(st.name) ?? new Set()).add(o.tensor));
    }
  }
  // what is left of the map stages; sums no stage reads any more are not stored
  const unstored = new Set<string>();
  for (const [tensor, o] of owners) {
    const rs = readers(tensor);
    const gone = rs.every((st) => st.kind === 'map' && folded.has(st.name) && st.outputs.every((x) => folded.get(st.name)!.has(x.tensor) || !reads(st, x.id, tensor)));
    if (rs.length && gone && epilogues.has(`${nodes.indexOf(o.node)}/${o.unit}/${o.group}`)) unstored.add(tensor);
  }
  for (const [key, es] of epilogues) {
    const [n, unit, group] = key.split('/').map(Number);
    const node = nodes[n];
    const u = node.units[unit];
    if (u.kind !== 'term') continue;
    const groups = u.groups.map((g, k) => {
      if (k !== group) return g;
      const own = g.out.kind === 'sum' ? g.out.tensor : '';
      const storeSum = !unstored.has(own);
      return { ...g, epilogue: es, storeSum, writes: [...g.writes.filter((w) => storeSum || w !== own), ...es.map((e) => e.tensor)] };
    });
    node.units[unit] = { kind: 'term', groups };
    for (const t of unstored) node.writes.delete(t);
  }
  for (let i = nodes.length - 1; i >= 0; i--) {
    const u = nodes[i].units[0];
    if (u.kind !== 'map' || !folded.has(u.stage.name)) continue;
    const st = u.stage;
    const left = u.outputs.filter((o) => !folded.get(st.name)!.has(o.tensor));
    if (!left.length) nodes.splice(i, 1);
    else {
      const used = Object.values(st.bindings).map((b) => b.tensor).filter((t) => left.some((o) => reads(st, o.id, t)));
      nodes[i] = { ...nodes[i], units: [{ kind: 'map', stage: st, outputs: left }], reads: storedReads(env, used), writes: new Set(left.map((o) => o.tensor)) };
    }
  }
  return unstored;
}

/** Does node `id` of a map stage read the environment tensor `tensor`? */
function reads(st: Extract<Stage, { kind: 'map' }>, id: Id, tensor: string): boolean {
  const n = st.graph.nodes[id];
  if (n.op === 'input') return st.bindings[n.name]?.tensor === tensor;
  return operands(n).some((x) => reads(st, x, tensor));
}

/**
 * How output `id` of a map stage reads term stages' sums, when an epilogue can compute it: elementwise ops over
 * exactly one of them and stored inputs, parameters and builtins ('elementwise'), or a tree of additions of
 * several ('sum'); undefined otherwise (a reduction, a virtual tensor, another intermediate).
 */
function epilogueShape(env: Env, st: Extract<Stage, { kind: 'map' }>, id: Id): { kind: 'elementwise' | 'sum'; leaves: { name: string; tensor: string; id: Id }[] } | undefined {
  const g = st.graph;
  const leaves = new Map<string, { name: string; tensor: string; id: Id }>();
  const plain = (t: string) => {
    const slot = env.slots.get(t);
    return slot?.kind === 'builtin' || (slot?.kind === 'buffer' && !slot.buffer.startsWith('env') && !slot.buffer.startsWith('grad:'));
  };
  let ok = true;
  const visit = (x: Id) => {
    const n = g.nodes[x];
    if (n.op === 'input' || n.op === 'param') {
      const t = st.bindings[n.name].tensor;
      if (!plain(t)) {
        if (n.op === 'param') ok = false;
        else leaves.set(n.name, { name: n.name, tensor: t, id: x });
      }
      return;
    }
    if (n.op !== 'unary' && n.op !== 'binary' && n.op !== 'const') ok = false;
    operands(n).forEach(visit);
  };
  visit(id);
  if (!ok || !leaves.size) return undefined;
  if (leaves.size === 1) return { kind: 'elementwise', leaves: [...leaves.values()] };
  const sumOfLeaves = (x: Id): boolean => {
    const n = g.nodes[x];
    return (n.op === 'input' && leaves.has(n.name)) || (n.op === 'binary' && n.fn === 'add' && sumOfLeaves(n.a) && sumOfLeaves(n.b));
  };
  const count = (x: Id): number => {
    const n = g.nodes[x];
    return n.op === 'input' ? 1 : operands(n).reduce((k, y) => k + count(y), 0);
  };
  return sumOfLeaves(id) && count(id) === leaves.size ? { kind: 'sum', leaves: [...leaves.values()] } : undefined;
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

function emit(gp: GradProgram, env: Env, n: Node, k: number, schedule: ChunkSchedule, opts: GradLowerOptions, passed: ReadonlyMap<string, Program>, segmentBuffers: PlanBuffer[]): GradKernel[] {
  const label = (what: string) => `${gp.forward.name}.grad${k}.${what}`;
  const u = n.units[0];
  switch (u.kind) {
    case 'term': {
      const groups = n.units.flatMap((x) => (x.kind === 'term' ? x.groups : []));
      const name = [...new Set(groups.flatMap((g) => g.stages))].join('+');
      const req = { env, groups, schedule: fitSchedule(env, groups, schedule, opts.workgroupFloats, name), label: label(name), barriers: true };
      // segmented (schedule.segment) where the states add up and the segment buffers fit the adapter's bindings
      const seg = segmentedTermKernels(req);
      if (seg && seg.kernels.every((x) => x.bindings.length <= (opts.storageBuffers ?? 8))) {
        segmentBuffers.push(...seg.buffers);
        return seg.kernels;
      }
      return [termKernel(req)];
    }
    case 'naive':
      return [naiveTermKernel(env, u.group, label(u.group.stages.join('+')))];
    case 'rows':
      return [rowsTermKernel(env, u.group, label(u.group.stages.join('+')))];
    case 'lse':
      return [lseKernel(env, u.stage, passed.get(u.stage.name)!, label(u.stage.name))];
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
    else throw new Error(`${what}: even chunk ${cur.chunk} with one value column needs more workgroup memory than the adapter's ${limit * 4} bytes (smaller feature axes would fit)`);
  }
}

/**
 * A chunk that divides or is a multiple of every past_groups size (and group of a prefix term) the stages use, near
 * `want`.
 */
function chunkFor(programs: readonly Program[], want: number, align = false): number {
  const sizes = new Set(programs.flatMap((p) => p.terms.flatMap((t) => t.mask.flatMap((m) => (m.kind === 'past_groups' || (m.kind === 'group' && t.form.kind === 'prefix') ? [m.size] : [])))));
  let c = Math.max(1, want);
  // `align`: a chunk that is a multiple of a bounded term's group (at most twice the chunk asked for) stages no halo
  if (align) {
    const groups = programs.flatMap((p) => p.terms.flatMap((t) => t.mask.flatMap((m) => (m.kind === 'group' && t.form.kind !== 'prefix' ? [m.size] : []))));
    for (const g of groups) if (c % g !== 0 && g <= 2 * want) c = Math.ceil(c / g) * g;
  }
  for (let guard = 0; guard < 8; guard++) {
    const bad = [...sizes].find((g) => c % g !== 0 && g % c !== 0);
    if (bad === undefined) return c;
    c = Math.ceil(c / bad) * bad;
  }
  throw new Error(`no chunk near ${want} suits the group sizes ${[...sizes].join(', ')}`);
}

export type { GradPlan, GradKernel } from './grad/plan.ts';
export { paddedLength } from './grad/plan.ts';
