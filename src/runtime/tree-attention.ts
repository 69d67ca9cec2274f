// Tree verification and path commit of a compiled variant on the GPU, for the speculative-decoding runtime:
// both plans are compiled once per (program, axis sizes, maxNodes); each layer then encodes
//   encodeTree:   N draft nodes (inputs [b, N, …], parents [b, N]) against the committed state → o [b, N, …]
//   encodeCommit: the accepted path (node indices [b, P]) folded into the state, one launch reading the nodes' inputs by index
// into the caller's compute pass (one dispatch each per layer). The state buffers are those of the recurrent plan (compiled-attention's
// layer state: 'state:S0', 'state:ring12', …); the tree reads them, the commit writes them. Each layer
// writes its dims uniform when encoding, so encode at most one tree and one commit per layer per submit.
//
// A variant whose tree kernel can fold the commit (every one but softmax attention) also gets
//   encodeFolded: the tree of this step and the commit of the previous step's accepted path in one launch
//                 (backends/wgsl/tree-fold.ts), reading one FoldSet (packed state, the previous nodes' inputs)
//                 and writing the other (tree-fold-sets.ts keeps the pair and copies to and from the layer state);
//   encodeFoldCommit: the separate commit on one FoldSet in place (a pending path too long to fold).
// Each has a dims uniform of its own per layer, so a submit may hold one of each per layer (chained steps after the
// first pass the chain's GPU-filled dims instead).
import { FOLD_KEPT, FOLD_NEXT, FOLD_PENDING, FOLD_STATE, treeFoldCommitPlan, treeFoldPlan, type FoldLayout } from '../../backends/wgsl/tree-fold.ts';
import { isSoftmaxProgram } from '../../backends/wgsl/softmax-analysis.ts';
import { TREE_PARENTS, TREE_PATH, TREE_SEQ, treeCommitPlan, treePlan } from '../../backends/wgsl/tree.ts';
import type { Plan } from '../../backends/wgsl/plan.ts';
import type { Program } from '../ir/types.ts';
import { BufferUsage, type Gpu } from './device.ts';
import { PlanRunner } from './executor.ts';
import { idOf } from './object-id.ts';

export interface TreeIo {
  /** The nodes' token inputs by input name ('q', 'k', 'v', …), each [b, nNodes, …axes] f32. */
  readonly inputs: Readonly<Record<string, GPUBuffer>>;
  /** [b, nNodes] f32: each node's parent index, −1 for a child of the last committed token (see treeParents). */
  readonly parents: GPUBuffer;
  /** [b, nNodes, …outAxes] f32. */
  readonly o: GPUBuffer;
  /**
   * [b, 2] f32: each sequence's position past `pos` and (commits) its path length; absent: every sequence at `pos`,
   * every path as long as `pathLength` (SequenceBuffers.write). A variant without it (softmax attention) ignores it.
   */
  readonly seq?: GPUBuffer;
}

export interface CommitIo {
  /** The same node inputs the tree was verified with, [b, nNodes, …axes]. */
  readonly inputs: Readonly<Record<string, GPUBuffer>>;
  /** [b, pathLength] f32: the accepted node indices from the root down (see treePaths); rows shorter than pathLength per `seq`. */
  readonly path: GPUBuffer;
  /** As TreeIo.seq: each sequence's position past `pos` and its path length (at most pathLength). */
  readonly seq?: GPUBuffer;
}

/** One side of a folded step's ping-pong: the packed state (FoldLayout.state) and the kept nodes' inputs [b, maxNodes, W]. */
export interface FoldSet {
  readonly state: GPUBuffer;
  readonly nodes: GPUBuffer;
}

/**
 * A dims uniform the GPU fills (chained speculation): the 16 bytes (b, t or path length, pos, N) at `offset` of
 * `buffer`, a multiple of 256 (any adapter's uniform offset alignment).
 */
export interface DimsSlot {
  readonly buffer: GPUBuffer;
  readonly offset: number;
}

