// Chained batch speculation on the GPU (issue 14: batch 8 with per-sequence acceptance): R replayed folded tree steps of
// b sequences in one submit and one readback, the chain kernel (backends/wgsl/chain-batch.ts) between steps accepting
// each sequence's path, writing the next commit, moving its position and building its next tree from its own heads. A
// run may be continued before it is read: everything its first step reads is on the GPU (the last chain kernel's trees,
// pending paths and positions), so the host uploads nothing and encodes the next run while the GPU runs the last; runs
// are read in submission order, each read moving the verifier's books (positions, offsets, pending paths) as the run's
// steps committed them. The verifier (gpu-verifier.ts) checks and uploads a begun run's trees and owns the books and the
// folded state sets; this class owns the chain kernel, its buffers, the readback buffers and the runs in flight.
import { CHAIN_BATCH_WORKGROUP, chainBatchRingWords, chainBatchWgsl } from '../../backends/wgsl/chain-batch.ts';
import type { GpuModel } from '../model/gpu-model.ts';
import type { StepPlan } from '../model/gpu-step-plan.ts';
import type { RecordedStep } from '../model/step-recording.ts';
import { BufferUsage } from '../runtime/device.ts';
import { compileKernel } from '../runtime/pipeline-cache.ts';
import type { StaticTopology } from './chain.ts';
import { chainBatchLayout, MAX_RUNS_IN_FLIGHT, readChainBatch, type BatchChainResult, type BatchChainSubmission } from './gpu-chain-batch.ts';
import { MAX_CHAIN_STEPS } from './gpu-chain.ts';
import { MAX_TOP_K, type GpuSpeculativeHeads } from './gpu-heads.ts';

/** What a chained batch run and the runs continuing it share: the step plan and the trees' shape. */
export interface BatchRunOf {
  readonly plan: StepPlan;
  readonly rows: number;
  readonly b: number;
  readonly topology: StaticTopology;
  readonly medusaK: number;
}

/** What a batch chain needs of its verifier: buffers the chain kernel binds, the folded steps, and the books. */
export interface BatchChainHost {
  readonly model: GpuModel;
  readonly heads: GpuSpeculativeHeads;
  /** The nodes' parents, the pending paths (rows of maxNodes) and each sequence's position and path length (tree:seq). */
  readonly parents: GPUBuffer;
  readonly path: GPUBuffer;
  readonly seqCommit: GPUBuffer;
  readonly maxNodes: number;
  readonly maxBatch: number;
  readonly vocabSize: number;
  /** A timestamp pair for the run's pass, where the model writes timestamps. */
  readonly timestamps?: { readonly querySet: GPUQuerySet; readonly resolve: GPUBuffer };
  /** Records, before the run's pass, whatever puts the state into the folded sets; after a submit of `steps`, their parity. */
  enter(encoder: GPUCommandEncoder, b: number): void;
  advance(steps: number): void;
  /** The replayed folded step `ahead` steps after the next one's set (greedy, the heads' top-`medusaK`, no logits). */
  replayed(plan: StepPlan, b: number, rows: number, medusaK: number, ahead: number): Promise<RecordedStep>;
  /** A begun run: uploads the pending paths the first step commits; the books move at the submit (committedPending). */
  writePending(): void;
  /** The pending paths were committed (by a begun run's first step, or a continued run's): the books follow. */
  committedPending(): void;
  /** Step k + 1 committed step k's paths, of these lengths per sequence: the books follow. */
  committedLengths(lengths: readonly number[]): void;
  /** The run's last paths stay pending (node indices), verified in trees of these tokens, of `plan` and `rows`. */
  leftPending(paths: readonly (readonly number[])[], tokens: readonly (readonly number[])[], topology: StaticTopology, plan: StepPlan, rows: number): void;
  /** Maps and copies out `bytes` of `staging` (a map call counted), naming `what` in errors. */
  readBack(staging: GPUBuffer, bytes: number, what: string): Promise<ArrayBuffer>;
}

export class GpuBatchChain {
  /** The last run submitted, while continue() may follow it. */
  private continuation: BatchRunOf | undefined;
  /** The last run's result (read in submission order), and runs submitted and not read yet. */
  private tail: Promise<unknown> | undefined;
  private unread = 0;
  /**
   * Readback buffers, one per run submitted and not read yet (a pool that grows to the most runs the caller keeps in
   * flight); `busy` from a run's submit until its read has copied the data out.
   */
  private readonly staging: { buffer?: GPUBuffer; busy: boolean }[] = [];
  private buffers: { pipeline: GPUComputePipeline; ring: GPUBuffer; topo: GPUBuffer; params: GPUBuffer; groups: Map<StepPlan, GPUBindGroup> } | undefined;
  private readonly times = { runs: 0, steps: 0, encodeMs: 0, waitMs: 0, gpuMs: 0, mostInFlight: 0 };

