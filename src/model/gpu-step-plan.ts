// Everything one forward step of shape (b sequences × t new tokens) needs, made once and reused every
// step of that shape: activation buffers, matmul plans, bind groups. Recording the step is then only
// setPipeline / setBindGroup / dispatch calls into the caller's pass — no allocation per token.
//
//   x      = embed[ids]                                                    [rows, hidden], rows = b·t
//   per layer l:
//     q,k,v= rmsnorm(x)·input_layernorm · [W_q; W_k; W_v]ᵀ                  [b, t, h, d] each (one matmul)
//     o    = attention_l(q, k, v | state_l)
//     x   += o·W_oᵀ
//     x   += (silu(m·W_gateᵀ) ⊙ m·W_upᵀ)·W_downᵀ,  m = rmsnorm(x)·post_attention_layernorm
//   y      = rmsnorm(x) · norm at the rows that need logits                [b (or rows), hidden]
//   logits = y·W_lmᵀ;  tokens = argmax or sample(logits)
//
// Every residual add is the epilogue of the projection that produces the sublayer's output, the norms
// ride in the next projection's prologue and SwiGLU in the gate|up projection's epilogue
// (matmul-fusion.ts) at every size — the small-M and rows kernels for decoding and trees, the tiled one
// for prefills: five dispatches per layer, attention included when it is one kernel.
import { SMALL_M_BLOCKED_MAX } from '../../backends/wgsl/matmul-small-m.ts';
import { bindMatmul, encodeMatmul, planMatmul, type MatmulPlan } from '../runtime/matmul.ts';
import type { MatmulFusion } from '../../backends/wgsl/matmul-fusion.ts';
import {
  bindArgmax,
  bindArgmaxPartials,
  bindEmbedding,
  bindRmsnorm,
  bindSample,
  destroyDispatch,
  encodeDispatch,
  type BoundDispatch,
  type ModelKernels,
} from '../runtime/model-kernels.ts';
import { BufferUsage, type Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import type { ModelConfig } from './config.ts';
import type { GpuAttention, GpuAttentionState } from '../runtime/gpu-attention.ts';
import { createExactTensor, type GpuModelWeights } from './gpu-weights.ts';
import { bindHead, encodeHead, planHead, type HeadPlans } from './lm-head-parts.ts';
import type { RowParts } from './weight-parts.ts';

/** Buffers a batch of b sequences keeps across steps, shared by its prefill and decode plans. */
export interface BatchBuffers {
  readonly b: number;
  /** u32 [b]: the tokens the last step chose, the next decode step's input. */
  readonly nextTokens: GPUBuffer;
  /** f32 [b]: this step's uniform draws (sampling only). */
  readonly random: GPUBuffer;
  /** [b, vocab]: the last step's logits at each sequence's last position. */
  readonly logits: GpuTensor;
  /** The sample kernel's config uniform (shared by the whole model). */
  readonly samplingConfig: GPUBuffer;
  /**
   * [b, hidden]: the decode step's input rows (its plan's x). Every token pick of this batch's plans writes the
   * chosen tokens' embedding rows there when the table is one buffer (StepPlan.embedsNext), so a decode step starts
   * from them ('embedded') without a gather. Absent: decode steps gather the chosen tokens ('next').
   */
  readonly decodeRows?: GpuTensor;
}

/**
 * Where a step's input rows come from: uploaded ids, the batch's chosen tokens (gathered from the table), or
 * 'embedded': the step's x already holds its rows — a decode step's (the batch's decodeRows), written by the pick
 * that chose them (StepPlan.embedsNext), or a tree step's that picks every row (pickRows), written by the chained
 * step's kernel that assembled the tree (src/speculative/gpu-chain.ts).
 */
export type TokenSource = 'ids' | 'next' | 'embedded';
export type TokenPick = 'argmax' | 'sample' | 'none';

/** Shapes beyond prefill and decode, for speculative tree verification (src/speculative/gpu-verifier.ts). */
export interface StepPlanExtras {
  /** With allLogits: a token for every row (argmax, or a sample with one uniform per row in rowRandom) into rowTokens. */
  readonly pickRows?: boolean;
  /** q, k, v, o buffers per layer instead of one set for all: a tree commit reads the nodes' q, k, v after the step. */
  readonly qkvPerLayer?: boolean;
}

export interface LayerIo {
  readonly q: GpuTensor;
  readonly k: GpuTensor;
  readonly v: GpuTensor;
  readonly o: GpuTensor;
}

/** Records layer `layer`'s attention over the step's q, k, v (each [b, t, h, d]) into o. */
export type AttentionEncoder = (pass: GPUComputePassEncoder, layer: number, io: { q: GPUBuffer; k: GPUBuffer; v: GPUBuffer; o: GPUBuffer }) => void;

interface LayerBindings {
  /** q | k | v = rmsnorm(x)·input_layernorm·[W_q; W_k; W_v]ᵀ, split. */
  readonly qkv: GPUBindGroup;
  /** x += o·W_oᵀ */
  readonly o: GPUBindGroup;
  /** act = swiglu(rmsnorm(x)·post_attention_layernorm·[W_gate; W_up]ᵀ) */
  readonly gateUp: GPUBindGroup;
  /** x += act·W_downᵀ */
  readonly down: GPUBindGroup;
}

export interface StepPlan {
  readonly b: number;
  readonly t: number;
  readonly rows: number;
  /** Logits for every row ([rows, vocab], forwardLogits) rather than each sequence's last ([b, vocab]). */
  readonly allLogits: boolean;
  /** u32 [rows]: token ids uploaded for prefill. */
  readonly ids: GPUBuffer;
  /** [rows, hidden]: the residual stream; after the step, every row's hidden state before the final norm. */
  readonly x: GpuTensor;
  readonly logits: GpuTensor;
  readonly io: LayerIo;
  /** Each layer's q, k, v, o (all the same buffers unless qkvPerLayer). */
  readonly layerIo: readonly LayerIo[];
  /**
   * The final-normed hidden state of the rows that get logits ([b or rows, hidden]): the LM head's input.
   * Absent when the LM head normalises its rows itself (fused plans that read every row of x).
   */
  readonly final?: GpuTensor;
  /** pickRows: u32 [rows] chosen tokens and f32 [rows] uniform draws. */
  readonly rowTokens?: GPUBuffer;
  readonly rowRandom?: GPUBuffer;
  /** One gather per part of the embedding table (weight-parts.ts). */
  readonly embedFromIds: readonly BoundDispatch[];
  /** Only when t = 1: embedding of the previous step's chosen tokens. */
  readonly embedFromNext?: readonly BoundDispatch[];
  readonly layers: readonly LayerBindings[];
  readonly finalNorm?: BoundDispatch;
  /** One bind group per part of the LM head (lm-head-parts.ts), for matmuls.lm's plans. */
  readonly lmHead: readonly GPUBindGroup[];
  readonly argmax?: BoundDispatch;
  readonly sample?: BoundDispatch;
  /**
   * Plans whose LM head normalises its rows itself and that pick tokens (pickRows, or a decode step: t = 1, each
   * sequence's one row): the head with the argmax epilogue (each row's token without writing [rows, vocab]
   * logits) and the dispatch that finishes it into rowTokens (the batch's nextTokens for a decode step), for
   * greedy steps that read no logits (encodeStepWith's `logits: false`). It replaces the LM head writing every
   * logit and the argmax's one workgroup per row over the whole vocabulary (34 µs of a 0.48 ms step on the
   * H200 at batch 1) by the head's workgroups each reducing their own columns and a pass over their pairs.
   */
  readonly argmaxHead?: { readonly plans: HeadPlans; readonly bindGroups: readonly GPUBindGroup[]; readonly reduce: BoundDispatch };
  /** Whether this plan's token picks also write the chosen tokens' rows into the batch's decodeRows (BatchBuffers). */
  readonly embedsNext: boolean;
  readonly matmuls: { readonly qkv: MatmulPlan; readonly o: MatmulPlan; readonly gateUp: MatmulPlan; readonly down: MatmulPlan; readonly lm: HeadPlans };
  /** Everything made for this plan, destroyed with it. */
  readonly buffers: readonly GPUBuffer[];
  readonly dispatches: readonly BoundDispatch[];
}

export async function buildStepPlan(
  gpu: Gpu,
  config: ModelConfig,
  kernels: ModelKernels,
  weights: GpuModelWeights,
  batch: BatchBuffers,
  t: number,
  allLogits: boolean,
  extras: StepPlanExtras = {},
): Promise<StepPlan> {
  if (extras.pickRows && !allLogits) throw new Error('step plan: pickRows needs allLogits');
  const b = batch.b;
  const rows = b * t;
  const H = config.hiddenSize;
  const hd = config.numHeads * config.headDim;
  const I = config.intermediateSize;
  const V = config.vocabSize;
  const outRows = allLogits ? rows : b;
  const tag = `b=${b} t=${t}`;

  const made: GpuTensor[] = [];
  const tensor = (name: string, shape: number[]) => {
    const x = createExactTensor(gpu, `${name} [${tag}]`, shape);
    made.push(x);
    return x;
  };
  const dispatches: BoundDispatch[] = [];
  const bound = (d: BoundDispatch) => {
    dispatches.push(d);
    return d;
  };
  const plans: MatmulPlan[] = [];
  try {
    const ids = gpu.device.createBuffer({ label: `token ids [${tag}]`, size: rows * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
    made.push({ name: 'ids', shape: [rows], bytes: rows * 4, buffer: ids });
    const eps = { eps: config.rmsNormEps };
    const qkvFusion: MatmulFusion = { rmsnorm: eps, epilogue: { split: 3 } };
    const gateUpFusion: MatmulFusion = { rmsnorm: eps, epilogue: 'swiglu' };
    // The LM head normalises its rows itself when it reads every row of x (a decode step's b rows, or every
    // row's logits: a draft tree of at most SMALL_M_BLOCKED_MAX rows, where the argmax epilogue exists); a
    // prefill's b last rows are gathered (strided) by the final norm first.
    const lmFused = rows <= SMALL_M_BLOCKED_MAX && (allLogits || t === 1);

    // A decode step's rows are the batch's decodeRows, which the picks of its plans fill with the chosen tokens' rows.
    const x = t === 1 && !allLogits && batch.decodeRows ? batch.decodeRows : tensor('x', [rows, H]);
    const table = weights.embedTokens.parts.length === 1 ? weights.embedTokens.parts[0].tensor.buffer : undefined;
    // (A table in parts keeps the gather: its rows would need a binding per part.)
    const next = !allLogits && batch.decodeRows && table ? { table, x: batch.decodeRows.buffer, hidden: H } : undefined;
    const qkvo = (suffix: string): LayerIo => ({
      q: tensor(`q${suffix}`, [rows, hd]), k: tensor(`k${suffix}`, [rows, hd]), v: tensor(`v${suffix}`, [rows, hd]), o: tensor(`o${suffix}`, [rows, hd]),
    });
    const shared = qkvo('');
    const layerIo = weights.layers.map((_, l) => (extras.qkvPerLayer && l > 0 ? qkvo(` layer ${l}`) : shared));
    const act = tensor('act', [rows, I]);
    const final = lmFused ? undefined : tensor('final normed', [outRows, H]);
    const logits = allLogits ? tensor('logits', [rows, V]) : batch.logits;

    const plan = async (name: string, M: number, N: number, K: number, fusion?: MatmulFusion) => {
      const p = await planMatmul(gpu, { M, N, K, transposeB: true, ...(fusion && { fusion }) }, { label: `${name} [${tag}]` });
      plans.push(p);
      return p;
    };
    const head = async (name: string, M: number, fusion?: MatmulFusion) => {
      const h = await planHead(gpu, weights.lmHead, M, H, fusion, `${name} [${tag}]`);
      plans.push(...h.plans);
      return h;
    };
    const residual: MatmulFusion = { epilogue: 'accumulate' };
    const matmuls = {
      qkv: await plan('q|k|v proj', rows, 3 * hd, H, qkvFusion),
      o: await plan('o proj', rows, H, hd, residual),
      gateUp: await plan('gate|up proj', rows, 2 * I, H, gateUpFusion),
      down: await plan('down proj', rows, H, I, residual),
      lm: await head('lm head', outRows, lmFused ? { rmsnorm: eps } : undefined),
    };

    const layers = weights.layers.map((w, l): LayerBindings => {
      const { q, k, v, o } = layerIo[l];
      return {
        qkv: bindMatmul(gpu, matmuls.qkv, x, w.qkv, [q, k, v], { gain: w.inputNorm }),
        o: bindMatmul(gpu, matmuls.o, o, w.oProj, x),
        gateUp: bindMatmul(gpu, matmuls.gateUp, x, w.gateUp, act, { gain: w.postNorm }),
        down: bindMatmul(gpu, matmuls.down, act, w.downProj, x),
      };
    });
    // Only each sequence's last row needs logits when choosing the next token: row b·t + t − 1.
    const finalRows = allLogits ? { rows } : { rows: b, stride: t, offset: t - 1 };
    const finalNorm = final
      ? bound(bindRmsnorm(gpu, kernels, { x: x.buffer, gain: weights.norm.buffer, y: final.buffer }, finalRows, `final norm [${tag}]`))
      : undefined;
    const lmHead = final ? bindHead(gpu, matmuls.lm, weights.lmHead, final, logits) : bindHead(gpu, matmuls.lm, weights.lmHead, x, logits, weights.norm);
    // Each part of the table gathers the rows whose ids it holds.
    const embed = (ids: GPUBuffer, what: string, table: RowParts) =>
      table.parts.map((p) =>
        bound(bindEmbedding(gpu, kernels, { ids, embed: p.tensor.buffer, x: x.buffer }, rows, `${what}${table.parts.length > 1 ? ` from rows [${p.first}, ${p.first + p.rows})` : ''} [${tag}]`, { first: p.first, count: p.rows })),
      );
    const embedFromIds = embed(ids, 'embedding', weights.embedTokens);
    const embedFromNext = t === 1 ? embed(batch.nextTokens, 'embedding of chosen tokens', weights.embedTokens) : undefined;
    let rowTokens: GPUBuffer | undefined;
    let rowRandom: GPUBuffer | undefined;
    if (extras.pickRows) {
      rowTokens = gpu.device.createBuffer({ label: `row tokens [${tag}]`, size: rows * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
      made.push({ name: 'row tokens', shape: [rows], bytes: rows * 4, buffer: rowTokens });
      rowRandom = gpu.device.createBuffer({ label: `row draws [${tag}]`, size: rows * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
      made.push({ name: 'row draws', shape: [rows], bytes: rows * 4, buffer: rowRandom });
    }
    let argmaxHead: StepPlan['argmaxHead'];
    // A decode step's rows are its b sequences' last (and only) rows, so every row's token is a next token.
    const headTokens = rowTokens ?? (!allLogits && t === 1 ? batch.nextTokens : undefined);
    if (headTokens && lmFused && H % 4 === 0) {
      const h = await head('lm head, argmax', rows, { rmsnorm: eps, epilogue: 'argmax' });
      const partials = tensor('lm head partial maxima', [rows, h.columns]);
      const embed = headTokens === batch.nextTokens ? next : undefined;
      argmaxHead = {
        plans: h,
        bindGroups: bindHead(gpu, h, weights.lmHead, x, partials, weights.norm),
        reduce: bound(await bindArgmaxPartials(gpu, { partials: partials.buffer, tokens: headTokens, ...(embed && { next: embed }) }, rows, h.columns / 2, `argmax of the LM head's partial maxima${embed ? ', embedding' : ''} [${tag}]`)),
      };
    }
    const pick = rowTokens && rowRandom
      ? {
          argmax: bound(bindArgmax(gpu, kernels, { logits: logits.buffer, tokens: rowTokens }, rows, `argmax per row [${tag}]`)),
          sample: bound(bindSample(gpu, kernels, { logits: logits.buffer, random: rowRandom, tokens: rowTokens, config: batch.samplingConfig }, rows, `sample per row [${tag}]`)),
        }
      : allLogits
      ? {}
      : {
          argmax: bound(bindArgmax(gpu, kernels, { logits: logits.buffer, tokens: batch.nextTokens, ...(next && { next }) }, b, `argmax${next ? ', embedding' : ''} [${tag}]`)),
          sample: bound(
            bindSample(gpu, kernels, { logits: logits.buffer, random: batch.random, tokens: batch.nextTokens, config: batch.samplingConfig, ...(next && { next }) }, b, `sample${next ? ', embedding' : ''} [${tag}]`),
          ),
        };
    return {
      b, t, rows, allLogits, ids, x, logits,
      io: shared,
      layerIo,
      ...(final && { final }),
      ...(rowTokens && { rowTokens, rowRandom }),
      embedFromIds,
      ...(embedFromNext && { embedFromNext }),
      layers, ...(finalNorm && { finalNorm }), lmHead,
      ...pick,
      ...(argmaxHead && { argmaxHead }),
      embedsNext: next !== undefined,
      matmuls,
      buffers: [...made.map((m) => m.buffer), ...plans.map((p) => p.params)],
      dispatches,
    };
  } catch (e) {
    for (const m of made) m.buffer.destroy();
    for (const p of plans) p.params.destroy();
    for (const d of dispatches) destroyDispatch(d);
    throw e;
  }
}

/**
 * Records the whole step into `pass`: embedding, every layer (the attention's kernels too), LM head, pick.
 * `afterLayer(n)` runs once layer n is recorded (a long prefill submits its first layers there: prefill-submits.ts).
 */
export function encodeStep(
  pass: GPUComputePassEncoder,
  plan: StepPlan,
  attention: readonly GpuAttention[],
  states: readonly GpuAttentionState[],
  source: TokenSource,
  pick: TokenPick,
  opts: { logits?: boolean } = {},
  afterLayer?: (layer: number) => void,
): void {
  encodeStepWith(pass, plan, (p, n, io) => attention[n].encodeForward(p, io, states[n], plan.b, plan.t), source, pick, afterLayer ? { ...opts, afterLayer } : opts);
}

/** Whether encodeStepWith(…, pick, opts) writes plan.logits: unless a greedy pick takes the argmax head. */
export function stepWritesLogits(plan: StepPlan, pick: TokenPick, opts: { logits?: boolean } = {}): boolean {
  return !(pick === 'argmax' && plan.argmaxHead && opts.logits === false);
}

/**
 * encodeStep with each layer's attention recorded by `attend` (the tree kernels when verifying a draft tree).
 * `logits: false` (nothing reads the logits after the step): a greedy pick of every row runs the LM head with
 * the argmax epilogue when the plan has it, and plan.logits is left unwritten.
 */
export function encodeStepWith(
  pass: GPUComputePassEncoder, plan: StepPlan, attend: AttentionEncoder, source: TokenSource, pick: TokenPick,
  opts: { logits?: boolean; afterLayer?: (layer: number) => void } = {},
): void {
  if (source === 'embedded' && !((plan.t === 1 && plan.embedsNext) || plan.rowTokens)) {
    throw new Error(`step plan b=${plan.b} t=${plan.t}: only a decode step whose picks write the chosen tokens' rows, or a tree step, starts from rows already embedded`);
  }
  const embed = source === 'ids' ? plan.embedFromIds : source === 'next' ? plan.embedFromNext : [];
  if (!embed) throw new Error(`step plan b=${plan.b} t=${plan.t}: only a one-token step can start from the chosen tokens`);
  for (const d of embed) encodeDispatch(pass, d);
  const mm = plan.matmuls;
  plan.layers.forEach((l, n) => {
    const io = plan.layerIo[n];
    encodeMatmul(pass, mm.qkv, l.qkv);
    attend(pass, n, { q: io.q.buffer, k: io.k.buffer, v: io.v.buffer, o: io.o.buffer });
    encodeMatmul(pass, mm.o, l.o);
    encodeMatmul(pass, mm.gateUp, l.gateUp);
    encodeMatmul(pass, mm.down, l.down);
    opts.afterLayer?.(n);
  });
  if (!stepWritesLogits(plan, pick, opts)) {
    encodeHead(pass, plan.argmaxHead!.plans, plan.argmaxHead!.bindGroups);
    encodeDispatch(pass, plan.argmaxHead!.reduce);
    return;
  }
  if (plan.finalNorm) encodeDispatch(pass, plan.finalNorm);
  encodeHead(pass, mm.lm, plan.lmHead);
  if (pick === 'none') return;
  const d = pick === 'argmax' ? plan.argmax : plan.sample;
  if (!d) throw new Error(`step plan b=${plan.b} t=${plan.t} computes every row's logits and picks no token`);
  encodeDispatch(pass, d);
}

export function destroyStepPlan(plan: StepPlan): void {
  for (const b of plan.buffers) b.destroy();
  for (const d of plan.dispatches) destroyDispatch(d);
}