export interface TreeAttention {
  /** Records verification of `nNodes` draft nodes after `pos` committed tokens; the state is read only. */
  encodeTree(pass: GPUComputePassEncoder, io: TreeIo, state: Readonly<Record<string, GPUBuffer>>, b: number, pos: number, nNodes: number, dims?: DimsSlot): void;
  /**
   * Records the fold of an accepted path of `pathLength` nodes into the state (nothing when 0); the caller then advances pos by pathLength.
   * With `dims` (a uniform buffer the GPU fills: chained speculation), the kernels read b, the path length, pos0 and N
   * from it instead of the host's pos and pathLength, which then only bound the launch.
   */
  encodeCommit(pass: GPUComputePassEncoder, io: CommitIo, state: Readonly<Record<string, GPUBuffer>>, b: number, pos: number, nNodes: number, pathLength: number, dims?: DimsSlot): void;
  /**
   * Records, in one launch, verification of `nNodes` nodes (io.inputs, io.parents → io.o) against `from`'s state
   * at position `pos` followed by the pending path of `pathLength` nodes (io.path: node indices into `from`'s kept
   * nodes), and the fold of that path into `to`'s state; this step's nodes' inputs are kept in `to`. With `dims` (a
   * uniform the GPU fills: chained speculation) the kernel reads (b, pathLength, pos, nNodes) from it.
   * Only when the factory has a fold (TreeAttentionFactory.fold).
   */
  encodeFolded(pass: GPUComputePassEncoder, io: TreeIo & { readonly path: GPUBuffer }, from: FoldSet, to: FoldSet, b: number, pos: number, nNodes: number, pathLength: number, dims?: DimsSlot): void;
  /** Records the fold of the pending path of `pathLength` nodes (indices in `path`, inputs in set.nodes) into set.state, in place (nothing when 0); `seq` as CommitIo.seq. */
  encodeFoldCommit(pass: GPUComputePassEncoder, path: GPUBuffer, set: FoldSet, b: number, pos: number, pathLength: number, seq?: GPUBuffer): void;
}

export interface TreeAttentionFactory {
  readonly tree: Plan;
  readonly commit: Plan;
  /** The folded step's plan and its packed layout; null where the fold does not apply (softmax attention). */
  readonly fold: { readonly plan: Plan; readonly commit: Plan; readonly layout: FoldLayout } | null;
  readonly maxNodes: number;
  /** Names of the state buffers both plans bind (as the recurrent plan names them). */
  readonly stateNames: readonly string[];
  /** One layer's tree attention over its parameters (by parameter name). */
  layer(params: Readonly<Record<string, GPUBuffer>>, label?: string): TreeAttention;
}

/** A positive integer from environment variable `name`, or undefined when it is unset or empty. */
function positiveFromEnv(name: string): number | undefined {
  const say = process.env[name];
  if (say === undefined || say === '') return undefined;
  const x = Number(say);
  if (!(Number.isInteger(x) && x > 0)) throw new Error(`${name} must be a positive integer, got ${JSON.stringify(say)}`);
  return x;
}

/**
 * Compiles the tree and commit plans of `program` (after the passes) at fixed axis sizes. `hardware`: split the
 * kernels' work for a hardware adapter (backends/wgsl/tree-split.ts; default: unless the adapter is software — tests
 * force it to run the hardware split on lavapipe). `loadsFirst`: false builds the verifying kernels without
 * TreeOptions.loadsFirst (tests comparing the two). LINATTN_TREE_THREADS (benches): a hardware split's invocations per
 * workgroup instead of tree-split.ts's 256; LINATTN_TREE_TILE its ancestors per path tile instead of 16.
 */
