// The checkpoint: which tensors a model has, under Hugging Face LLaMA's names, and loading them from
// model.safetensors with every tensor's presence and shape checked against config.json.
//
// Tensor names and shapes (h = num_attention_heads, g = num_key_value_heads, d = head_dim, linear weights are
// [out, in] as in HF):
//   model.embed_tokens.weight                         [vocab, hidden]
//   model.layers.N.input_layernorm.weight             [hidden]
//   model.layers.N.self_attn.q_proj.weight            [h·d, hidden]
//   model.layers.N.self_attn.{k,v}_proj.weight        [g·d, hidden]
//   model.layers.N.self_attn.o_proj.weight            [hidden, h·d]
//   model.layers.N.self_attn.<param>                  the variant's parameters, shapes given by the caller
//   model.layers.N.post_attention_layernorm.weight    [hidden]
//   model.layers.N.mlp.{gate,up}_proj.weight          [intermediate, hidden]
//   model.layers.N.mlp.down_proj.weight               [hidden, intermediate]
//   model.norm.weight                                 [hidden]
//   lm_head.weight                                    [vocab, hidden]   absent when tie_word_embeddings
//
// Medusa heads (when config.json has "medusa": {"num_heads": M}), for N = 0..M−1:
//   medusa.N.proj.weight                              [hidden, hidden]
//   medusa.N.proj.bias                                [hidden]          only with "medusa": {…, "bias": true}
//   medusa.N.lm_head.weight                           [vocab, hidden]
// Head N reads the base model's final-normed hidden state x_t (the input of lm_head) and predicts the
// token at position t + 2 + N (the base lm_head predicts t + 1):
//   logits_N = lm_head_N · (x_t + silu(proj_N · x_t + bias_N))   (Medusa-1's residual block; bias 0 without one)
// The Medusa project's own layout (medusa_lm_head.safetensors) is read by hf-medusa.ts.
//
// A file must hold exactly these tensors: a missing, mis-shaped, non-finite or unexpected tensor is an
// error naming the file and the tensor (SafetensorsError for an unreadable file or a missing or
// mis-shaped tensor, ModelFileError for the rest).
import { kvHeadsOf, type ModelConfig } from './config.ts';
import { ModelFileError, shapeString } from './errors.ts';
import { expectTensor, readSafetensors, SafetensorsError, type SafetensorsEntry } from '../io/safetensors.ts';
import type { Tensor, TensorData } from '../tensor.ts';

/** A parameter of the attention variant, stored per layer as `model.layers.N.self_attn.<name>`. */
export interface AttentionParamSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

export interface LayerWeights<D extends TensorData = TensorData> {
  readonly inputNorm: Tensor<D>;
  readonly qProj: Tensor<D>;
  readonly kProj: Tensor<D>;
  readonly vProj: Tensor<D>;
  readonly oProj: Tensor<D>;
  /** The variant's parameters by name (`w` → [h, e, K] for the depthwise convolution). */
  readonly attention: Readonly<Record<string, Tensor<D>>>;
  readonly postNorm: Tensor<D>;
  readonly gateProj: Tensor<D>;
  readonly upProj: Tensor<D>;
  readonly downProj: Tensor<D>;
}

export interface MedusaHeadWeights<D extends TensorData = TensorData> {
  readonly proj: Tensor<D>;
  /** The residual block's bias [hidden] (the Medusa project's heads have one). */
  readonly bias?: Tensor<D>;
  readonly lmHead: Tensor<D>;
}

export interface ModelWeights<D extends TensorData = TensorData> {
  readonly embedTokens: Tensor<D>;
  readonly layers: readonly LayerWeights<D>[];
  readonly norm: Tensor<D>;
  /** The same tensor as embedTokens when tie_word_embeddings. */
  readonly lmHead: Tensor<D>;
  readonly medusa: readonly MedusaHeadWeights<D>[];
}

export interface TensorSpec {
  readonly name: string;
  readonly shape: readonly number[];
}

const ATTENTION_PROJ_NAMES = new Set(['q_proj.weight', 'k_proj.weight', 'v_proj.weight', 'o_proj.weight']);

