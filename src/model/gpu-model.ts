// The decoder LM on the GPU. Weights are uploaded once; a batch of b sequences keeps one attention state
// per layer on the GPU; every step — the whole prompt at prefill, one token per sequence when decoding —
// is one compute pass in one command buffer, one submit (a greedy run of decode steps: one pass each, one
// command buffer). The next token is chosen on the GPU (argmax, or sampling with an uploaded uniform draw) and
// written where the next step's embedding reads it, so the only readback is the b token ids (plus two
// timestamps when timing) — once per run of steps — which the host may read while the GPU already runs the
// next steps.
import { compileModelKernels, KEEP_WORKGROUP, samplingConfigBuffer, writeSamplingConfig, type ModelKernels } from '../runtime/model-kernels.ts';
import { BufferUsage, MapMode, throwIfDeviceErrors, type Gpu } from '../runtime/device.ts';
import { downloadTensor } from '../runtime/gpu-tensor.ts';
import { rng, type TensorData } from '../tensor.ts';
import type { ModelConfig } from './config.ts';
import type { GpuAttention, GpuAttentionFactory, GpuAttentionState } from '../runtime/gpu-attention.ts';
import { RecordingPass } from './gpu-pass.ts';
import { prefillCuts } from './prefill-submits.ts';
import { RecordedStep } from './step-recording.ts';
import { buildStepPlan, destroyStepPlan, encodeStep, stepWritesLogits, type BatchBuffers, type StepPlan, type StepPlanExtras, type TokenPick, type TokenSource } from './gpu-step-plan.ts';
import { checkModelFits, createExactTensor, destroyModelWeights, uploadModelWeights, type GpuModelWeights } from './gpu-weights.ts';
import { weightBufferLimit } from './weight-parts.ts';
import { sequenceData } from '../runtime/tree-attention.ts';
import type { SamplingOptions } from './sampling.ts';
import type { ModelWeights } from './weights.ts';

export interface GpuModelOptions {
  /** Time each step's pass with timestamp queries (default: when the adapter has them). */
  readonly timestamps?: boolean;
  /**
   * Prefill shapes (b, t) kept planned besides the decode plans, the least recently used freed first: always the last
   * `cachedPrefillPlans` (default 2), and more while their rows (b·t) add up to at most `cachedPrefillRows` (default:
   * the rows whose activations take about PREFILL_CACHE_BYTES, 6,241 rows of the 12-layer hidden-768 model, 1,165 of
   * LLaMA-2-7B's; at most 64 shapes) — continuous batching prefills every new prompt length on its own
   * (prefillSequence), and a plan built again costs milliseconds of host time.
   */
  readonly cachedPrefillPlans?: number;
  readonly cachedPrefillRows?: number;
  /** Shapes of planStep (speculative tree sizes) kept planned; older ones are freed. Default 12. */
  readonly cachedExtraPlans?: number;
  /**
   * Bytes one weight buffer may hold, below the adapter's binding limit: tests lower it so that the tiny models'
   * embedding and LM head are stored, gathered from and multiplied in parts, as a 7B model's are on a real GPU.
   */
  readonly maxWeightBuffer?: number;
  /** Bytes all weights together may take (checkModelFits: WebGPU does not report the adapter's memory). */
  readonly maxWeightBytes?: number;
  /** The checkpoint's Medusa heads will be uploaded beside the model (a tree verifier's): they count in the up-front check. */
  readonly withMedusa?: boolean;
  /**
   * Submit a long prefill in pieces as they are encoded, so the GPU starts before the host has encoded every
   * layer (prefill-submits.ts). Default: on a hardware adapter (a software one runs the kernels on the host's own
   * cores, and lavapipe's submit records the work: 8.4 ms for one command buffer of a 512-token prefill, 18.6 in
   * three); false keeps one command buffer (bench/decode.ts --one-submit).
   */
  readonly splitPrefill?: boolean;
}

/** How the next token is chosen: temperature 0 (the default) is greedy; `seed` seeds the uniform draws. */
export interface DecodeSampling extends SamplingOptions {
  readonly seed?: number;
  /** The uniform draws themselves (takes precedence over seed): a speculative run hands over its own stream. */
  readonly random?: () => number;
}

/** Submits (single steps or runs) that may be made before the oldest one's tokens must have been read. */
export const READBACK_RING = 4;
/**
 * Decode steps one readback covers by default (generate's runs, decodeRun): mapping a buffer and waiting for its
 * promise costs the host about as much as a submit, so a run reads all its steps' tokens with one map (and a greedy
 * run is one submit). With RUNS_IN_FLIGHT runs submitted: on the H200 (call 48, bench/decode-pipeline.ts, 7 rounds
 * alternating, 12-layer model) runs of 8 with 4 in flight decoded 2,301 tokens/s at batch 1 where runs of 4 with 2 in
 * flight decoded 2,159 (2,420 against 2,152 with no timestamps written), and batch 8 was unchanged (11,253 / 11,096).
 */
export const RUN_STEPS = 8;
/** Runs generate keeps submitted and unread (1..READBACK_RING): the GPU has work queued while the host reads one. */
export const RUNS_IN_FLIGHT = 4;
/**
 * The longest run a readback slot holds (decodeRun, generate's stepsPerReadback), for runs longer than the default
 * where the host is slow to learn a run has finished (bench/decode-pipeline.ts sweeps them). A greedy run chains
 * in one command buffer only up to the attention layers' chainedSteps.
 */
export const MAX_RUN_STEPS = 16;
/** Prefill shapes kept planned at most, whatever their rows (GpuModelOptions.cachedPrefillRows). */
const MAX_CACHED_PREFILLS = 64;
/** About how many bytes of activations the kept prefill plans may hold by default (GpuModelOptions.cachedPrefillRows). */
const PREFILL_CACHE_BYTES = 256 * 1024 * 1024;
/** The furthest sequence's position: the batch's plus the largest offset (setSequenceOffsets). */
const furthest = (session: Session) => session.position + (session.offsets ? Math.max(...session.offsets.values) : 0);

const TIMESTAMP_STRIDE = 256; // resolveQuerySet's destination offset alignment

interface ReadbackSlot {
  /** u32 tokens of step i at i·tokenStride, then two u64 timestamps per step at timestampOffset + 16·i. */
  readonly staging: GPUBuffer;
  state: 'idle' | 'written' | 'mapping';
  generation: number;
}

interface Batch extends BatchBuffers {
  readonly slots: readonly ReadbackSlot[];
  /** Host copy of this step's uniform draws (sampling), reused every step. */
  readonly draws: Float32Array<ArrayBuffer>;
  next: number;
  /** A chained run's tokens, step i's at i·tokenStride, and the bind groups that keep step i's there. */
  readonly kept: GPUBuffer;
  readonly keepGroups: readonly GPUBindGroup[];
  /** Bytes per step's tokens in a staging buffer and in `kept` (aligned for a storage binding's offset), and where the timestamps start. */
  readonly tokenStride: number;
  readonly timestampOffset: number;
  readonly querySet?: GPUQuerySet;
  readonly resolve?: GPUBuffer;
}

interface Session {
  readonly batch: Batch;
  readonly states: GpuAttentionState[];
  position: number;
  /** Decode steps recorded once for replay, by token source, pick, keepLogits and the layers' variants (step-recording.ts). */
  readonly recorded: Map<string, RecordedStep>;
  /** Whether the last step submitted wrote the batch's logits (readLogits). */
  logitsWritten: boolean;
  /** Each sequence's offset past `position` (setSequenceOffsets) and the buffer the layers read them from; none: 0 for all. */
  offsets?: { readonly values: readonly number[]; readonly buffer: GPUBuffer };
}

