// One micro-batch of training on the GPU as a list of dispatches, made once per shape (b sequences × t tokens,
// rows = b·t) and recorded every step: the forward keeping what the backward reads, the LM head with its fused
// cross-entropy one block of rows at a time, and the backward adding every weight's gradient into the flat
// gradient buffer (param-layout.ts). cpu-grad.ts writes the same math in float64; here (x_l is res[2l],
// x_mid is res[2l+1]):
//
//   res[0] = E[ids];  normed = rmsnorm(res[0])·g₁
//   per layer l:  q, k, v = normed·W_{q,k,v}ᵀ;  o = attention(q, k, v);  delta = o·W_oᵀ
//                 res[2l+1] = res[2l] + delta;  normed = rmsnorm(res[2l+1])·g₂          (one kernel)
//                 g, u = normed·W_{g,u}ᵀ;  act = silu(g)·u;  delta = act·W_dᵀ
//                 res[2l+2] = res[2l+1] + delta;  normed = rmsnorm(res[2l+2])·(next g₁, or g_f)
//   per block of rows: logits = normed·W_lmᵀ → loss and dlogits in place → dW_lm += dlogitsᵀ·normed,
//                      dnormed = dlogits·W_lm
//   backward in reverse, recomputing the cheap activations (the two norms' outputs, act) rather than keeping
//   them; saved per layer: res, q, k, v, o, g, u.
//
// A weight gradient dW = dYᵀ·X contracts over rows; with few output tiles the rows are split over grid layers
// (split K) whose partial products a column sum adds in a fixed order. Nothing uses atomics: a step's
// numbers repeat bit for bit.
import type { MatmulProblem } from '../../../backends/wgsl/matmul.ts';
import { crossEntropyParams } from '../../../backends/wgsl/train-loss.ts';
import { floatRange, type Binding } from '../../runtime/buffer-range.ts';
import type { Gpu } from '../../runtime/device.ts';
import { planMatmul, type MatmulPlan } from '../../runtime/matmul.ts';
import { destroyDispatch, type BoundDispatch, type ModelKernels } from '../../runtime/model-kernels.ts';
import { stepResources } from './step-resources.ts';
import {
  bindColumnSum, bindCrossEntropy, bindEmbeddingBackward, bindEmbeddingRows, bindMatmulRanges, bindNormRows, bindResidualNorm,
  bindRmsnormBackward, bindSumBlocks, bindSwigluBackward, bindSwigluForward, columnSumScratch, type TrainKernels,
} from '../../runtime/train-kernels.ts';
import type { ModelConfig } from '../config.ts';
import { slotOf, type ParamLayout } from './param-layout.ts';

/** A step of the plan: a bound dispatch, or a layer's attention (forward or backward) on its saved q, k, v, o. */
export type TrainOp = BoundDispatch | { readonly attention: 'forward' | 'backward'; readonly layer: number };

export interface LayerActivations {
  readonly q: GPUBuffer;
  readonly k: GPUBuffer;
  readonly v: GPUBuffer;
  readonly o: GPUBuffer;
}

export interface TrainStepPlan {
  readonly b: number;
  readonly t: number;
  readonly rows: number;
  /** u32 [rows] inputs and targets, the embedding's CSR (u32 [vocab + 1] starts, u32 [rows] rows). */
  readonly ids: GPUBuffer;
  readonly targets: GPUBuffer;
  readonly starts: GPUBuffer;
  readonly csrRows: GPUBuffer;
  readonly layers: readonly LayerActivations[];
  /** The attention backward's shared cotangents [rows, heads·headDim]. */
  readonly dO: GPUBuffer;
  readonly dQ: GPUBuffer;
  readonly dK: GPUBuffer;
  readonly dV: GPUBuffer;
  /** f32 [rows]: each row's loss. */
  readonly rowLoss: GPUBuffer;
  /** Forward, loss and backward of one micro-batch whose gradient is scaled by 1/(rows·micro-batches). */
  readonly train: readonly TrainOp[];
  /** Sets the micro-batches per step that `train`'s gradient is scaled for (1 when built); encode after it. */
  readonly setMicroBatches: (n: number) => void;
  /** Forward and loss only. */
  readonly evaluate: readonly TrainOp[];
  /** The dispatches writing the mean of rowLoss into slot `slot` of the trainer's loss buffer. */
  readonly lossSum: (slot: number) => readonly BoundDispatch[];
  readonly buffers: readonly GPUBuffer[];
  readonly dispatches: readonly BoundDispatch[];
}