export async function compileTreeAttention(gpu: Gpu, program: Program, sizes: Readonly<Record<string, number>>, maxNodes: number, hardware = !gpu.isSoftware, loadsFirst?: boolean): Promise<TreeAttentionFactory> {
  const threads = positiveFromEnv('LINATTN_TREE_THREADS');
  const tile = positiveFromEnv('LINATTN_TREE_TILE');
  const opts = { hardware, ...(loadsFirst !== undefined && { loadsFirst }), ...(threads !== undefined && { threads }), ...(tile !== undefined && { tile }) };
  const tree = treePlan(program, sizes, maxNodes, opts);
  const commit = treeCommitPlan(program, sizes, maxNodes, opts);
  let fold = isSoftmaxProgram(program) ? null : { plan: treeFoldPlan(program, sizes, maxNodes, opts), commit: treeFoldCommitPlan(program, sizes, maxNodes, opts) };
  // A variant with many parameters could bind more storage buffers than the adapter allows: it keeps the separate commit.
  const storage = (plan: Plan) => Math.max(...plan.kernels.map((k) => k.bindings.length - 1));
  if (fold && storage(fold.plan) > gpu.limits.maxStorageBuffersPerShaderStage) fold = null;
  const [treeRunner, commitRunner, foldRunner, foldCommitRunner] = await Promise.all([
    PlanRunner.create(gpu, tree), PlanRunner.create(gpu, commit),
    ...(fold ? [PlanRunner.create(gpu, fold.plan), PlanRunner.create(gpu, fold.commit)] : []),
  ]);
  const foldRunners = foldRunner && foldCommitRunner ? { tree: foldRunner, commit: foldCommitRunner } : null;
  const scratch = new ScratchBuffers(gpu, maxNodes);
  const shared = new SharedSequences(gpu);
  const stateNames = tree.buffers.filter((b) => b.role === 'state').map((b) => b.name);
  return {
    tree,
    commit,
    fold: fold && { ...fold, layout: fold.plan.layout },
    maxNodes,
    stateNames,
    layer: (params, label = program.name) => {
      for (const d of program.params) if (!params[d.name]) throw new Error(`${label}: variant ${program.name} needs parameter '${d.name}'`);
      return new TreeLayer(gpu, program, label, params, treeRunner, commitRunner, foldRunners, scratch, shared, maxNodes);
    },
  };
}

/** Parents of one tree per sequence as the [b, N] f32 upload; checks that every parent is −1 or an earlier node. */
export function treeParents(trees: readonly (readonly number[])[]): Float32Array {
  const n = trees[0]?.length ?? 0;
  const out = new Float32Array(trees.length * n);
  trees.forEach((parents, b) => {
    if (parents.length !== n) throw new Error(`tree of sequence ${b} has ${parents.length} nodes, sequence 0 has ${n}: one node count per call`);
    parents.forEach((p, i) => {
      if (!Number.isInteger(p) || p < -1 || p >= i) throw new Error(`sequence ${b}: node ${i} has parent ${p}; parents must be −1 or an earlier node`);
      out[b * n + i] = p;
    });
  });
  return out;
}

/**
 * Accepted paths, one per sequence, as the [b, P] f32 upload with P the longest (shorter rows padded with node 0:
 * TREE_SEQ gives each its length); checks each runs root → child → ….
 */
export function treePaths(trees: readonly (readonly number[])[], paths: readonly (readonly number[])[]): Float32Array {
  const len = Math.max(0, ...paths.map((p) => p.length));
  const out = new Float32Array(paths.length * len);
  paths.forEach((path, b) => {
    path.forEach((node, k) => {
      const want = k === 0 ? -1 : path[k - 1];
      if (trees[b][node] !== want) throw new Error(`sequence ${b}: path entry ${k} (node ${node}) has parent ${trees[b][node]}, expected ${want}`);
      out[b * len + k] = node;
    });
  });
  return out;
}

/** No sequence past `pos`, no path shorter than the launch's: [b, 2] of (0, 2^24), per batch size (TreeIo.seq absent). */
const ALIGNED_LENGTH = 1 << 24;
class SharedSequences {
  private readonly byB = new Map<number, GPUBuffer>();
  constructor(private readonly gpu: Gpu) {}

