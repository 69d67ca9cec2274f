// Everything one forward step of shape (b sequences × t new tokens) needs, made once and reused every
// step of that shape: activation buffers, matmul plans, bind groups. Recording the step is then only
// setPipeline / setBindGroup / dispatch calls into the caller's pass — no allocation per token.
//
//   x      = embed[ids]                                                    [rows, hidden], rows = b·t
//   per layer l:
//     a    = rmsnorm(x (+= delta of layer l−1's MLP)) · input_layernorm
//     q,k,v= a·W_qᵀ, a·W_kᵀ, a·W_vᵀ                                        [b, t, h, d]
//     o    = attention_l(q, k, v | state_l)
//     delta= o·W_oᵀ;   m = rmsnorm(x += delta) · post_attention_layernorm
//     delta= (silu(m·W_gateᵀ) ⊙ m·W_upᵀ)·W_downᵀ                           (gate and up: one matmul)
//   y      = rmsnorm(x += delta) · norm at the rows that need logits       [b (or rows), hidden]
//   logits = y·W_lmᵀ;  tokens = argmax or sample(logits)
import { bindMatmul, encodeMatmul, planMatmul, type MatmulPlan } from '../../backends/wgsl/matmul.ts';
import {
  bindArgmax,
  bindEmbedding,
  bindRmsnorm,
  bindSample,
  bindSwiglu,
  destroyDispatch,
  encodeDispatch,
  type BoundDispatch,
  type ModelKernels,
} from '../../backends/wgsl/model-kernels.ts';
import { BufferUsage, type Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import type { ModelConfig } from './config.ts';
import type { GpuAttention, GpuAttentionState } from './gpu-attention.ts';
import { createExactTensor, type GpuModelWeights } from './gpu-weights.ts';

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
}