/** What a plan binds: the trainer's kernels, flat buffers and matmul plans. */
export interface TrainContext {
  readonly gpu: Gpu;
  readonly config: ModelConfig;
  readonly model: ModelKernels;
  readonly kernels: TrainKernels;
  /** The optimizer's grouped layout: slot s lives in params[s.group] / grads[s.group] at s.groupOffset. */
  readonly layout: ParamLayout;
  readonly params: readonly GPUBuffer[];
  readonly grads: readonly GPUBuffer[];
  /** Mean losses, one float per micro-batch slot. */
  readonly losses: GPUBuffer;
  /** Split-K layers for a weight gradient [out, in] over `rows` (1: none). */
  readonly splits: (out: number, inDim: number, rows: number) => number;
  /** The most logits a block may hold, in floats. */
  readonly logitsBudget: number;
  readonly matmul: (p: MatmulProblem) => Promise<MatmulPlan>;
}

/** Rows per LM-head block: the budget's worth, a multiple of 64 (so a block starts 256-byte aligned), at most rows. */
export function lmHeadBlockRows(rows: number, vocab: number, budget: number): number {
  const fit = Math.max(64, Math.floor(budget / vocab / 64) * 64);
  return Math.min(rows, fit);
}

/** Matmul plans cached by problem; every training matmul takes the tiled path (any number of rows). */
export function trainMatmulCache(gpu: Gpu): { readonly get: (p: MatmulProblem) => Promise<MatmulPlan>; readonly destroy: () => Promise<void> } {
  const plans = new Map<string, Promise<MatmulPlan>>();
  return {
    get(p) {
      const key = JSON.stringify(p);
      let plan = plans.get(key);
      if (!plan) {
        plan = planMatmul(gpu, p, { path: 'tiled', label: 'train' });
        plans.set(key, plan);
        plan.catch(() => plans.delete(key));
      }
      return plan;
    },
    async destroy() {
      for (const plan of plans.values()) (await plan).params.destroy();
      plans.clear();
    },
  };
}

/** y = x·Wᵀ (x [r, in], W [out, in]) into y. */
export async function forwardMatmulOp(ctx: TrainContext, x: Binding, w: Binding, y: Binding, r: number, inDim: number, out: number): Promise<BoundDispatch> {
  return bindMatmulRanges(ctx.gpu, await ctx.matmul({ M: r, N: out, K: inDim, transposeB: true }), { a: x, w, c: y });
}

/** dx (+)= dy·W (dy [r, out], W [out, in]). */
export async function inputGradOp(ctx: TrainContext, dy: Binding, w: Binding, dx: Binding, r: number, inDim: number, out: number, accumulate: boolean): Promise<BoundDispatch> {
  return bindMatmulRanges(ctx.gpu, await ctx.matmul({ M: r, N: inDim, K: out, transposeB: false, ...(accumulate && { fusion: { epilogue: 'accumulate' as const } }) }), { a: dy, w, c: dx });
}

/** Floats of the split-K partials the largest of these weight gradients ([out, in, rows] each) needs (0: none splits). */
export function splitPartialFloats(ctx: TrainContext, problems: readonly (readonly [number, number, number])[]): number {
  return Math.max(0, ...problems.map(([o, i, r]) => { const s = ctx.splits(o, i, r); return s > 1 ? s * o * i : 0; }));
}

/** dW += dyᵀ·x, split over rows into `partials` (splitPartialFloats) when the output has few tiles, summed in a fixed order. */
export async function weightGradOps(
  ctx: TrainContext, partials: GPUBuffer | undefined, dy: Binding, x: Binding, dw: Binding, r: number, inDim: number, out: number, label: string,
): Promise<BoundDispatch[]> {
  const { gpu } = ctx;
  const s = ctx.splits(out, inDim, r);
  if (s <= 1) return [bindMatmulRanges(gpu, await ctx.matmul({ M: out, N: inDim, K: r, transposeA: true, transposeB: false, fusion: { epilogue: 'accumulate' } }), { a: dy, w: x, c: dw })];
  if (!partials) throw new Error(`${label}: a split-K weight gradient needs its partials buffer`);
  const plan = await ctx.matmul({ M: out, N: inDim, K: r, transposeA: true, transposeB: false, splitK: s });
  const part = floatRange(partials, 0, plan.splits * out * inDim);
  return [bindMatmulRanges(gpu, plan, { a: dy, w: x, c: part }), ...bindColumnSum(gpu, ctx.kernels, { x: part, target: dw }, plan.splits, out * inDim, label)];
}