/** Host-side times of one step, in ms; gpuMs once its tokens were read (timestamps only). */
export interface StepTiming {
  /**
   * Prefill only: before encoding — checking and packing the prompt, awaiting the (cached) plans, the layers'
   * fresh states when none could be reset, uploading the ids.
   */
  prepareMs?: number;
  /** Host time encoding (every piece of a prefill submitted in pieces), and submitting. */
  readonly encodeMs: number;
  readonly submitMs: number;
  /** Command buffers the step was submitted in (a long prefill: prefill-submits.ts). */
  readonly commandBuffers: number;
  /** From the start of encoding until the first command buffer was submitted: the host's time before the GPU can start. */
  readonly firstSubmitMs: number;
  /** Waiting in tokens() for the GPU and the map. */
  waitMs?: number;
  /** GPU time of the step's passes (summed over a prefill's pieces, so gaps where the GPU waited are not in it). */
  gpuMs?: number;
}

/** A submitted step, or a run of decode steps (decodeRun). Its tokens stay on the GPU until tokens() reads them. */
export class StepHandle {
  private read: Promise<number[]> | undefined;

  constructor(
    readonly kind: 'prefill' | 'decode',
    /** Sequences, and new tokens per sequence. */
    readonly b: number,
    readonly t: number,
    /** Sequence length after this step (after the run's last step). */
    readonly position: number,
    /** Dispatches recorded per step, the attention variant's included. */
    readonly dispatches: number,
    /** One per step of the run. */
    readonly timings: readonly StepTiming[],
    private readonly gpu: Gpu,
    private readonly slot: ReadbackSlot,
    private readonly generation: number,
    /** passes: timed passes per step (a prefill's pieces; 1 for decode), their timestamp pairs in a row. */
    private readonly layout: { readonly tokenStride: number; readonly timestampOffset: number | undefined; readonly passes: number },
  ) {}

  /** Steps in this handle (1 unless made by decodeRun). */
  get steps(): number {
    return this.timings.length;
  }

  /** The (first) step's host times. */
  get timing(): StepTiming {
    return this.timings[0];
  }

  /**
   * The b chosen token ids of each step, step after step (steps · b ids; the only readback); resolves when
   * the GPU finished the last step. Call it right after the submit even if the ids are awaited later: a map
   * waits for all work submitted before it starts, so starting it after the next submit would wait for that
   * one as well.
   */
  tokens(): Promise<number[]> {
    this.read ??= this.readBack();
    return this.read;
  }

  private async readBack(): Promise<number[]> {
    const { slot } = this;
    if (slot.generation !== this.generation) {
      throw new Error(`the readback slot of this ${this.kind} step was reused: read a step's tokens within ${READBACK_RING} submits`);
    }
    slot.state = 'mapping';
    const t0 = performance.now();
    try {
      await slot.staging.mapAsync(MapMode.READ);
    } catch (e) {
      slot.state = 'idle';
      throwIfDeviceErrors(this.gpu, `${this.kind} step`);
      throw new Error(`${this.kind} step: reading the tokens back failed: ${(e as Error).message}`);
    }
    this.timings[this.steps - 1].waitMs = performance.now() - t0;
    const data = slot.staging.getMappedRange();
    const { tokenStride, timestampOffset, passes } = this.layout;
    const ids: number[] = [];
    for (let i = 0; i < this.steps; i++) ids.push(...new Uint32Array(data, i * tokenStride, this.b));
    if (timestampOffset !== undefined) {
      this.timings.forEach((timing, i) => {
        const pairs = new BigUint64Array(data, timestampOffset + 16 * i * passes, 2 * passes);
        let ns = 0n;
        for (let j = 0; j < passes; j++) {
          const [begin, end] = [pairs[2 * j], pairs[2 * j + 1]];
          if (!(begin > 0n && end >= begin)) return;
          ns += end - begin;
        }
        timing.gpuMs = Number(ns) / 1e6;
      });
    }
    slot.staging.unmap();
    slot.state = 'idle';
    throwIfDeviceErrors(this.gpu, `${this.kind} step`);
    return ids;
  }
}

/** A prompt prefilled on a state of its own, in no sequence yet (GpuModel.prefillAside; placed by placeAside). */
export interface AsidePrefill {
  /** The prompt's tokens: the position it takes in a sequence. */
  readonly length: number;
  /** Its prefill: tokens() is [the prompt's chosen token]. */
  readonly step: StepHandle;
}

export class GpuModel {
  private readonly batches = new Map<number, Batch>();
  private readonly plans = new Map<string, Promise<StepPlan>>();
  /** Prefill plans' keys and rows (b·t), least recently used first. */
  private readonly prefillKeys: { readonly key: string; readonly rows: number }[] = [];
  private readonly extraKeys: string[] = [];
  /** forwardLogits' attention states, per batch size. */
  private readonly forwardStates = new Map<number, GpuAttentionState[]>();
  private session: Session | undefined;
  /** setSequenceOffsets' buffers, per batch size. */
  private readonly offsetBuffers = new Map<number, GPUBuffer>();
  /** prefillSequence's one-sequence attention states, reset for each prompt. */
  private sequenceStates: GpuAttentionState[] | undefined;
  /** prefillAside's one-sequence states and chosen-token buffers not in use, and what each aside not placed holds. */
  private readonly asideStates: GpuAttentionState[][] = [];
  private readonly asideTokens: GPUBuffer[] = [];
  private readonly asides = new Map<AsidePrefill, { readonly states: GpuAttentionState[]; readonly chosen: GPUBuffer }>();
  private sampling: DecodeSampling = { temperature: 0 };
  /**
   * Whether greedy steps write the logits readLogits reads. Off (the default), a greedy one-token step picks its
   * tokens in the LM head's argmax epilogue and writes no logits (gpu-step-plan.ts's argmaxHead); sampling always
   * writes them. Tests that read a greedy step's logits turn it on.
   */
  keepLogits = false;
  private random: () => number = rng(0);
  private readonly samplingConfig: GPUBuffer;
  private readonly timestamps: boolean;

  private constructor(
    readonly gpu: Gpu,
    readonly config: ModelConfig,
    readonly weights: GpuModelWeights,
    private readonly kernels: ModelKernels,
    readonly attention: readonly GpuAttention[],
    private readonly options: GpuModelOptions,
  ) {
    this.samplingConfig = samplingConfigBuffer(gpu.device, 'sampling config');
    this.timestamps = (options.timestamps ?? gpu.hasTimestamps) && gpu.hasTimestamps;
  }

  /** Bytes one weight buffer may hold (options.maxWeightBuffer, if lower than the adapter's): weights uploaded beside the model's (the Medusa heads) split at the same limit. */
  get maxWeightBuffer(): number {
    return weightBufferLimit(this.gpu, this.options.maxWeightBuffer);
  }