export type TokenSource = 'ids' | 'next';
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
  readonly inputNorm: BoundDispatch;
  readonly q: GPUBindGroup;
  readonly k: GPUBindGroup;
  readonly v: GPUBindGroup;
  readonly o: GPUBindGroup;
  readonly postNorm: BoundDispatch;
  readonly gateUp: GPUBindGroup;
  readonly swiglu: BoundDispatch;
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
  readonly logits: GpuTensor;
  readonly io: LayerIo;
  /** Each layer's q, k, v, o (all the same buffers unless qkvPerLayer). */
  readonly layerIo: readonly LayerIo[];
  /** The final-normed hidden state of the rows that get logits ([b or rows, hidden]): the LM head's (and Medusa heads') input. */
  readonly final: GpuTensor;
  /** pickRows: u32 [rows] chosen tokens and f32 [rows] uniform draws. */
  readonly rowTokens?: GPUBuffer;
  readonly rowRandom?: GPUBuffer;
  readonly embedFromIds: BoundDispatch;
  /** Only when t = 1: embedding of the previous step's chosen tokens. */
  readonly embedFromNext?: BoundDispatch;
  readonly layers: readonly LayerBindings[];
  readonly finalNorm: BoundDispatch;
  readonly lmHead: GPUBindGroup;
  readonly argmax?: BoundDispatch;
  readonly sample?: BoundDispatch;
  readonly matmuls: { readonly qkv: MatmulPlan; readonly o: MatmulPlan; readonly gateUp: MatmulPlan; readonly down: MatmulPlan; readonly lm: MatmulPlan };
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
    const x = tensor('x', [rows, H]);
    const a = tensor('normed', [rows, H]);
    const qkvo = (suffix: string): LayerIo => ({
      q: tensor(`q${suffix}`, [rows, hd]), k: tensor(`k${suffix}`, [rows, hd]), v: tensor(`v${suffix}`, [rows, hd]), o: tensor(`o${suffix}`, [rows, hd]),
    });
    const shared = qkvo('');
    const layerIo = weights.layers.map((_, l) => (extras.qkvPerLayer && l > 0 ? qkvo(` layer ${l}`) : shared));
    const delta = tensor('delta', [rows, H]);
    const gateUp = tensor('gate|up', [rows, 2 * I]);
    const act = tensor('act', [rows, I]);
    const final = tensor('final normed', [outRows, H]);
    const logits = allLogits ? tensor('logits', [rows, V]) : batch.logits;

    const plan = async (name: string, M: number, N: number, K: number) => {
      const p = await planMatmul(gpu, { M, N, K, transposeB: true }, { label: `${name} [${tag}]` });
      plans.push(p);
      return p;
    };
    const matmuls = {
      qkv: await plan('q/k/v proj', rows, hd, H),
      o: await plan('o proj', rows, H, hd),
      gateUp: await plan('gate|up proj', rows, 2 * I, H),
      down: await plan('down proj', rows, H, I),
      lm: await plan('lm head', outRows, V, H),
    };

    const layers = weights.layers.map((w, l): LayerBindings => {
      const { q, k, v, o } = layerIo[l];
      const name = (s: string) => `layer ${l} ${s} [${tag}]`;
      const inputNorm = bound(
        l === 0
          ? bindRmsnorm(gpu, kernels, { x: x.buffer, gain: w.inputNorm.buffer, y: a.buffer }, { rows }, name('input norm'))
          : bindRmsnorm(gpu, kernels, { x: x.buffer, delta: delta.buffer, gain: w.inputNorm.buffer, y: a.buffer }, { rows }, name('residual + input norm')),
      );
      return {
        inputNorm,
        q: bindMatmul(gpu, matmuls.qkv, a, w.qProj, q),
        k: bindMatmul(gpu, matmuls.qkv, a, w.kProj, k),
        v: bindMatmul(gpu, matmuls.qkv, a, w.vProj, v),
        o: bindMatmul(gpu, matmuls.o, o, w.oProj, delta),
        postNorm: bound(bindRmsnorm(gpu, kernels, { x: x.buffer, delta: delta.buffer, gain: w.postNorm.buffer, y: a.buffer }, { rows }, name('residual + post norm'))),
        gateUp: bindMatmul(gpu, matmuls.gateUp, a, w.gateUp, gateUp),
        swiglu: bound(bindSwiglu(gpu, kernels, { gateUp: gateUp.buffer, act: act.buffer }, rows, name('swiglu'))),
        down: bindMatmul(gpu, matmuls.down, act, w.downProj, delta),
      };
    });
    // Only each sequence's last row needs logits when choosing the next token: row b·t + t − 1.
    const finalRows = allLogits ? { rows } : { rows: b, stride: t, offset: t - 1 };
    const finalNorm = bound(bindRmsnorm(gpu, kernels, { x: x.buffer, delta: delta.buffer, gain: weights.norm.buffer, y: final.buffer }, finalRows, `final norm [${tag}]`));
    const lmHead = bindMatmul(gpu, matmuls.lm, final, weights.lmHead, logits);
    const embedFromIds = bound(bindEmbedding(gpu, kernels, { ids, embed: weights.embedTokens.buffer, x: x.buffer }, rows, `embedding [${tag}]`));
    const embedFromNext =
      t === 1 ? bound(bindEmbedding(gpu, kernels, { ids: batch.nextTokens, embed: weights.embedTokens.buffer, x: x.buffer }, rows, `embedding of chosen tokens [${tag}]`)) : undefined;
    let rowTokens: GPUBuffer | undefined;
    let rowRandom: GPUBuffer | undefined;
    if (extras.pickRows) {
      rowTokens = gpu.device.createBuffer({ label: `row tokens [${tag}]`, size: rows * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC });
      made.push({ name: 'row tokens', shape: [rows], bytes: rows * 4, buffer: rowTokens });
      rowRandom = gpu.device.createBuffer({ label: `row draws [${tag}]`, size: rows * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
      made.push({ name: 'row draws', shape: [rows], bytes: rows * 4, buffer: rowRandom });
    }
    const pick = rowTokens && rowRandom
      ? {
          argmax: bound(bindArgmax(gpu, kernels, { logits: logits.buffer, tokens: rowTokens }, rows, `argmax per row [${tag}]`)),
          sample: bound(bindSample(gpu, kernels, { logits: logits.buffer, random: rowRandom, tokens: rowTokens, config: batch.samplingConfig }, rows, `sample per row [${tag}]`)),
        }
      : allLogits
      ? {}
      : {
          argmax: bound(bindArgmax(gpu, kernels, { logits: logits.buffer, tokens: batch.nextTokens }, b, `argmax [${tag}]`)),
          sample: bound(
            bindSample(gpu, kernels, { logits: logits.buffer, random: batch.random, tokens: batch.nextTokens, config: batch.samplingConfig }, b, `sample [${tag}]`),
          ),
        };
    return {
      b, t, rows, allLogits, ids, logits,
      io: shared,
      layerIo,
      final,
      ...(rowTokens && { rowTokens, rowRandom }),
      embedFromIds,
      ...(embedFromNext && { embedFromNext }),
      layers, finalNorm, lmHead,
      ...pick,
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

/** Records the whole step into `pass`: embedding, every layer (the attention's kernels too), LM head, pick. */
export function encodeStep(
  pass: GPUComputePassEncoder,
  plan: StepPlan,
  attention: readonly GpuAttention[],
  states: readonly GpuAttentionState[],
  source: TokenSource,
  pick: TokenPick,
): void {
  encodeStepWith(pass, plan, (p, n, io) => attention[n].encodeForward(p, io, states[n], plan.b, plan.t), source, pick);
}

/** encodeStep with each layer's attention recorded by `attend` (the tree kernels when verifying a draft tree). */
export function encodeStepWith(pass: GPUComputePassEncoder, plan: StepPlan, attend: AttentionEncoder, source: TokenSource, pick: TokenPick): void {
  const embed = source === 'ids' ? plan.embedFromIds : plan.embedFromNext;
  if (!embed) throw new Error(`step plan b=${plan.b} t=${plan.t}: only a one-token step can start from the chosen tokens`);
  encodeDispatch(pass, embed);
  const mm = plan.matmuls;
  plan.layers.forEach((l, n) => {
    const io = plan.layerIo[n];
    encodeDispatch(pass, l.inputNorm);
    encodeMatmul(pass, mm.qkv, l.q);
    encodeMatmul(pass, mm.qkv, l.k);
    encodeMatmul(pass, mm.qkv, l.v);
    attend(pass, n, { q: io.q.buffer, k: io.k.buffer, v: io.v.buffer, o: io.o.buffer });
    encodeMatmul(pass, mm.o, l.o);
    encodeDispatch(pass, l.postNorm);
    encodeMatmul(pass, mm.gateUp, l.gateUp);
    encodeDispatch(pass, l.swiglu);
    encodeMatmul(pass, mm.down, l.down);
  });
  encodeDispatch(pass, plan.finalNorm);
  encodeMatmul(pass, mm.lm, plan.lmHead);
  if (pick === 'none') return;
  const d = pick === 'argmax' ? plan.argmax : plan.sample;
  if (!d) throw new Error(`step plan b=${plan.b} t=${plan.t} computes every row's logits and picks no token`);
  encodeDispatch(pass, d);
}

export function destroyStepPlan(plan: StepPlan): void {
  for (const b of plan.buffers) b.destroy();
  for (const d of plan.dispatches) destroyDispatch(d);
}