export async function buildTrainStep(ctx: TrainContext, b: number, t: number): Promise<TrainStepPlan> {
  const { gpu, config, layout } = ctx;
  const rows = b * t;
  const H = config.hiddenSize;
  const hd = config.numHeads * config.headDim;
  const I = config.intermediateSize;
  const V = config.vocabSize;
  const L = config.numLayers;
  const tag = `b=${b} t=${t}`;
  const res = stepResources(gpu, tag);
  const { made, dispatches, buffer, bound } = res;
  try {
    const ids = buffer('token ids', rows);
    const targets = buffer('targets', rows);
    const starts = buffer('embedding CSR starts', V + 1);
    const csrRows = buffer('embedding CSR rows', rows);
    const res = Array.from({ length: 2 * L + 1 }, (_, i) => buffer(`residual ${i}`, rows * H));
    const normed = buffer('normed', rows * H);
    const delta = buffer('delta (forward), gain products (backward)', rows * H);
    const layers = Array.from({ length: L }, (_, l) => ({ q: buffer(`layer ${l} q`, rows * hd), k: buffer(`layer ${l} k`, rows * hd), v: buffer(`layer ${l} v`, rows * hd), o: buffer(`layer ${l} o`, rows * hd) }));
    const gates = Array.from({ length: L }, (_, l) => ({ g: buffer(`layer ${l} gate`, rows * I), u: buffer(`layer ${l} up`, rows * I) }));
    const act = buffer('act', rows * I);
    const dres = buffer('d residual', rows * H);
    const dnormed = buffer('d normed', rows * H);
    const [dO, dQ, dK, dV] = ['do', 'dq', 'dk', 'dv'].map((n) => buffer(n, rows * hd));
    const [dAct, dG, dU] = ['d act', 'd gate', 'd up'].map((n) => buffer(n, rows * I));
    const rowLoss = buffer('row losses', rows);
    const blockRows = lmHeadBlockRows(rows, V, ctx.logitsBudget);
    const logits = buffer('logits block', blockRows * V);
    const gainScratch = columnSumScratch(rows, H);
    const colScratch = gainScratch > 0 ? buffer('column sum partials', gainScratch) : undefined;
    const lossPartials = buffer('loss partials', Math.ceil(rows / 1024));

    // Weight-gradient matmuls: their split and the largest partial buffer any of them needs.
    const gradProblems: [number, number, number][] = [[hd, H, rows], [H, hd, rows], [I, H, rows], [H, I, rows], [V, H, blockRows], [V, H, rows % blockRows || blockRows]];
    const partialFloats = splitPartialFloats(ctx, gradProblems);
    const partials = partialFloats > 0 ? buffer('split-K partials', partialFloats) : undefined;

    const p = (name: string): Binding => { const s = slotOf(layout, name); return floatRange(ctx.params[s.group], s.groupOffset, s.size); };
    const gr = (name: string): Binding => { const s = slotOf(layout, name); return floatRange(ctx.grads[s.group], s.groupOffset, s.size); };
    const lmName = config.tieWordEmbeddings ? 'model.embed_tokens.weight' : 'lm_head.weight';
    const layerName = (l: number, n: string) => `model.layers.${l}.${n}`;

    const forwardMatmul = async (x: Binding, w: Binding, y: Binding, r: number, inDim: number, out: number) => bound(await forwardMatmulOp(ctx, x, w, y, r, inDim, out));
    const inputGrad = async (dy: Binding, w: Binding, dx: Binding, r: number, inDim: number, out: number, accumulate: boolean) =>
      bound(await inputGradOp(ctx, dy, w, dx, r, inDim, out, accumulate));
    const weightGrad = async (dy: Binding, x: Binding, dw: Binding, r: number, inDim: number, out: number, what: string): Promise<BoundDispatch[]> =>
      (await weightGradOps(ctx, partials, dy, x, dw, r, inDim, out, `${what} K splits [${tag}]`)).map(bound);
    const normBackward = (x: GPUBuffer, gainName: string, accumulate: boolean, what: string): BoundDispatch[] => [
      bound(bindRmsnormBackward(gpu, ctx.kernels, { x, gain: p(gainName), dy: dnormed, dx: dres, gp: delta }, rows, accumulate, `${what} backward [${tag}]`)),
      ...bindColumnSum(gpu, ctx.kernels, { x: delta, target: gr(gainName), ...(colScratch && { scratch: colScratch }) }, rows, H, `${what} gain gradient [${tag}]`).map(bound),
    ];
    const plainNorm = (x: GPUBuffer, gainName: string, what: string) => bound(bindNormRows(gpu, ctx.model, { x, gain: p(gainName), y: normed }, rows, `${what} [${tag}]`));

    // Forward.
    const forward: TrainOp[] = [
      bound(bindEmbeddingRows(gpu, ctx.model, { ids, embed: p('model.embed_tokens.weight'), x: res[0] }, rows, `embedding [${tag}]`)),
      plainNorm(res[0], layerName(0, 'input_layernorm.weight'), 'layer 0 input norm'),
    ];
    for (let l = 0; l < L; l++) {
      const a = layers[l];
      const nextGain = l + 1 < L ? layerName(l + 1, 'input_layernorm.weight') : 'model.norm.weight';
      forward.push(
        await forwardMatmul(normed, p(layerName(l, 'self_attn.q_proj.weight')), a.q, rows, H, hd),
        await forwardMatmul(normed, p(layerName(l, 'self_attn.k_proj.weight')), a.k, rows, H, hd),
        await forwardMatmul(normed, p(layerName(l, 'self_attn.v_proj.weight')), a.v, rows, H, hd),
        { attention: 'forward', layer: l },
        await forwardMatmul(a.o, p(layerName(l, 'self_attn.o_proj.weight')), delta, rows, hd, H),
        bound(bindResidualNorm(gpu, ctx.kernels, { xPrev: res[2 * l], delta, gain: p(layerName(l, 'post_attention_layernorm.weight')), xNew: res[2 * l + 1], y: normed }, rows, `layer ${l} residual + post norm [${tag}]`)),
        await forwardMatmul(normed, p(layerName(l, 'mlp.gate_proj.weight')), gates[l].g, rows, H, I),
        await forwardMatmul(normed, p(layerName(l, 'mlp.up_proj.weight')), gates[l].u, rows, H, I),
        bound(bindSwigluForward(gpu, ctx.kernels, { g: gates[l].g, u: gates[l].u, act }, rows * I, `layer ${l} swiglu [${tag}]`)),
        await forwardMatmul(act, p(layerName(l, 'mlp.down_proj.weight')), delta, rows, I, H),
        bound(bindResidualNorm(gpu, ctx.kernels, { xPrev: res[2 * l + 1], delta, gain: p(nextGain), xNew: res[2 * l + 2], y: normed }, rows, `layer ${l} residual + next norm [${tag}]`)),
      );
    }

    // The LM head, block by block: training (loss, dlogits, dW_lm, dnormed) and evaluation (loss only).
    const headTrain: TrainOp[] = [];
    const lossUniforms: { buffer: GPUBuffer; rows: number; row0: number }[] = [];
    const headEval: TrainOp[] = [];
    for (let row0 = 0; row0 < rows; row0 += blockRows) {
      const r = Math.min(blockRows, rows - row0);
      const y = floatRange(normed, row0 * H, r * H);
      const z = floatRange(logits, 0, r * V);
      const logitsOp = await forwardMatmul(y, p(lmName), z, r, H, V);
      const what = `lm head rows ${row0}..${row0 + r - 1}`;
      headEval.push(logitsOp, bound(bindCrossEntropy(gpu, ctx.kernels, { z, targets, loss: rowLoss }, { rows: r, row0, scale: undefined }, `${what} loss [${tag}]`)));
      const lossAndGrad = bound(bindCrossEntropy(gpu, ctx.kernels, { z, targets, loss: rowLoss }, { rows: r, row0, scale: 1 / rows }, `${what} loss and dlogits [${tag}]`));
      lossUniforms.push({ buffer: lossAndGrad.owned[0], rows: r, row0 });
      headTrain.push(
        logitsOp,
        lossAndGrad,
        ...(await weightGrad(z, y, gr(lmName), r, H, V, 'lm head')),
        await inputGrad(z, p(lmName), floatRange(dnormed, row0 * H, r * H), r, H, V, false),
      );
    }

    // Backward.
    const backward: TrainOp[] = [...normBackward(res[2 * L], 'model.norm.weight', false, 'final norm')];
    for (let l = L - 1; l >= 0; l--) {
      const a = layers[l];
      const w = (n: string) => p(layerName(l, n));
      const dw = (n: string) => gr(layerName(l, n));
      backward.push(
        plainNorm(res[2 * l + 1], layerName(l, 'post_attention_layernorm.weight'), `layer ${l} post norm (recomputed)`),
        bound(bindSwigluForward(gpu, ctx.kernels, { g: gates[l].g, u: gates[l].u, act }, rows * I, `layer ${l} swiglu (recomputed) [${tag}]`)),
        ...(await weightGrad(dres, act, dw('mlp.down_proj.weight'), rows, I, H, `layer ${l} down`)),
        await inputGrad(dres, w('mlp.down_proj.weight'), dAct, rows, I, H, false),
        bound(bindSwigluBackward(gpu, ctx.kernels, { g: gates[l].g, u: gates[l].u, dact: dAct, dg: dG, du: dU }, rows * I, `layer ${l} swiglu backward [${tag}]`)),
        ...(await weightGrad(dG, normed, dw('mlp.gate_proj.weight'), rows, H, I, `layer ${l} gate`)),
        ...(await weightGrad(dU, normed, dw('mlp.up_proj.weight'), rows, H, I, `layer ${l} up`)),
        await inputGrad(dG, w('mlp.gate_proj.weight'), dnormed, rows, H, I, false),
        await inputGrad(dU, w('mlp.up_proj.weight'), dnormed, rows, H, I, true),
        ...normBackward(res[2 * l + 1], layerName(l, 'post_attention_layernorm.weight'), true, `layer ${l} post norm`),
        plainNorm(res[2 * l], layerName(l, 'input_layernorm.weight'), `layer ${l} input norm (recomputed)`),
        ...(await weightGrad(dres, a.o, dw('self_attn.o_proj.weight'), rows, hd, H, `layer ${l} o`)),
        await inputGrad(dres, w('self_attn.o_proj.weight'), dO, rows, hd, H, false),
        { attention: 'backward', layer: l },
        ...(await weightGrad(dQ, normed, dw('self_attn.q_proj.weight'), rows, H, hd, `layer ${l} q`)),
        ...(await weightGrad(dK, normed, dw('self_attn.k_proj.weight'), rows, H, hd, `layer ${l} k`)),
        ...(await weightGrad(dV, normed, dw('self_attn.v_proj.weight'), rows, H, hd, `layer ${l} v`)),
        await inputGrad(dQ, w('self_attn.q_proj.weight'), dnormed, rows, H, hd, false),
        await inputGrad(dK, w('self_attn.k_proj.weight'), dnormed, rows, H, hd, true),
        await inputGrad(dV, w('self_attn.v_proj.weight'), dnormed, rows, H, hd, true),
        ...normBackward(res[2 * l], layerName(l, 'input_layernorm.weight'), true, `layer ${l} input norm`),
      );
    }
    backward.push(bound(bindEmbeddingBackward(gpu, ctx.kernels, { starts, rows: csrRows, dx: dres, dE: gr('model.embed_tokens.weight') }, V, `embedding backward [${tag}]`)));

    // The micro-batch's mean loss goes to its slot of ctx.losses; the dispatches are made once per slot.
    const perBlock = 1024;
    const partialCount = Math.ceil(rows / perBlock);
    const sumRowLosses = bound(bindSumBlocks(gpu, ctx.kernels, { x: rowLoss, out: lossPartials }, { count: rows, perBlock, outIndex: 0, scale: 1, square: false }, `row losses [${tag}]`));
    const slots = new Map<number, readonly BoundDispatch[]>();
    const lossSum = (slot: number): readonly BoundDispatch[] => {
      let ops = slots.get(slot);
      if (!ops) {
        const mean = bindSumBlocks(gpu, ctx.kernels, { x: lossPartials, out: ctx.losses }, { count: partialCount, perBlock: partialCount, outIndex: slot, scale: 1 / rows, square: false }, `mean loss → slot ${slot} [${tag}]`);
        ops = [sumRowLosses, bound(mean)];
        slots.set(slot, ops);
      }
      return ops;
    };
    let micro = 1;
    const setMicroBatches = (n: number) => {
      if (n === micro) return;
      for (const u of lossUniforms) gpu.device.queue.writeBuffer(u.buffer, 0, crossEntropyParams(u.rows, u.row0, 1 / (rows * n), true));
      micro = n;
    };
    return {
      b, t, rows, ids, targets, starts, csrRows, layers, dO, dQ, dK, dV, rowLoss,
      train: [...forward, ...headTrain, ...backward], setMicroBatches,
      evaluate: [...forward, ...headEval],
      lossSum, buffers: made, dispatches,
    };
  } catch (e) {
    res.destroy();
    throw e;
  }
}

export function destroyTrainStep(plan: TrainStepPlan): void {
  for (const b of plan.buffers) b.destroy();
  for (const d of plan.dispatches) destroyDispatch(d);
}
