// The checkpoint on the GPU, uploaded once: f32 buffers in Hugging Face's [out, in] layout, with each
// layer's q, k and v projections stacked into one [3·heads·headDim, hidden] weight and its gate and up
// projections into one [2·intermediate, hidden] weight, so each input is read by one matmul (one
// dispatch), and the variant's parameters as the named buffers its factory asks for. The embedding and the LM
// head, the vocabulary-sized weights, are stored in parts of whole rows when one buffer cannot hold them
// (weight-parts.ts).
import type { Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import type { Tensor, TensorData } from '../tensor.ts';
import { uploadExactTensor } from './exact-tensor.ts';
import { rowRanges, uploadRowParts, weightBufferLimit, type RowParts } from './weight-parts.ts';
import { kvHeadsOf, type ModelConfig } from './config.ts';
import type { ModelWeights } from './weights.ts';

export interface GpuLayerWeights {
  readonly inputNorm: GpuTensor;
  /** [q; k; v] stacked: [3·heads·headDim, hidden]. */
  readonly qkv: GpuTensor;
  readonly oProj: GpuTensor;
  readonly postNorm: GpuTensor;
  /** [gate; up] stacked: [2·intermediate, hidden]. */
  readonly gateUp: GpuTensor;
  readonly downProj: GpuTensor;
  /** The variant's parameters, by the names in its `param` declarations. */
  readonly attention: Readonly<Record<string, GpuTensor>>;
}

export interface GpuModelWeights {
  readonly embedTokens: RowParts;
  readonly layers: readonly GpuLayerWeights[];
  readonly norm: GpuTensor;
  /** The same parts as embedTokens when tie_word_embeddings. */
  readonly lmHead: RowParts;
  /** Bytes a decode step reads for one sequence: every weight once, one embedding row. */
  readonly bytesPerToken: number;
  /** Bytes of every weight uploaded. */
  readonly bytes: number;
}

export { createExactTensor, uploadExactTensor } from './exact-tensor.ts';

/** Weights of equal input size stacked along the output axis: [Σ out, in]. */
function stack(...ts: Tensor[]): Tensor<Float32Array> {
  const data = new Float32Array(ts.reduce((s, t) => s + t.data.length, 0));
  let at = 0;
  for (const t of ts) {
    if (t.shape.slice(1).join() !== ts[0].shape.slice(1).join()) throw new Error(`stacking weights of shapes [${t.shape.join(', ')}] and [${ts[0].shape.join(', ')}]`);
    data.set(t.data, at);
    at += t.data.length;
  }
  return { shape: [ts.reduce((s, t) => s + t.shape[0], 0), ...ts[0].shape.slice(1)], data };
}

/**
 * A k or v projection [g·d, hidden] of grouped-query attention with each kv head's rows repeated for its group
 * of q heads: [h·d, hidden], so the step's attention sees h heads of k and v (HF's repeat_kv, done once on the
 * weights; it costs h/g times their memory and reads).
 */
function repeatKvRows(t: Tensor, kvHeads: number, heads: number, d: number): Tensor<Float32Array> {
  const cols = t.shape[1];
  const out = new Float32Array(heads * d * cols);
  const group = heads / kvHeads;
  for (let h = 0; h < heads; h++) {
    const g = Math.floor(h / group);
    for (let r = 0; r < d; r++) out.set(t.data.subarray((g * d + r) * cols, (g * d + r + 1) * cols), (h * d + r) * cols);
  }
  return { shape: [heads * d, cols], data: out };
}

export interface WeightUploadOptions {
  /** Bytes one weight buffer may hold, below the adapter's limits (tests: splits the tiny models' vocabulary weights). */
  readonly maxWeightBuffer?: number;
  /**
   * Bytes every weight together may take. WebGPU does not report an adapter's memory, so there is no default: a
   * caller who knows the memory it may use (or a test) sets it, and a model over it is refused before any upload.
   */
  readonly maxWeightBytes?: number;
  /**
   * The checkpoint's Medusa heads will be uploaded beside the model (a tree verifier's GpuSpeculativeHeads, after
   * the model): they count in the check and the total, or a model whose heads do not fit would fail only after
   * the base weights were uploaded.
   */
  readonly withMedusa?: boolean;
}

/**
 * Every buffer uploadModelWeights makes, by name and shape, checked against the per-buffer limit before anything
 * is allocated or read: the embedding and the LM head are split into parts of whole rows (refused only when one
 * row passes the limit); one error lists each other weight that does not fit. With `withMedusa` the heads'
 * stacked weights (as GpuSpeculativeHeads stores them) count too. WebGPU does not expose the adapter's memory, so
 * the total is checked only against `maxWeightBytes` when given, and returned.
 */
export function checkModelFits(gpu: Gpu, config: ModelConfig, w: ModelWeights<TensorData>, opts: WeightUploadOptions = {}): { bytes: number } {
  const H = config.hiddenSize;
  const limit = weightBufferLimit(gpu, opts.maxWeightBuffer);
  rowRanges('model.embed_tokens.weight', w.embedTokens.shape, limit);
  if (w.lmHead !== w.embedTokens) rowRanges('lm_head.weight', w.lmHead.shape, limit);
  const list: [string, number[]][] = [['model.norm.weight', [H]]];
  w.layers.forEach((l, n) => {
    const p = `model.layers.${n}`;
    list.push(
      [`${p}.input_layernorm.weight`, [H]],
      [`${p}.post_attention_layernorm.weight`, [H]],
      [`${p}.self_attn.{q,k,v}_proj.weight`, [3 * config.numHeads * config.headDim, H]],
      [`${p}.self_attn.o_proj.weight`, [...l.oProj.shape]],
      [`${p}.mlp.{gate,up}_proj.weight`, [2 * config.intermediateSize, H]],
      [`${p}.mlp.down_proj.weight`, [...l.downProj.shape]],
      ...Object.entries(l.attention).map(([name, t]): [string, number[]] => [`${p}.self_attn.${name}`, [...t.shape]]),
    );
  });
  const numel = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);
  // The heads as GpuSpeculativeHeads uploads them: proj and lm_head stacked over heads, in parts of whole rows;
  // the biases stacked into one [M·H] buffer (zeros for a head without one).
  const M = opts.withMedusa ? w.medusa.length : 0;
  let medusaBytes = 0; // the stacks and the bias, for the message
  let medusaStacks = 0; // the stacks alone (the bias is in list, checked against the limit with the rest)
  if (M > 0) {
    const stacks: [string, number[]][] = [['medusa.*.proj.weight (stacked)', [M * H, H]], ['medusa.*.lm_head.weight (stacked)', [M * config.vocabSize, H]]];
    for (const [name, shape] of stacks) rowRanges(name, shape, limit);
    list.push(['medusa.*.proj.bias (stacked)', [M * H]]);
    medusaStacks = stacks.reduce((s, [, shape]) => s + numel(shape) * 4, 0);
    medusaBytes = medusaStacks + M * H * 4;
  }
  const over = list.filter(([, shape]) => numel(shape) * 4 > limit);
  if (over.length) {
    throw new Error(
      `the model's weights do not fit ${gpu.adapterName}: ${over.map(([name, shape]) => `${name} [${shape.join(', ')}] needs ${mb(numel(shape) * 4)}`).join('; ')}, ` +
        `over one buffer's limit of ${mb(limit)} (maxStorageBufferBindingSize / maxBufferSize); only the embedding and the LM head are split across buffers`,
    );
  }
  const vocabBytes = numel(w.embedTokens.shape) * 4 + (w.lmHead !== w.embedTokens ? numel(w.lmHead.shape) * 4 : 0);
  const bytes = vocabBytes + list.reduce((s, [, shape]) => s + numel(shape) * 4, 0) + medusaStacks;
  if (opts.maxWeightBytes !== undefined && bytes > opts.maxWeightBytes) {
    const heads = medusaBytes ? ` (${mb(medusaBytes)} of them its ${M} Medusa heads)` : '';
    throw new Error(
      `the model's weights need ${mb(bytes)} in all${heads}, over the ${mb(opts.maxWeightBytes)} given for ${gpu.adapterName} ` +
        `(maxWeightBytes; WebGPU does not report an adapter's memory); nothing was uploaded`,
    );
  }
  return { bytes };
}