  constructor(private readonly host: BatchChainHost) {}

  /** `steps` steps of `of`, whose first trees the host uploaded; continue() may follow before it is read. */
  async begin(of: BatchRunOf, steps: number): Promise<BatchChainSubmission> {
    const submission = await this.submit(of, steps, true);
    this.continuation = of;
    return submission;
  }

  /**
   * The next `steps` steps after the last run submitted (begin, or this), before that run is read: the GPU holds all
   * the first step reads — every sequence's next tree (the last chain kernel assembled it from that sequence's heads
   * into the step's ids), its pending path and its position (tree:seq) — so the host uploads nothing.
   */
  async continue(steps: number): Promise<BatchChainSubmission> {
    const of = this.continuation;
    if (!of) throw new Error('chained batch speculation: nothing to continue (begin a run first; a verification, flush or start in between ends it)');
    return this.submit(of, steps, false);
  }

  get continuable(): boolean {
    return this.continuation !== undefined;
  }

  /** Runs since creation: runs, steps, the host's ms to each submit and waiting for readbacks, GPU ms, the most runs submitted and not read at once. */
  get stats(): { readonly runs: number; readonly steps: number; readonly encodeMs: number; readonly waitMs: number; readonly gpuMs: number; readonly mostInFlight: number } {
    return { ...this.times };
  }

  /** Ends the continuation (the verifier runs something else); refused while a run is unread. */
  forget(): void {
    if (this.unread > 0) throw new Error(`chained batch speculation: ${this.unread} run(s) submitted and not read; await their results first`);
    this.continuation = undefined;
  }

  destroy(): void {
    for (const b of [this.buffers?.ring, this.buffers?.topo, this.buffers?.params, ...this.staging.map((x) => x.buffer)]) b?.destroy();
  }