/** Every tensor a checkpoint of `config` holds, in file order. */
export function expectedTensors(config: ModelConfig, attentionParams: readonly AttentionParamSpec[]): TensorSpec[] {
  const { vocabSize: vocab, hiddenSize: hidden, intermediateSize: inter } = config;
  const hd = config.numHeads * config.headDim;
  const kvd = kvHeadsOf(config) * config.headDim;
  const seen = new Set<string>();
  for (const p of attentionParams) {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(p.name)) throw new Error(`attention parameter name ${JSON.stringify(p.name)} is not a valid tensor name part`);
    if (ATTENTION_PROJ_NAMES.has(p.name)) throw new Error(`attention parameter ${p.name} clashes with the q/k/v/o projections`);
    if (seen.has(p.name)) throw new Error(`attention parameter ${p.name} is listed twice`);
    if (!p.shape.every((s) => Number.isInteger(s) && s >= 1)) throw new Error(`attention parameter ${p.name} has shape ${shapeString(p.shape)}`);
    seen.add(p.name);
  }
  const specs: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [vocab, hidden] }];
  for (let n = 0; n < config.numLayers; n++) {
    const l = `model.layers.${n}`;
    specs.push(
      { name: `${l}.input_layernorm.weight`, shape: [hidden] },
      { name: `${l}.self_attn.q_proj.weight`, shape: [hd, hidden] },
      { name: `${l}.self_attn.k_proj.weight`, shape: [kvd, hidden] },
      { name: `${l}.self_attn.v_proj.weight`, shape: [kvd, hidden] },
      { name: `${l}.self_attn.o_proj.weight`, shape: [hidden, hd] },
      ...attentionParams.map((p) => ({ name: `${l}.self_attn.${p.name}`, shape: [...p.shape] })),
      { name: `${l}.post_attention_layernorm.weight`, shape: [hidden] },
      { name: `${l}.mlp.gate_proj.weight`, shape: [inter, hidden] },
      { name: `${l}.mlp.up_proj.weight`, shape: [inter, hidden] },
      { name: `${l}.mlp.down_proj.weight`, shape: [hidden, inter] },
    );
  }
  specs.push({ name: 'model.norm.weight', shape: [hidden] });
  if (!config.tieWordEmbeddings) specs.push({ name: 'lm_head.weight', shape: [vocab, hidden] });
  for (let n = 0; n < (config.medusa?.numHeads ?? 0); n++) {
    specs.push({ name: `medusa.${n}.proj.weight`, shape: [hidden, hidden] });
    if (config.medusa?.bias) specs.push({ name: `medusa.${n}.proj.bias`, shape: [hidden] });
    specs.push({ name: `medusa.${n}.lm_head.weight`, shape: [vocab, hidden] });
  }
  return specs;
}

/**
 * Checks `tensors` (read from `file`) against the config — presence, shape, finiteness, nothing extra —
 * and arranges them by layer.
 */
export function weightsFromTensors<D extends TensorData>(
  config: ModelConfig,
  tensors: ReadonlyMap<string, Tensor<D>>,
  attentionParams: readonly AttentionParamSpec[],
  file: string,
): ModelWeights<D> {
  const specs = expectedTensors(config, attentionParams);
  const expected = new Set(specs.map((s) => s.name));
  for (const name of tensors.keys()) {
    if (!expected.has(name)) {
      const why = name === 'lm_head.weight' && config.tieWordEmbeddings ? ' (config.json has tie_word_embeddings: true)' : '';
      throw new ModelFileError(file, name, `unexpected tensor, not described by ${config.file}${why}`);
    }
  }
  for (const spec of specs) {
    const t = tensors.get(spec.name);
    if (t === undefined) throw new ModelFileError(file, spec.name, `missing tensor (expected shape ${shapeString(spec.shape)})`);
    if (t.shape.length !== spec.shape.length || t.shape.some((s, i) => s !== spec.shape[i])) {
      throw new ModelFileError(file, spec.name, `expected shape ${shapeString(spec.shape)}, got ${shapeString(t.shape)}`);
    }
    const bad = t.data.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new ModelFileError(file, spec.name, `element ${bad} is ${t.data[bad]}`);
  }
  const get = (name: string): Tensor<D> => tensors.get(name)!;
  const layers: LayerWeights<D>[] = [];
  for (let n = 0; n < config.numLayers; n++) {
    const l = `model.layers.${n}`;
    layers.push({
      inputNorm: get(`${l}.input_layernorm.weight`),
      qProj: get(`${l}.self_attn.q_proj.weight`),
      kProj: get(`${l}.self_attn.k_proj.weight`),
      vProj: get(`${l}.self_attn.v_proj.weight`),
      oProj: get(`${l}.self_attn.o_proj.weight`),
      attention: Object.fromEntries(attentionParams.map((p) => [p.name, get(`${l}.self_attn.${p.name}`)])),
      postNorm: get(`${l}.post_attention_layernorm.weight`),
      gateProj: get(`${l}.mlp.gate_proj.weight`),
      upProj: get(`${l}.mlp.up_proj.weight`),
      downProj: get(`${l}.mlp.down_proj.weight`),
    });
  }
  const embedTokens = get('model.embed_tokens.weight');
  const medusa: MedusaHeadWeights<D>[] = [];
  for (let n = 0; n < (config.medusa?.numHeads ?? 0); n++) {
    medusa.push({ proj: get(`medusa.${n}.proj.weight`), ...(config.medusa?.bias && { bias: get(`medusa.${n}.proj.bias`) }), lmHead: get(`medusa.${n}.lm_head.weight`) });
  }
  return {
    embedTokens,
    layers,
    norm: get('model.norm.weight'),
    lmHead: config.tieWordEmbeddings ? embedTokens : get('lm_head.weight'),
    medusa,
  };
}