  get(b: number): GPUBuffer {
    let buf = this.byB.get(b);
    if (!buf) {
      buf = this.gpu.device.createBuffer({ label: `tree sequences aligned b=${b}`, size: 8 * b, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
      this.gpu.device.queue.writeBuffer(buf, 0, Float32Array.from({ length: 2 * b }, (_, i) => (i % 2 ? ALIGNED_LENGTH : 0)));
      this.byB.set(b, buf);
    }
    return buf;
  }
}

/**
 * The TREE_SEQ upload for sequences at positions `pos + offsets[s]` committing paths of `lengths[s]` nodes (absent:
 * none): [b, 2] f32. Offsets and lengths below 2^24, exact in f32.
 */
export function sequenceData(offsets: readonly number[], lengths?: readonly number[]): Float32Array<ArrayBuffer> {
  const out = new Float32Array(2 * offsets.length);
  offsets.forEach((o, s) => {
    const n = lengths?.[s] ?? 0;
    for (const x of [o, n]) if (!(Number.isInteger(x) && x >= 0 && x < ALIGNED_LENGTH)) throw new Error(`sequence ${s}: offset ${o} and path length ${n} must be integers in [0, 2^24)`);
    out[2 * s] = o;
    out[2 * s + 1] = n;
  });
  return out;
}

/** Scratch of both plans per batch size, shared by every layer (dispatches in one pass run in order). */
class ScratchBuffers {
  private readonly byB = new Map<number, Record<string, GPUBuffer>>();
  constructor(private readonly gpu: Gpu, private readonly maxNodes: number) {}

  get(plans: readonly Plan[], b: number): Record<string, GPUBuffer> {
    let bufs = this.byB.get(b);
    if (!bufs) this.byB.set(b, (bufs = {}));
    for (const plan of plans) {
      for (const buf of plan.buffers) {
        if (buf.role !== 'scratch' || bufs[buf.name]) continue;
        const bytes = Math.max(16, buf.floats(b, this.maxNodes) * 4);
        bufs[buf.name] = this.gpu.device.createBuffer({ label: `${plan.variant} ${buf.name} b=${b}`, size: bytes, usage: BufferUsage.STORAGE });
      }
    }
    return bufs;
  }
}

class TreeLayer implements TreeAttention {
  private readonly treeDims: GPUBuffer;
  private readonly commitDims: GPUBuffer;
  private readonly foldDims: GPUBuffer;
  private readonly foldCommitDims: GPUBuffer;
  private readonly binds = new Map<string, ReturnType<PlanRunner['bind']>>();

  constructor(
    private readonly gpu: Gpu,
    private readonly program: Program,
    private readonly label: string,
    private readonly params: Readonly<Record<string, GPUBuffer>>,
    private readonly tree: PlanRunner,
    private readonly commit: PlanRunner,
    private readonly fold: { readonly tree: PlanRunner; readonly commit: PlanRunner } | null,
    private readonly scratch: ScratchBuffers,
    private readonly aligned: SharedSequences,
    private readonly maxNodes: number,
  ) {
    const dims = (what: string) => gpu.device.createBuffer({ label: `${label} ${what} dims`, size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    this.treeDims = dims('tree');
    this.commitDims = dims('commit');
    this.foldDims = dims('folded tree');
    this.foldCommitDims = dims('packed commit');
  }

  encodeTree(pass: GPUComputePassEncoder, io: TreeIo, state: Readonly<Record<string, GPUBuffer>>, b: number, pos: number, nNodes: number, dims?: DimsSlot): void {
    this.check(b, pos, nNodes);
    const all = this.buffers(io.inputs, state, this.scratch.get([this.tree.plan, this.commit.plan], b));
    all[TREE_PARENTS] = io.parents;
    all['out:o'] = io.o;
    all[TREE_SEQ] = io.seq ?? this.aligned.get(b);
    const bound = this.bound('t', this.tree, all, b, nNodes, dims ?? this.treeDims);
    if (!dims) this.gpu.device.queue.writeBuffer(this.treeDims, 0, Uint32Array.of(b, nNodes, pos, 0));
    this.tree.encode(pass, bound);
  }

  encodeCommit(pass: GPUComputePassEncoder, io: CommitIo, state: Readonly<Record<string, GPUBuffer>>, b: number, pos: number, nNodes: number, pathLength: number, dims?: DimsSlot): void {
    this.check(b, pos, nNodes);
    if (!Number.isInteger(pathLength) || pathLength < 0 || pathLength > nNodes) throw new Error(`${this.label}: accepted path of ${pathLength} nodes from a tree of ${nNodes}`);
    if (pathLength === 0) return;
    const all = this.buffers(io.inputs, state, this.scratch.get([this.tree.plan, this.commit.plan], b));
    all[TREE_PATH] = io.path;
    all[TREE_SEQ] = io.seq ?? this.aligned.get(b);
    const bound = this.bound('c', this.commit, all, b, pathLength, dims ?? this.commitDims);
    // dims.pad carries the tree's node count (the row stride of the node inputs the gather reads).
    if (!dims) this.gpu.device.queue.writeBuffer(this.commitDims, 0, Uint32Array.of(b, pathLength, pos, nNodes));
    this.commit.encode(pass, bound);
  }

  encodeFolded(pass: GPUComputePassEncoder, io: TreeIo & { readonly path: GPUBuffer }, from: FoldSet, to: FoldSet, b: number, pos: number, nNodes: number, pathLength: number, dims?: DimsSlot): void {
    if (!this.fold) throw new Error(`${this.label}: variant ${this.program.name} has no folded tree step`);
    this.check(b, pos, nNodes);
    if (!Number.isInteger(pathLength) || pathLength < 0 || pathLength > this.maxNodes) throw new Error(`${this.label}: pending path of ${pathLength} nodes; trees have at most ${this.maxNodes}`);
    const all = this.buffers(io.inputs, {}, {});
    all[TREE_PARENTS] = io.parents;
    all['out:o'] = io.o;
    all[TREE_PATH] = io.path;
    all[TREE_SEQ] = io.seq ?? this.aligned.get(b);
    all[FOLD_STATE] = from.state;
    all[FOLD_NEXT] = to.state;
    all[FOLD_PENDING] = from.nodes;
    all[FOLD_KEPT] = to.nodes;
    const bound = this.bound('f', this.fold.tree, all, b, nNodes, dims ?? this.foldDims);
    if (!dims) this.gpu.device.queue.writeBuffer(this.foldDims, 0, Uint32Array.of(b, pathLength, pos, nNodes));
    this.fold.tree.encode(pass, bound);
  }

  encodeFoldCommit(pass: GPUComputePassEncoder, path: GPUBuffer, set: FoldSet, b: number, pos: number, pathLength: number, seq?: GPUBuffer): void {
    if (!this.fold) throw new Error(`${this.label}: variant ${this.program.name} has no folded tree step`);
    this.check(b, pos, 1);
    if (!Number.isInteger(pathLength) || pathLength < 0 || pathLength > this.maxNodes) throw new Error(`${this.label}: pending path of ${pathLength} nodes; trees have at most ${this.maxNodes}`);
    if (pathLength === 0) return;
    const all: Record<string, GPUBuffer> = { [TREE_PATH]: path, [TREE_SEQ]: seq ?? this.aligned.get(b), [FOLD_STATE]: set.state, [FOLD_PENDING]: set.nodes };
    for (const [k, v] of Object.entries(this.params)) all[`param:${k}`] = v;
    const bound = this.bound('fc', this.fold.commit, all, b, pathLength, this.foldCommitDims);
    this.gpu.device.queue.writeBuffer(this.foldCommitDims, 0, Uint32Array.of(b, pathLength, pos, 0));
    this.fold.commit.encode(pass, bound);
  }

  private check(b: number, pos: number, nNodes: number): void {
    if (!Number.isInteger(b) || b < 1) throw new Error(`${this.label}: batch ${b} must be a positive integer`);
    if (!Number.isInteger(pos) || pos < 0) throw new Error(`${this.label}: committed position ${pos} must be a non-negative integer`);
    if (!Number.isInteger(nNodes) || nNodes < 1 || nNodes > this.maxNodes) throw new Error(`${this.label}: ${nNodes} tree nodes; the plans were compiled for 1..${this.maxNodes}`);
  }

  private buffers(inputs: Readonly<Record<string, GPUBuffer>>, state: Readonly<Record<string, GPUBuffer>>, scratch: Record<string, GPUBuffer>): Record<string, GPUBuffer> {
    const all: Record<string, GPUBuffer> = { ...scratch, ...state };
    for (const d of this.program.inputs) {
      const buf = inputs[d.name];
      if (!buf) throw new Error(`${this.label}: no tree input '${d.name}' [b, nodes, ${d.axes.join(', ')}]`);
      all[`in:${d.name}`] = buf;
    }
    for (const [k, v] of Object.entries(this.params)) all[`param:${k}`] = v;
    return all;
  }

  /** `dims`: the layer's own uniform (written per encode), or a slot the GPU fills. */
  private bound(kind: string, runner: PlanRunner, all: Record<string, GPUBuffer>, b: number, t: number, dims: GPUBuffer | DimsSlot): ReturnType<PlanRunner['bind']> {
    const names = runner.plan.kernels.flatMap((k) => k.bindings.map((x) => x.buffer));
    const dimsKey = 'offset' in dims ? `${idOf(dims.buffer)}@${dims.offset}` : `${idOf(dims)}`;
    const key = `${kind}:${b}:${dimsKey}:${[...new Set(names)].map((n) => `${n}=${idOf(all[n])}`).join(',')}`;
    let bound = this.binds.get(key);
    if (!bound) {
      bound = runner.bind(all, b, t, 0, dims);
      this.binds.set(key, bound);
    }
    return { ...bound, t }; // the launch size follows t; the bind groups do not
  }
}