function mb(b: number): string {
  return b >= 2 ** 20 ? `${(b / 2 ** 20).toFixed(0)} MiB` : `${(b / 2 ** 10).toFixed(1)} KiB`;
}

export function uploadModelWeights(gpu: Gpu, config: ModelConfig, w: ModelWeights<TensorData>, opts: WeightUploadOptions = {}): GpuModelWeights {
  checkModelFits(gpu, config, w, opts);
  const limit = weightBufferLimit(gpu, opts.maxWeightBuffer);
  const kvHeads = kvHeadsOf(config);
  const toHeads = (t: Tensor) => (kvHeads === config.numHeads ? t : repeatKvRows(t, kvHeads, config.numHeads, config.headDim));
  const uploaded: GpuTensor[] = [];
  const up = (name: string, t: Tensor): GpuTensor => {
    const g = uploadExactTensor(gpu, name, t);
    uploaded.push(g);
    return g;
  };
  const upRows = (name: string, t: Tensor): RowParts => {
    const r = uploadRowParts(gpu, name, t, limit);
    uploaded.push(...r.parts.map((p) => p.tensor));
    return r;
  };
  try {
    const embedTokens = upRows('model.embed_tokens.weight', w.embedTokens);
    const layers = w.layers.map((l, n) => {
      const p = `model.layers.${n}`;
      return {
        inputNorm: up(`${p}.input_layernorm.weight`, l.inputNorm),
        qkv: up(`${p}.self_attn.{q,k,v}_proj.weight`, stack(l.qProj, toHeads(l.kProj), toHeads(l.vProj))),
        oProj: up(`${p}.self_attn.o_proj.weight`, l.oProj),
        postNorm: up(`${p}.post_attention_layernorm.weight`, l.postNorm),
        gateUp: up(`${p}.mlp.{gate,up}_proj.weight`, stack(l.gateProj, l.upProj)),
        downProj: up(`${p}.mlp.down_proj.weight`, l.downProj),
        attention: Object.fromEntries(Object.entries(l.attention).map(([name, t]) => [name, up(`${p}.self_attn.${name}`, t)])),
      };
    });
    const norm = up('model.norm.weight', w.norm);
    const lmHead = w.lmHead === w.embedTokens ? embedTokens : upRows('lm_head.weight', w.lmHead);
    const bytes = uploaded.reduce((s, t) => s + t.bytes, 0);
    const bytesPerToken = bytes - (lmHead === embedTokens ? 0 : embedTokens.bytes) + config.hiddenSize * 4;
    return { embedTokens, layers, norm, lmHead, bytes, bytesPerToken };
  } catch (e) {
    for (const t of uploaded) t.buffer.destroy();
    throw e;
  }
}

export function destroyModelWeights(w: GpuModelWeights): void {
  const all = new Set<GpuTensor>([w.norm, ...w.embedTokens.parts.map((p) => p.tensor), ...w.lmHead.parts.map((p) => p.tensor)]);
  for (const l of w.layers) {
    for (const t of [l.inputNorm, l.qkv, l.oProj, l.postNorm, l.gateUp, l.downProj]) all.add(t);
    for (const t of Object.values(l.attention)) all.add(t);
  }
  for (const t of all) t.buffer.destroy();
}