/** The name → tensor map a checkpoint of these weights holds (inverse of weightsFromTensors). */
export function weightsToTensors<D extends TensorData>(
  config: ModelConfig,
  weights: ModelWeights<D>,
  attentionParams: readonly AttentionParamSpec[],
): Map<string, Tensor<D>> {
  const out = new Map<string, Tensor<D>>();
  out.set('model.embed_tokens.weight', weights.embedTokens);
  weights.layers.forEach((w, n) => {
    const l = `model.layers.${n}`;
    out.set(`${l}.input_layernorm.weight`, w.inputNorm);
    out.set(`${l}.self_attn.q_proj.weight`, w.qProj);
    out.set(`${l}.self_attn.k_proj.weight`, w.kProj);
    out.set(`${l}.self_attn.v_proj.weight`, w.vProj);
    out.set(`${l}.self_attn.o_proj.weight`, w.oProj);
    for (const p of attentionParams) out.set(`${l}.self_attn.${p.name}`, w.attention[p.name]);
    out.set(`${l}.post_attention_layernorm.weight`, w.postNorm);
    out.set(`${l}.mlp.gate_proj.weight`, w.gateProj);
    out.set(`${l}.mlp.up_proj.weight`, w.upProj);
    out.set(`${l}.mlp.down_proj.weight`, w.downProj);
  });
  out.set('model.norm.weight', weights.norm);
  if (!config.tieWordEmbeddings) out.set('lm_head.weight', weights.lmHead);
  weights.medusa.forEach((m, n) => {
    out.set(`medusa.${n}.proj.weight`, m.proj);
    if (m.bias) out.set(`medusa.${n}.proj.bias`, m.bias);
    out.set(`medusa.${n}.lm_head.weight`, m.lmHead);
  });
  return out;
}

/**
 * Reads `path` (model.safetensors) and checks it against `config`: each expected tensor through the
 * shared expectTensor (its errors suggest similarly named tensors), then extras and values. Tensors
 * stay float32.
 */
export function loadWeights(config: ModelConfig, path: string, attentionParams: readonly AttentionParamSpec[]): ModelWeights<Float32Array> {
  let raw: Map<string, SafetensorsEntry>;
  try {
    raw = readSafetensors(path);
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    throw new ModelFileError(path, 'file', `cannot read: ${(e as Error).message}`);
  }
  const tensors = new Map<string, Tensor<Float32Array>>();
  for (const { name, shape } of expectedTensors(config, attentionParams)) {
    const t = expectTensor(raw, name, shape, path);
    tensors.set(name, { shape: t.shape, data: t.data });
  }
  for (const [name, t] of raw) if (!tensors.has(name)) tensors.set(name, { shape: t.shape, data: t.data });
  return weightsFromTensors(config, tensors, attentionParams, path);
}