  /** Uploads the weights, compiles the kernels and makes each layer's attention through `attention`. */
  static async create(
    gpu: Gpu,
    config: ModelConfig,
    weights: ModelWeights<TensorData>,
    attention: GpuAttentionFactory,
    options: GpuModelOptions = {},
  ): Promise<GpuModel> {
    const upload = {
      ...(options.maxWeightBuffer !== undefined && { maxWeightBuffer: options.maxWeightBuffer }),
      ...(options.maxWeightBytes !== undefined && { maxWeightBytes: options.maxWeightBytes }),
      ...(options.withMedusa !== undefined && { withMedusa: options.withMedusa }),
    };
    // Before compiling or allocating anything: a model that cannot fit is refused with nothing to undo.
    checkModelFits(gpu, config, weights, upload);
    const kernels = await compileModelKernels(gpu, {
      hidden: config.hiddenSize,
      intermediate: config.intermediateSize,
      vocab: config.vocabSize,
      eps: config.rmsNormEps,
    });
    const onGpu = uploadModelWeights(gpu, config, weights, upload);
    try {
      const layers = onGpu.layers.map((l, n) => {
        const params = Object.fromEntries(Object.entries(l.attention).map(([name, t]) => [name, t.buffer]));
        const a = attention(n, params);
        if (a.heads !== config.numHeads || a.headDim !== config.headDim) {
          throw new Error(
            `attention layer ${n} has ${a.heads} heads of ${a.headDim}, but ${config.file} has num_attention_heads ${config.numHeads}, head_dim ${config.headDim}`,
          );
        }
        return a;
      });
      return new GpuModel(gpu, config, onGpu, kernels, layers, options);
    } catch (e) {
      destroyModelWeights(onGpu);
      throw e;
    }
  }

  /** Sequences in the current batch (0 before the first prefill). */
  get batchSize(): number {
    return this.session?.batch.b ?? 0;
  }

  /** Tokens per sequence folded into the state so far. */
  get position(): number {
    return this.session?.position ?? 0;
  }

  /** Bytes a decode step reads for one sequence: every weight once (the bandwidth bound's numerator). */
  get weightBytesPerToken(): number {
    return this.weights.bytesPerToken;
  }

  get hasTimestamps(): boolean {
    return this.timestamps;
  }

  /**
   * Whether later steps write timestamps, on a model that has them: a bench times `linattn generate`'s loop, which
   * runs without (the query writes, resolve and copy of each step cost it 5 % at batch 1 on the H200, call 48), on
   * the model it also takes GPU times with.
   */
  stampSteps = true;

  /** Runs `work` with stampSteps set to `on`, then restores it (one generation or plain run without timestamps). */
  async withStepTimes<T>(on: boolean, work: () => Promise<T>): Promise<T> {
    const stamped = this.stampSteps;
    this.stampSteps = on;
    try {
      return await work();
    } finally {
      this.stampSteps = stamped;
    }
  }

  /** Decode steps recorded for replay since creation, and the host ms recording them took (benches). */
  readonly recordings = { count: 0, ms: 0 };
  /** Step plans built (decode, prefill and planStep shapes), each a few milliseconds of host time: benches and tests. */
  plansBuilt = 0;

  /** Sets how later steps choose tokens; a seed restarts the stream of uniform draws. */
  setSampling(s: DecodeSampling): void {
    const temperature = s.temperature ?? 0;
    if (temperature > 0) writeSamplingConfig(this.gpu.device.queue, this.samplingConfig, { temperature, topK: s.topK ?? 0, topP: s.topP ?? 1 });
    else if (!(temperature === 0)) throw new Error(`temperature must be >= 0, got ${temperature}`);
    this.sampling = { ...s, temperature };
    if (s.random) this.random = s.random;
    else if (s.seed !== undefined) this.random = rng(s.seed);
  }

  /**
   * Starts a batch: every sequence's prompt (equal lengths) through every layer in one submit, from fresh
   * attention state. The returned step's tokens are each sequence's next token, chosen on the GPU.
   */
  async prefill(tokens: readonly (readonly number[])[], sampling?: DecodeSampling): Promise<StepHandle> {
    const started = performance.now();
    const { b, t, ids } = this.promptIds(tokens, 'prefill');
    if (sampling) this.setSampling(sampling);
    const batch = this.batch(b);
    const [plan, decodePlan] = await Promise.all([this.plan(batch, t, false), this.plan(batch, 1, false)]);
    this.ready.set(this.planKey(b, 1, false), decodePlan);
    // The previous batch's states, when of the same b, are zeroed on the GPU in this prefill's command buffer
    // rather than made anew: no buffers, zero uploads or bind groups per prompt. Steps already submitted on them
    // run first; the previous session is dropped here, so nothing records on it afterwards.
    const previous = this.session;
    const reuse = previous !== undefined && previous.batch === batch && this.attention.every((a) => a.resetState);
    const session: Session = { batch, states: reuse ? previous.states : this.attention.map((a) => a.createState(b)), position: 0, recorded: new Map(), logitsWritten: false };
    this.session = session;
    this.gpu.device.queue.writeBuffer(plan.ids, 0, ids);
    const reset = reuse ? (encoder: GPUCommandEncoder) => this.attention.forEach((a, n) => a.resetState!(session.states[n], encoder)) : undefined;
    return this.submit('prefill', plan, session, 'ids', 1, false, { started, ...(reset && { before: reset }) });
  }

  /**
   * Records the prefill of `tokens` into `pass` as prefill() encodes it, without submitting it, on states of its
   * own at position 0 (the session's are untouched; the batch's chosen tokens are overwritten when it runs): for
   * runtime/dispatch-profile.ts, whose replays run it once per repetition.
   */
  async recordPrefill(pass: GPUComputePassEncoder, tokens: readonly (readonly number[])[]): Promise<void> {
    const { b, t, ids } = this.promptIds(tokens, 'recordPrefill');
    const plan = await this.plan(this.batch(b), t, false);
    const states = this.attention.map((a) => a.createState(b));
    this.gpu.device.queue.writeBuffer(plan.ids, 0, ids);
    encodeStep(pass, plan, this.attention, states, 'ids', this.pick(), this.logitsOption());
  }