  /**
   * Encodes and submits `steps` steps of `of` and starts reading them back after the runs before. `begun`: the host
   * uploaded the first trees and the pending paths the first step commits (the books move now); continued, the first
   * step commits the last run's last paths, which the books follow once that run is read.
   */
  private async submit(of: BatchRunOf, steps: number, begun: boolean): Promise<BatchChainSubmission> {
    const { host } = this;
    const { device } = host.model.gpu;
    const { plan, rows, b, topology, medusaK } = of;
    const t0 = performance.now();
    if (this.unread >= MAX_RUNS_IN_FLIGHT) throw new Error(`chained batch speculation: ${this.unread} runs are in flight and not read, the most there may be; await the oldest's result first`);
    const run = await this.kernel(b, rows, steps, topology, medusaK);
    const layout = chainBatchLayout(b, steps, host.maxNodes, medusaK, host.heads.medusaHeads);
    const slot = this.staging.find((x) => !x.busy) ?? this.staging[this.staging.push({ busy: false }) - 1];
    if (!slot.buffer || slot.buffer.size < layout.bytes) {
      slot.buffer?.destroy();
      slot.buffer = device.createBuffer({ label: `chained batch readback ${this.staging.indexOf(slot)}`, size: Math.max(layout.bytes, 256), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    }
    slot.busy = true;
    const staging = slot.buffer;

    const encoder = device.createCommandEncoder({ label: `chained batch run [${b} × ${rows} rows, ${steps} steps]${begun ? '' : ' continued'}` });
    host.enter(encoder, b);
    const stamps = host.timestamps;
    const pass = encoder.beginComputePass({
      label: 'chained batch run',
      ...(stamps && { timestampWrites: { querySet: stamps.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } }),
    });
    if (begun) host.writePending();
    for (let k = 0; k < steps; k++) {
      (await host.replayed(plan, b, rows, medusaK, k)).replay(pass);
      pass.setPipeline(run.pipeline);
      pass.setBindGroup(0, run.group);
      pass.dispatchWorkgroups(Math.ceil(b / CHAIN_BATCH_WORKGROUP));
    }
    pass.end();
    encoder.copyBufferToBuffer(run.ring, 0, staging, layout.ring, 4 * b * layout.ringWords);
    encoder.copyBufferToBuffer(host.path, 0, staging, layout.path, 4 * b * host.maxNodes);
    layout.medusa.forEach((at, h) => {
      const src = 4 * host.heads.medusaOffset(h);
      encoder.copyBufferToBuffer(host.heads.ids, src, staging, at, 4 * b * medusaK);
      encoder.copyBufferToBuffer(host.heads.probs, src, staging, at + 4 * b * medusaK, 4 * b * medusaK);
    });
    if (stamps) {
      encoder.resolveQuerySet(stamps.querySet, 0, 2, stamps.resolve, 0);
      encoder.copyBufferToBuffer(stamps.resolve, 0, staging, layout.time, 16);
    }
    device.queue.submit([encoder.finish()]);
    if (begun) host.committedPending();
    host.advance(steps);
    this.unread++;
    this.times.mostInFlight = Math.max(this.times.mostInFlight, this.unread);
    this.times.runs++;
    this.times.steps += steps;
    this.times.encodeMs += performance.now() - t0;

    const previous = this.tail;
    const read = async (): Promise<BatchChainResult> => {
      try {
        if (previous) await previous; // a run before that failed leaves nothing this one's books could follow
        const tw = performance.now();
        const data = await host.readBack(staging, layout.bytes, 'chained batch run');
        this.times.waitMs += performance.now() - tw;
        const result = readChainBatch(data, layout, b, topology.depths.length, steps, host.maxNodes, medusaK, host.vocabSize);
        // Continued: the first step committed the last run's last paths. Step k + 1 committed step k's paths; the last
        // step's paths stay pending.
        if (!begun) host.committedPending();
        for (let k = 0; k + 1 < steps; k++) host.committedLengths(result.lengths.map((l) => l[k]));
        host.leftPending(result.lastPaths, result.lastTokens, topology, plan, rows);
        let gpuMs: number | undefined;
        if (stamps) {
          const [t1, t2] = new BigUint64Array(data, layout.time, 2);
          if (t1 > 0n && t2 >= t1) this.times.gpuMs += gpuMs = Number(t2 - t1) / 1e6;
        }
        return { steps: result.steps, medusa: result.medusa, ...(gpuMs !== undefined && { gpuMs }) };
      } finally {
        this.unread--;
        slot.busy = false;
      }
    };
    const result = read();
    this.tail = result;
    result.catch(() => undefined); // the caller awaits it; a failure must not also surface as unhandled here
    return { steps, result };
  }

  /** The chain kernel's pipeline, its ring, topology and params written for this run, and its bind group for the plan. */
  private async kernel(b: number, rows: number, steps: number, topology: StaticTopology, medusaK: number): Promise<{ pipeline: GPUComputePipeline; group: GPUBindGroup; ring: GPUBuffer }> {
    const { host } = this;
    const { gpu } = host.model;
    const { device } = gpu;
    const ringWords = chainBatchRingWords(steps, host.maxNodes);
    if (!this.buffers) {
      const pipeline = await compileKernel(gpu, { label: 'chained batch acceptance', code: chainBatchWgsl(), bindings: ['storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'storage', 'storage', 'read-only-storage', 'uniform'] });
      const buffer = (label: string, size: number, usage: number) => device.createBuffer({ label, size, usage });
      this.buffers = {
        pipeline,
        ring: buffer('chained batch ring', 4 * host.maxBatch * chainBatchRingWords(MAX_CHAIN_STEPS, host.maxNodes), BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST),
        topo: buffer('chained batch topology', 8 * host.maxNodes, BufferUsage.STORAGE | BufferUsage.COPY_DST),
        params: buffer('chained batch params', 32, BufferUsage.UNIFORM | BufferUsage.COPY_DST),
        groups: new Map(),
      };
    }
    const cb = this.buffers;
    const topo = new Uint32Array(2 * rows);
    for (let n = 0; n < rows; n++) {
      topo[2 * n] = n < topology.depths.length ? topology.depths[n] : 1;
      topo[2 * n + 1] = n > 0 && n < topology.depths.length ? topology.ranks[n] : 0xffffffff;
    }
    // Queue order: after the runs before have read the ring (their copies are in their own submits), before this one.
    device.queue.writeBuffer(cb.topo, 0, topo);
    device.queue.writeBuffer(cb.params, 0, Uint32Array.of(b, rows, host.vocabSize, host.maxNodes, host.maxBatch * MAX_TOP_K, medusaK, ringWords, 0));
    device.queue.writeBuffer(cb.ring, 0, new Uint32Array(b * ringWords)); // each sequence's step count starts at 0
    const plan = await host.model.planStep(b, rows, { pickRows: true, qkvPerLayer: true });
    let group = cb.groups.get(plan);
    if (!group) {
      group = device.createBindGroup({
        label: 'chained batch acceptance',
        layout: cb.pipeline.getBindGroupLayout(0),
        entries: [plan.ids, host.parents, plan.rowTokens!, host.heads.accepted, host.heads.ids, host.path, host.seqCommit, cb.ring, cb.topo, cb.params].map((buffer, binding) => ({ binding, resource: { buffer } })),
      });
      cb.groups.set(plan, group);
    }
    return { pipeline: cb.pipeline, group, ring: cb.ring };
  }
}