  /** A batch of prompts as [b, t] u32 ids, checked: equal lengths, ids in the vocabulary, within the model's length. */
  private promptIds(tokens: readonly (readonly number[])[], what: string): { b: number; t: number; ids: Uint32Array<ArrayBuffer> } {
    const b = tokens.length;
    if (b === 0) throw new Error(`${what}: no sequences`);
    const t = tokens[0].length;
    if (t === 0) throw new Error(`${what}: empty prompt`);
    const ids = new Uint32Array(b * t);
    tokens.forEach((seq, s) => {
      if (seq.length !== t) throw new Error(`${what}: sequence ${s} has ${seq.length} tokens, sequence 0 has ${t} (prompts of a batch must have equal lengths)`);
      seq.forEach((id, i) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) throw new Error(`${what}: token ${id} at [${s}, ${i}] is outside [0, ${this.config.vocabSize})`);
        ids[s * t + i] = id;
      });
    });
    this.checkLength(t, what);
    return { b, t, ids };
  }

  /**
   * One token per sequence through the model, one submit: by default the tokens the previous step chose
   * (never read back); `tokens` uploads given ones instead (teacher forcing in tests).
   */
  decodeStep(opts: { tokens?: readonly number[] } = {}): StepHandle {
    const session = this.session;
    if (!session) throw new Error('decodeStep: no batch yet; call prefill first');
    const { b } = session.batch;
    this.checkLength(furthest(session) + 1, 'decodeStep');
    const plan = this.readyPlan(session.batch, 1);
    let source: TokenSource = 'next';
    if (opts.tokens) {
      if (opts.tokens.length !== b) throw new Error(`decodeStep: ${opts.tokens.length} tokens for a batch of ${b}`);
      for (const id of opts.tokens) {
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) throw new Error(`decodeStep: token ${id} is outside [0, ${this.config.vocabSize})`);
      }
      this.gpu.device.queue.writeBuffer(plan.ids, 0, Uint32Array.from(opts.tokens));
      source = 'ids';
    }
    return this.submit('decode', plan, session, source);
  }

  /**
   * One decode step in which sequence s reads `forced[s]` where it is given and, like decodeStep(), the token the
   * previous step chose otherwise — nothing read back in between (prompts of different lengths: ragged-prompts.ts).
   * The forced tokens replace the previous step's picks on the GPU, queue-ordered between the two steps: their rows
   * copied from the embedding table over the rows the picks wrote (or, where the picks write ids only, their ids).
   */
  decodeStepForcing(forced: readonly (number | undefined)[]): StepHandle {
    const session = this.session;
    if (!session) throw new Error('decodeStepForcing: no batch yet; call prefill first');
    const { b } = session.batch;
    if (forced.length !== b) throw new Error(`decodeStepForcing: ${forced.length} entries for a batch of ${b}`);
    this.checkLength(furthest(session) + 1, 'decodeStepForcing');
    const plan = this.readyPlan(session.batch, 1);
    const { device } = this.gpu;
    const H = this.config.hiddenSize;
    const table = this.weights.embedTokens.parts.length === 1 ? this.weights.embedTokens.parts[0].tensor.buffer : undefined;
    const rows = session.batch.decodeRows;
    const encoder = this.chosenSource(plan) === 'embedded' && table && rows ? device.createCommandEncoder({ label: 'forced tokens\' rows' }) : undefined;
    const bad = forced.find((id) => id !== undefined && !(Number.isInteger(id) && id >= 0 && id < this.config.vocabSize));
    if (bad !== undefined) throw new Error(`decodeStepForcing: token ${bad} is outside [0, ${this.config.vocabSize})`);
    forced.forEach((id, s) => {
      if (id === undefined) return;
      device.queue.writeBuffer(session.batch.nextTokens, 4 * s, Uint32Array.of(id));
      encoder?.copyBufferToBuffer(table!, 4 * H * id, rows!.buffer, 4 * H * s, 4 * H);
    });
    if (encoder) device.queue.submit([encoder.finish()]);
    return this.submit('decode', plan, session, 'next');
  }

  /**
   * `steps` (1…MAX_RUN_STEPS) decode steps, each reading the tokens the previous one chose on the GPU, whose tokens
   * are read back together: tokens() gives steps · b ids, step after step. Greedy steps share one command
   * buffer when the layers can chain them (see submit), unless `chain` is false (a submit per step).
   */
  decodeRun(steps: number, opts: { chain?: boolean } = {}): StepHandle {
    const session = this.session;
    if (!session) throw new Error('decodeRun: no batch yet; call prefill first');
    if (!(Number.isInteger(steps) && steps >= 1 && steps <= MAX_RUN_STEPS)) throw new Error(`decodeRun: steps must be an integer in 1..${MAX_RUN_STEPS}, got ${steps}`);
    this.checkLength(furthest(session) + steps, 'decodeRun');
    return this.submit('decode', this.readyPlan(session.batch, 1), session, 'next', steps, opts.chain ?? true);
  }

  /**
   * Records the decode step decodeStep() would submit into `pass` without submitting it or advancing: for
   * runtime/dispatch-profile.ts, whose replays then run it (on the state) once per repetition.
   */
  recordDecodeStep(pass: GPUComputePassEncoder): void {
    const session = this.session;
    if (!session) throw new Error('recordDecodeStep: no batch yet; call prefill first');
    const plan = this.readyPlan(session.batch, 1);
    const source = this.chosenSource(plan);
    const recorded = this.recordedStep(plan, session, source, this.pick());
    if (recorded) recorded.replay(pass);
    else encodeStep(pass, plan, this.attention, session.states, source, this.pick(), this.logitsOption());
  }

  /** The matmuls of the decode step decodeStep() runs (the profile's weight traffic per matmul). */
  get decodeMatmuls(): StepPlan['matmuls'] {
    const session = this.session;
    if (!session) throw new Error('decodeMatmuls: no batch yet; call prefill first');
    return this.readyPlan(session.batch, 1).matmuls;
  }

  /** The last step's logits at each sequence's last position, [b, vocab] (a debugging readback; see keepLogits). */
  async readLogits(): Promise<Float32Array> {
    if (!this.session) throw new Error('readLogits: no step has run');
    if (!this.session.logitsWritten) throw new Error("readLogits: the last step chose its tokens in the LM head's argmax epilogue and wrote no logits; set keepLogits first");
    return downloadTensor(this.gpu, this.session.batch.logits);
  }

  /** Logits at every position, [b, t, vocab], from fresh state; the current batch is left untouched. */
  async forwardLogits(tokens: readonly (readonly number[])[]): Promise<Float32Array> {
    const b = tokens.length;
    const t = tokens[0]?.length ?? 0;
    if (b === 0 || t === 0) throw new Error('forwardLogits: no tokens');
    const ids = Uint32Array.from(tokens.flatMap((seq, s) => {
      if (seq.length !== t) throw new Error(`forwardLogits: sequence ${s} has ${seq.length} tokens, sequence 0 has ${t}`);
      return seq.map((id, i) => {
        if (!Number.isInteger(id) || id < 0 || id >= this.config.vocabSize) throw new Error(`forwardLogits: token ${id} at [${s}, ${i}] is outside [0, ${this.config.vocabSize})`);
        return id;
      });
    }));
    const plan = await this.plan(this.batch(b), t, true);
    this.gpu.device.queue.writeBuffer(plan.ids, 0, ids);
    const encoder = this.gpu.device.createCommandEncoder({ label: `forward logits [b=${b} t=${t}]` });
    // States of its own per b, zeroed in this command buffer when the layers can reset them (an evaluation calls
    // this window after window): the session's are never touched.
    let states = this.forwardStates.get(b);
    if (states && this.attention.every((a) => a.resetState)) this.attention.forEach((a, n) => a.resetState!(states![n], encoder));
    else this.forwardStates.set(b, (states = this.attention.map((a) => a.createState(b))));
    const pass = new RecordingPass(encoder.beginComputePass({ label: `forward logits [b=${b} t=${t}]` }));
    encodeStep(pass.asPass(), plan, this.attention, states, 'ids', 'none');
    pass.end();
    this.gpu.device.queue.submit([encoder.finish()]);
    this.attention.forEach((a, n) => a.advance(states[n], t));
    return downloadTensor(this.gpu, plan.logits);
  }

  /**
   * A step plan of b sequences × t rows with every row's logits and `extras` (speculative tree verification:
   * src/speculative/gpu-verifier.ts records it with the tree kernels as the attention). Cached per shape;
   * the least recently used of more than `cachedExtraPlans` is freed once work submitted with it completes.
   */
  planStep(b: number, t: number, extras: StepPlanExtras): Promise<StepPlan> {
    const key = `${this.planKey(b, t, true)}:${extras.pickRows ? 'pick' : ''}:${extras.qkvPerLayer ? 'qkv' : ''}`;
    const i = this.extraKeys.indexOf(key);
    if (i >= 0) this.extraKeys.splice(i, 1);
    this.extraKeys.push(key);
    let plan = this.plans.get(key);
    if (!plan) {
      plan = buildStepPlan(this.gpu, this.config, this.kernels, this.weights, this.batch(b), t, true, extras);
      this.plansBuilt++;
      this.plans.set(key, plan);
      plan.catch(() => this.plans.delete(key));
    }
    while (this.extraKeys.length > (this.options.cachedExtraPlans ?? 12)) {
      const old = this.extraKeys.shift()!;
      const evicted = this.plans.get(old);
      this.plans.delete(old);
      void evicted?.then(destroyStepPlan, () => undefined);
    }
    return plan;
  }

  /** Each layer's attention state of the current batch (the tree kernels read and commit into their buffers). */
  get attentionStates(): readonly GpuAttentionState[] {
    if (!this.session) throw new Error('attentionStates: no batch yet; call prefill first');
    return this.session.states;
  }

  /**
   * Host bookkeeping after the caller's own submitted commands folded t more tokens into every layer's
   * state (a speculative commit): the layers' positions and the batch's advance by t.
   */
  advance(t: number): void {
    const session = this.session;
    if (!session) throw new Error('advance: no batch yet; call prefill first');
    if (!Number.isInteger(t) || t < 0) throw new Error(`advance: ${t} tokens`);
    this.checkLength(furthest(session) + t, 'advance');
    for (let n = 0; n < this.attention.length; n++) this.attention[n].advance(session.states[n], t);
    session.position += t;
  }

  /**
   * Each sequence's position from here on: sequence s at position + offsets[s] (non-negative integers, one per
   * sequence), where a speculative batch that committed paths of their own lengths left the layers' state
   * (GpuTreeVerifier.sequenceOffsets after a flush); later decode steps read and write each sequence's own positions,
   * one token a step. All zeros or null: one position for the batch. The offsets stay until changed or the next
   * prefill; whoever moves the state otherwise (the verifier's commits) sets them again before decoding. Refused
   * (before anything changes) by a layer that keeps one position for the batch, such as softmax attention.
   */
  async setSequenceOffsets(offsets: readonly number[] | null): Promise<void> {
    const session = this.session;
    if (!session) throw new Error('setSequenceOffsets: no batch yet; call prefill first');
    const { b } = session.batch;
    if (offsets && offsets.length !== b) throw new Error(`setSequenceOffsets: ${offsets.length} offsets for a batch of ${b}`);
    const bad = offsets?.findIndex((o) => !(Number.isInteger(o) && o >= 0));
    if (offsets && bad !== undefined && bad >= 0) throw new Error(`setSequenceOffsets: sequence ${bad}'s offset ${offsets[bad]} is not a non-negative integer`);
    const values = offsets && offsets.some((o) => o > 0) ? [...offsets] : null;
    const known = session.offsets?.values;
    if (values === null ? known === undefined : known !== undefined && known.every((o, s) => o === values[s])) return;
    if (values) {
      const refusing = this.attention.findIndex((a) => !a.useSequenceOffsets);
      if (refusing >= 0) throw new Error(`setSequenceOffsets: attention layer ${refusing} keeps one position for the batch`);
      this.checkLength(session.position + Math.max(...values), 'setSequenceOffsets');
    }
    const buffer = values ? this.offsetsBuffer(b) : null;
    if (values) this.gpu.device.queue.writeBuffer(buffer!, 0, sequenceData(values));
    const set = await Promise.allSettled(this.attention.map((a, n) => a.useSequenceOffsets?.(session.states[n], buffer)));
    const failed = set.find((r) => r.status === 'rejected');
    if (failed) {
      // A layer refused (after others took the offsets): every layer back to the offsets it had.
      await Promise.all(this.attention.map((a, n) => a.useSequenceOffsets?.(session.states[n], session.offsets?.buffer ?? null)));
      throw new Error(`setSequenceOffsets: ${(failed.reason as Error).message}`);
    }
    if (values) session.offsets = { values, buffer: buffer! };
    else delete session.offsets;
  }

  /**
   * Continuous batching: `tokens` (a new prompt) prefilled in sequence s's place, chunked as prefill() runs a prompt,
   * while the others go on where they are. The prompt runs through the model on a one-sequence state of its own,
   * which then replaces sequence s's part of every layer's state, and its chosen token becomes sequence s's next
   * input; all queue-ordered after the steps already submitted (which may still run s on its old contents) and
   * before any submitted later. The returned step's tokens() is [the prompt's chosen token]; when sampling, `draw` is
   * its uniform (default: the model's stream).
   */
  async prefillSequence(s: number, tokens: readonly number[], opts: { readonly draw?: number } = {}): Promise<StepHandle> {
    const session = this.sequenceSession(s, 'prefillSequence');
    const { b } = session.batch;
    const { t, ids } = this.promptIds([tokens], 'prefillSequence');
    const one = this.batch(1);
    const plan = await this.plan(one, t, false);
    // The one-sequence states are kept and zeroed on the GPU for each prompt where every layer can reset its state.
    const reusable = this.attention.every((a) => a.resetState);
    const states = reusable && this.sequenceStates ? this.sequenceStates : this.attention.map((a) => a.createState(1));
    if (reusable) this.sequenceStates = states;
    await this.placeSequence(session, s, t, 'prefillSequence');
    const handle = this.submitOneSequence(plan, states, ids, opts.draw, reusable);
    const encoder = this.gpu.device.createCommandEncoder({ label: `prefilled sequence into ${s} of ${b}` });
    this.copyStates(encoder, states, session, s, 'prefillSequence');
    if (one !== session.batch) {
      // The prompt's chosen token (and its embedding row, where the picks write rows) as sequence s's next input.
      const H = this.config.hiddenSize;
      encoder.copyBufferToBuffer(one.nextTokens, 0, session.batch.nextTokens, 4 * s, 4);
      if (one.decodeRows && session.batch.decodeRows) encoder.copyBufferToBuffer(one.decodeRows.buffer, 0, session.batch.decodeRows.buffer, 4 * H * s, 4 * H);
    }
    this.gpu.device.queue.submit([encoder.finish()]);
    return handle;
  }

  /**
   * Continuous batching, ahead of time: `tokens` (a prompt waiting for a sequence) prefilled on a one-sequence state
   * of its own, its chosen token (and embedding row) kept beside it, while the batch goes on; placeAside later puts
   * it in the sequence that frees, with buffer copies and no prefill. So a server encodes a waiting prompt's prefill
   * and reads its token while the GPU runs the batch, not in the pause between two of its steps. Refused while the
   * batch is one sequence (its steps and a one-sequence prefill share the buffers that hold a chosen token). The
   * returned aside's step.tokens() is [the prompt's chosen token], already being read; when sampling, `draw` is its
   * uniform (default: the model's stream).
   */
  async prefillAside(tokens: readonly number[], opts: { readonly draw?: number } = {}): Promise<AsidePrefill> {
    const session = this.session;
    if (!session) throw new Error('prefillAside: no batch yet; call prefill first');
    if (session.batch.b === 1) throw new Error('prefillAside: the batch is one sequence, whose steps share the one-sequence prefill\'s buffers: use prefillSequence');
    if (!this.attention.every((a) => a.resetState)) throw new Error('prefillAside: a layer cannot reset its state in place (GpuAttention.resetState)');
    const { t, ids } = this.promptIds([tokens], 'prefillAside');
    this.checkLength(t, 'prefillAside');
    const one = this.batch(1);
    const plan = await this.plan(one, t, false);
    const states = this.asideStates.pop() ?? this.attention.map((a) => a.createState(1));
    const H = this.config.hiddenSize;
    const chosen = this.asideTokens.pop() ?? this.gpu.device.createBuffer({ label: 'a prompt prefilled aside: its chosen token and row', size: 4 + 4 * H, usage: BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    const step = this.submitOneSequence(plan, states, ids, opts.draw, true);
    // Its token and row kept with it: the next one-sequence prefill writes the batch's own.
    const encoder = this.gpu.device.createCommandEncoder({ label: `prompt of ${t} tokens prefilled aside` });
    encoder.copyBufferToBuffer(one.nextTokens, 0, chosen, 0, 4);
    if (one.decodeRows) encoder.copyBufferToBuffer(one.decodeRows.buffer, 0, chosen, 4, 4 * H);
    this.gpu.device.queue.submit([encoder.finish()]);
    step.tokens().catch(() => undefined); // its readback starts now (the caller awaits it)
    const aside: AsidePrefill = { length: t, step };
    this.asides.set(aside, { states, chosen });
    return aside;
  }

  /**
   * A prompt prefilled aside (prefillAside) put in sequence s's place: its state replaces sequence s's part of every
   * layer's state, and its chosen token (and row) becomes s's next input, queue-ordered as prefillSequence's are;
   * sequence s's position is the prompt's length, the others keep theirs (setSequenceOffsets). An aside is placed once.
   */
  async placeAside(s: number, aside: AsidePrefill): Promise<void> {
    const session = this.sequenceSession(s, 'placeAside');
    const held = this.asides.get(aside);
    if (!held) throw new Error('placeAside: not a prompt prefilled aside by this model, or placed already');
    await this.placeSequence(session, s, aside.length, 'placeAside');
    this.asides.delete(aside);
    const { b } = session.batch;
    const H = this.config.hiddenSize;
    const encoder = this.gpu.device.createCommandEncoder({ label: `prompt prefilled aside into sequence ${s} of ${b}` });
    this.copyStates(encoder, held.states, session, s, 'placeAside');
    encoder.copyBufferToBuffer(held.chosen, 0, session.batch.nextTokens, 4 * s, 4);
    if (session.batch.decodeRows) encoder.copyBufferToBuffer(held.chosen, 4, session.batch.decodeRows.buffer, 4 * H * s, 4 * H);
    this.gpu.device.queue.submit([encoder.finish()]);
    // Queue-ordered: a later aside's reset and prefill run after these copies.
    this.asideStates.push(held.states);
    this.asideTokens.push(held.chosen);
  }

  /** A one-sequence prefill of `plan` on `states` (reset first where `reset`), `draw` its pick's uniform. */
  private submitOneSequence(plan: StepPlan, states: GpuAttentionState[], ids: Uint32Array<ArrayBuffer>, draw: number | undefined, reset: boolean): StepHandle {
    const scratch: Session = { batch: this.batch(1), states, position: 0, recorded: new Map(), logitsWritten: false };
    this.gpu.device.queue.writeBuffer(plan.ids, 0, ids);
    const random = this.random;
    if (draw !== undefined) this.random = () => draw; // the one sequence's one pick (submit draws it at once)
    try {
      return this.submit('prefill', plan, scratch, 'ids', 1, false, {
        ...(reset && { before: (encoder: GPUCommandEncoder) => this.attention.forEach((a, n) => a.resetState!(states[n], encoder)) }),
      });
    } finally {
      this.random = random;
    }
  }

  /** Copies one-sequence states into sequence s's part of the session's states. */
  private copyStates(encoder: GPUCommandEncoder, states: readonly GpuAttentionState[], session: Session, s: number, what: string): void {
    const { b } = session.batch;
    this.attention.forEach((_, n) => {
      const from = states[n].buffers ?? {};
      const to = session.states[n].buffers ?? {};
      for (const [name, src] of Object.entries(from)) {
        const dst = to[name];
        if (!dst) throw new Error(`${what}: layer ${n}'s state has no buffer '${name}' for the batch`);
        if (dst.size === 4 && src.size === 4 && b > 1) continue; // a state part of no floats (createState's placeholder)
        if (dst.size !== b * src.size) throw new Error(`${what}: layer ${n}'s '${name}' holds ${dst.size} bytes for ${b} sequences, one sequence's ${src.size}`);
        encoder.copyBufferToBuffer(src, 0, dst, s * src.size, src.size);
      }
    });
  }

  /** The session, checked for prefilling sequence s of it. */
  private sequenceSession(s: number, what: string): Session {
    const session = this.session;
    if (!session) throw new Error(`${what}: no batch yet; call prefill first`);
    const { b } = session.batch;
    if (!(Number.isInteger(s) && s >= 0 && s < b)) throw new Error(`${what}: sequence ${s} of a batch of ${b}`);
    const unable = this.attention.findIndex((a, n) => !a.setPosition || !a.useSequenceOffsets || !session.states[n].buffers);
    if (unable >= 0) throw new Error(`${what}: attention layer ${unable} cannot put one sequence of a batch at a position of its own`);
    return session;
  }

  /**
   * Sequence s's position set to `position`, every other sequence's kept: the batch's position moves to 0 and each
   * sequence's becomes an offset of its own (setSequenceOffsets; offsets are non-negative, so the batch's must go).
   * A layer that refuses the offsets leaves the batch as it was.
   */
  private async placeSequence(session: Session, s: number, position: number, what: string): Promise<void> {
    const { b } = session.batch;
    this.checkLength(position, what);
    const positions = Array.from({ length: b }, (_, i) => (i === s ? position : session.position + (session.offsets?.values[i] ?? 0)));
    const base = session.position;
    this.attention.forEach((a, n) => a.setPosition!(session.states[n], 0));
    session.position = 0;
    try {
      await this.setSequenceOffsets(positions);
    } catch (e) {
      this.attention.forEach((a, n) => a.setPosition!(session.states[n], base));
      session.position = base;
      throw e;
    }
  }

  /** The buffer batch b's sequence offsets are uploaded to: one per batch size, kept (bind groups and recordings hold it). */
  private offsetsBuffer(b: number): GPUBuffer {
    let buffer = this.offsetBuffers.get(b);
    if (!buffer) this.offsetBuffers.set(b, (buffer = this.gpu.device.createBuffer({ label: `sequence offsets [${b}]`, size: 8 * b, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST })));
    return buffer;
  }

  /** Compiles ahead what decode steps at batch b with a position per sequence run (setSequenceOffsets compiles it at its first use otherwise). */
  async prepareSequenceOffsets(b: number): Promise<void> {
    const refusing = this.attention.findIndex((a) => !a.useSequenceOffsets);
    if (refusing >= 0) throw new Error(`prepareSequenceOffsets: attention layer ${refusing} keeps one position for the batch`);
    await Promise.all(this.attention.map((a) => a.prepareBatch?.(b, true)));
  }

  /** Each sequence's offset past position (setSequenceOffsets; zeros when none were set). */
  get sequenceOffsets(): readonly number[] {
    const session = this.session;
    if (!session) throw new Error('sequenceOffsets: no batch yet; call prefill first');
    return session.offsets?.values ?? new Array<number>(session.batch.b).fill(0);
  }

  /** Plans (compiles and allocates) the decode step for batch b ahead of time. */
  async prepareDecode(b: number): Promise<void> {
    this.ready.set(this.planKey(b, 1, false), await this.plan(this.batch(b), 1, false));
  }

  /** Frees every GPU buffer the model made. The model must not be used afterwards. */
  async destroy(): Promise<void> {
    for (const p of this.plans.values()) destroyStepPlan(await p);
    this.plans.clear();
    this.ready.clear();
    for (const batch of this.batches.values()) {
      for (const s of batch.slots) s.staging.destroy();
      batch.nextTokens.destroy();
      batch.kept.destroy();
      batch.random.destroy();
      batch.logits.buffer.destroy();
      batch.decodeRows?.buffer.destroy();
      batch.querySet?.destroy();
      batch.resolve?.destroy();
    }
    this.batches.clear();
    for (const buffer of this.offsetBuffers.values()) buffer.destroy();
    this.offsetBuffers.clear();
    for (const buffer of [...this.asideTokens, ...[...this.asides.values()].map((a) => a.chosen)]) buffer.destroy();
    this.asideTokens.length = 0;
    this.asides.clear();
    this.samplingConfig.destroy();
    destroyModelWeights(this.weights);
    this.session = undefined;
  }

  private checkLength(length: number, what: string): void {
    const max = this.config.maxPositionEmbeddings;
    if (max !== undefined && length > max) throw new Error(`${what}: sequence length ${length} exceeds max_position_embeddings ${max} of ${this.config.file}`);
  }

  private batch(b: number): Batch {
    let batch = this.batches.get(b);
    if (batch) return batch;
    const { device } = this.gpu;
    // A step's tokens at a storage-offset-aligned stride: a chained run's steps keep theirs in `kept` at that stride.
    const align = Math.max(8, this.gpu.limits.minStorageBufferOffsetAlignment);
    const tokenStride = Math.ceil((4 * b) / align) * align;
    const timestampOffset = MAX_RUN_STEPS * tokenStride;
    const slots = Array.from({ length: READBACK_RING }, (_, i) => ({
      staging: device.createBuffer({ label: `token readback ${i} [b=${b}]`, size: timestampOffset + 16 * MAX_RUN_STEPS, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }),
      state: 'idle' as const,
      generation: 0,
    }));
    const timing = this.timestamps
      ? {
          querySet: device.createQuerySet({ label: `step timestamps [b=${b}]`, type: 'timestamp', count: 2 * READBACK_RING * MAX_RUN_STEPS }),
          resolve: device.createBuffer({ label: `step timestamps [b=${b}]`, size: TIMESTAMP_STRIDE * READBACK_RING * MAX_RUN_STEPS, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC }),
        }
      : {};
    const nextTokens = device.createBuffer({ label: `chosen tokens [b=${b}]`, size: 4 * b, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    const kept = device.createBuffer({ label: `a run's chosen tokens [b=${b}]`, size: MAX_RUN_STEPS * tokenStride, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
    const keepGroups = Array.from({ length: MAX_RUN_STEPS }, (_, i) =>
      device.createBindGroup({
        label: `keep step ${i}'s tokens [b=${b}]`,
        layout: this.kernels.keepTokens.getBindGroupLayout(0),
        entries: [{ binding: 0, resource: { buffer: nextTokens } }, { binding: 1, resource: { buffer: kept, offset: i * tokenStride, size: 4 * b } }],
      }),
    );
    batch = {
      b,
      nextTokens,
      kept,
      keepGroups,
      random: device.createBuffer({ label: `uniform draws [b=${b}]`, size: 4 * b, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST }),
      logits: createExactTensor(this.gpu, `last logits [b=${b}]`, [b, this.config.vocabSize]),
      decodeRows: createExactTensor(this.gpu, `decode step rows [b=${b}]`, [b, this.config.hiddenSize]),
      samplingConfig: this.samplingConfig,
      slots,
      draws: new Float32Array(b),
      next: 0,
      tokenStride,
      timestampOffset,
      ...timing,
    };
    this.batches.set(b, batch);
    return batch;
  }

  private planKey(b: number, t: number, allLogits: boolean): string {
    return `${b}:${t}:${allLogits ? 'all' : 'last'}`;
  }

  private plan(batch: Batch, t: number, allLogits: boolean): Promise<StepPlan> {
    const key = this.planKey(batch.b, t, allLogits);
    let plan = this.plans.get(key);
    if (plan) {
      // A prefill shape used again is the most recently used.
      const at = this.prefillKeys.findIndex((k) => k.key === key);
      if (at >= 0) this.prefillKeys.push(...this.prefillKeys.splice(at, 1));
      return plan;
    }
    plan = buildStepPlan(this.gpu, this.config, this.kernels, this.weights, batch, t, allLogits);
    this.plansBuilt++;
    // A decode step's attention kernels are chosen for the batch (compiled-attention.ts): ready before it is planned.
    if (t === 1 && !allLogits) plan = Promise.all([plan, ...this.attention.map((a) => a.prepareBatch?.(batch.b))]).then(([p]) => p);
    this.plans.set(key, plan);
    plan.catch(() => this.plans.delete(key));
    // Decode plans (t = 1) stay; other shapes are evicted oldest first.
    if (t > 1 || allLogits) {
      this.prefillKeys.push({ key, rows: batch.b * t });
      const keep = this.options.cachedPrefillPlans ?? 2;
      const { hiddenSize: H, intermediateSize: I } = this.config;
      // A row's activations, roughly: the hidden-sized vectors of a layer's step and the MLP's three wide ones, float32.
      const rowBudget = this.options.cachedPrefillRows ?? Math.floor(PREFILL_CACHE_BYTES / (4 * (6 * H + 3 * I)));
      const rows = () => this.prefillKeys.reduce((n, k) => n + k.rows, 0);
      while (this.prefillKeys.length > keep && (rows() > rowBudget || this.prefillKeys.length > MAX_CACHED_PREFILLS)) {
        const old = this.prefillKeys.shift()!.key;
        const evicted = this.plans.get(old);
        this.plans.delete(old);
        // Work already submitted with it keeps its buffers alive until it completes.
        void evicted?.then(destroyStepPlan, () => undefined);
      }
    }
    return plan;
  }

  private readonly ready = new Map<string, StepPlan>();

  /** A plan already built (decodeStep is synchronous); prefill builds the decode plan of its batch. */
  private readyPlan(batch: Batch, t: number): StepPlan {
    const key = this.planKey(batch.b, t, false);
    const plan = this.ready.get(key);
    if (!plan) throw new Error(`decodeStep: the decode plan for batch ${batch.b} is not ready; await prefill (or prepareDecode) first`);
    return plan;
  }

  private pick(): TokenPick {
    return (this.sampling.temperature ?? 0) > 0 ? 'sample' : 'argmax';
  }

  /** A decode step's source for the chosen tokens: their rows, which every pick wrote, unless the table is in parts. */
  private chosenSource(plan: StepPlan): TokenSource {
    return plan.embedsNext ? 'embedded' : 'next';
  }

  /** encodeStep's logits option: write them only when kept (a sampling pick writes them regardless). */
  private logitsOption(): { logits: boolean } {
    return { logits: this.keepLogits };
  }

  /**
   * The decode step as a recorded command list when every layer can be replayed: recorded at the session's
   * first step of this source and pick, then each step only prepares the layers (checks, position uniform).
   */
  private recordedStep(plan: StepPlan, session: Session, source: TokenSource, pick: TokenPick): RecordedStep | undefined {
    const { b } = session.batch;
    for (let n = 0; n < this.attention.length; n++) if (!this.attention[n].prepareReplay) return undefined;
    // The layers' variants (which uniform slot each binds, say) name the recording, with source and pick.
    let key = `${source}:${pick}:${this.keepLogits ? 'logits' : ''}`;
    for (let n = 0; n < this.attention.length; n++) key += `:${this.attention[n].prepareReplay!(session.states[n], b, plan.t)}`;
    const known = session.recorded.get(key);
    if (known) return known;
    // Recording runs the layers' encodeForward, which writes what this step reads as it would when encoding.
    const t0 = performance.now();
    const made = RecordedStep.record((pass) => encodeStep(pass, plan, this.attention, session.states, source, pick, this.logitsOption()));
    session.recorded.set(key, made);
    this.recordings.count++;
    this.recordings.ms += performance.now() - t0;
    return made;
  }

  /**
   * Submits `steps` steps of `plan`, every step's tokens copied into one readback slot: the handle maps it
   * once. Greedy decode steps share one command buffer when every layer can chain that many (their uniforms
   * kept apart: GpuAttention.chainedSteps); otherwise — sampling writes each step's draws into one buffer —
   * each step is its own command buffer and submit, so what the host writes lands between them.
   */
  private submit(
    kind: 'prefill' | 'decode', plan: StepPlan, session: Session, source: TokenSource, steps = 1, chainSteps = false,
    /** `before` records into the command buffer ahead of the first step's pass; `started`: when the prefill call began. */
    opts: { before?: (encoder: GPUCommandEncoder) => void; started?: number } = {},
  ): StepHandle {
    const { device } = this.gpu;
    const { batch } = session;
    const s = batch.next;
    const slot = batch.slots[s];
    if (slot.state === 'mapping') {
      throw new Error(`${kind} step: ${READBACK_RING} submits are in flight and the oldest is still being read; await its tokens() first`);
    }
    batch.next = (s + 1) % READBACK_RING;
    slot.generation++;
    slot.state = 'written';

    const pick = this.pick();
    const chain =
      chainSteps && kind === 'decode' && steps > 1 && pick !== 'sample' && this.attention.every((a) => a.prepareReplay && (a.chainedSteps ?? 1) >= steps);
    const timings: StepTiming[] = [];
    let dispatches = 0;
    let encoder: GPUCommandEncoder | undefined;
    // A long prefill (steps = 1) is submitted in pieces, a timed pass each, their timestamp pairs in a row.
    const cuts = kind === 'prefill' ? prefillCuts(plan.layers.length, plan.rows, this.options.splitPrefill ?? !this.gpu.isSoftware) : [];
    const passes = cuts.length + 1;
    const stamps = this.stampSteps ? batch.querySet : undefined;
    if (steps * passes > MAX_RUN_STEPS) throw new Error(`${kind} step: ${steps} steps of ${passes} passes exceed the ${MAX_RUN_STEPS} timestamp pairs of a readback slot`);
    for (let i = 0; i < steps; i++) {
      if (pick === 'sample') {
        const u = batch.draws;
        for (let j = 0; j < u.length; j++) u[j] = this.random();
        device.queue.writeBuffer(batch.random, 0, u);
      }
      const from = i > 0 || source === 'next' ? this.chosenSource(plan) : source;
      const t0 = performance.now();
      const label = `${kind} [b=${plan.b} t=${plan.t} at ${session.position}]`;
      if (!encoder) {
        encoder = device.createCommandEncoder({ label: chain ? `${steps} decode steps [b=${plan.b} from ${session.position}]` : label });
        if (i === 0) opts.before?.(encoder);
      }
      const query = 2 * (s * MAX_RUN_STEPS + i * passes);
      const beginPass = (e: GPUCommandEncoder, piece: number, what: string) => {
        const q = query + 2 * piece;
        const timestampWrites = stamps ? { querySet: stamps, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 } : undefined;
        return e.beginComputePass(timestampWrites ? { label: what, timestampWrites } : { label: what });
      };
      let native = beginPass(encoder, 0, label);
      let submitted = 0; // host ms in this step's submits
      let firstSubmitMs: number | undefined;
      const recorded = kind === 'decode' ? this.recordedStep(plan, session, from, pick) : undefined;
      if (recorded) {
        recorded.replay(native);
        dispatches = recorded.dispatches;
      } else {
        const pass = new RecordingPass(native);
        // After each cut layer: submit what is encoded, continue in a new command buffer and pass.
        const afterLayer = cuts.length === 0 ? undefined : (layer: number) => {
          const piece = cuts.indexOf(layer + 1) + 1;
          if (piece === 0) return;
          native.end();
          const ts = performance.now();
          device.queue.submit([encoder!.finish()]);
          const te = performance.now();
          submitted += te - ts;
          firstSubmitMs ??= te - t0;
          const what = `${label} from layer ${layer + 1}`;
          encoder = device.createCommandEncoder({ label: what });
          native = beginPass(encoder, piece, what);
          pass.retarget(native);
        };
        encodeStep(pass.asPass(), plan, this.attention, session.states, from, pick, this.logitsOption(), afterLayer);
        dispatches = pass.dispatches;
      }
      session.logitsWritten = stepWritesLogits(plan, pick, this.logitsOption());
      if (chain) {
        // A chained run keeps each step's tokens on the GPU (the run's slot of `kept`) and copies them, and resolves
        // its timestamps, once after its last step: a copy between steps broke the run with a transfer and barriers.
        native.setPipeline(this.kernels.keepTokens);
        native.setBindGroup(0, batch.keepGroups[i]);
        native.dispatchWorkgroups(Math.ceil(batch.b / KEEP_WORKGROUP));
      }
      native.end();
      if (!chain) encoder.copyBufferToBuffer(batch.nextTokens, 0, slot.staging, i * batch.tokenStride, 4 * batch.b);
      else if (i === steps - 1) encoder.copyBufferToBuffer(batch.kept, 0, slot.staging, 0, steps * batch.tokenStride);
      if (stamps && batch.resolve && !chain) {
        encoder.resolveQuerySet(stamps, query, 2 * passes, batch.resolve, (TIMESTAMP_STRIDE * query) / 2);
        encoder.copyBufferToBuffer(batch.resolve, (TIMESTAMP_STRIDE * query) / 2, slot.staging, batch.timestampOffset + 16 * i * passes, 16 * passes);
      } else if (stamps && batch.resolve && i === steps - 1) {
        // The run's queries are consecutive (one pass a decode step): one resolve, their pairs in a row.
        const first = 2 * s * MAX_RUN_STEPS;
        encoder.resolveQuerySet(stamps, first, 2 * steps, batch.resolve, (TIMESTAMP_STRIDE * first) / 2);
        encoder.copyBufferToBuffer(batch.resolve, (TIMESTAMP_STRIDE * first) / 2, slot.staging, batch.timestampOffset, 16 * steps);
      }
      const last = !chain || i === steps - 1;
      const commands = last ? encoder.finish() : undefined;
      const t1 = performance.now();
      if (commands) {
        device.queue.submit([commands]);
        encoder = undefined;
      }
      const t2 = performance.now();
      for (let n = 0; n < this.attention.length; n++) this.attention[n].advance(session.states[n], plan.t);
      session.position += plan.t;
      timings.push({
        ...(i === 0 && opts.started !== undefined && { prepareMs: t0 - opts.started }),
        encodeMs: t1 - t0 - submitted, submitMs: t2 - t1 + submitted, commandBuffers: passes, firstSubmitMs: firstSubmitMs ?? t2 - t0,
      });
    }
    return new StepHandle(
      kind, batch.b, plan.t, session.position, dispatches, timings,
      this.gpu, slot, slot.generation, { tokenStride: batch.tokenStride, timestampOffset: stamps ? batch.timestampOffset : undefined, passes },
    );
  }
}
