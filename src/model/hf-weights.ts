// A Hugging Face LLaMA checkpoint (hf-checkpoint.ts) as our ModelWeights. Tensor names are Hugging Face's already
// (weights.ts lists them); the variant's parameters come from the paper's extra tensors (hf-linearized.ts). Every
// tensor's shape is checked from the header before it is read, with the config fields it follows from; what the
// checkpoint holds beyond the model is refused by name, except what carries no weights (rotary_emb.inv_freq
// buffers of older checkpoints, conv_mask after its check, lm_head.weight of a tied model).
import { kvHeadsOf, type ModelConfig } from './config.ts';
import { ModelFileError, shapeString } from './errors.ts';
import type { HfCheckpoint } from './hf-checkpoint.ts';
import { checkConvMask, CONV_MASK, CONV_TENSOR, GLOBAL_FACTOR_TENSOR, linearizedParamSource } from './hf-linearized.ts';
import { expectedTensors, weightsFromTensors, type AttentionParamSpec, type ModelWeights } from './weights.ts';
import type { Tensor } from '../tensor.ts';

/**
 * Tensors whose data is read from the checkpoint when used and then dropped, but for the last few (an upload reads
 * a weight's data a few times in a row, q, k and v in turn): a model larger than the host wants twice is uploaded
 * with at most those few tensors in host memory.
 */
class LazyTensors {
  private readonly recent: { name: string; data: Float32Array }[] = [];
  constructor(
    private readonly ckpt: HfCheckpoint,
    private readonly keep = 4,
  ) {}

  tensor(name: string, shape: readonly number[], convert?: (x: Float32Array) => Float32Array): Tensor<Float32Array> {
    const self = this;
    return {
      shape: [...shape],
      get data(): Float32Array {
        return self.read(name, convert);
      },
    };
  }

  private read(name: string, convert?: (x: Float32Array) => Float32Array): Float32Array {
    const hit = this.recent.findIndex((r) => r.name === name);
    if (hit >= 0) return this.recent[hit].data;
    const raw = this.ckpt.read(name).data;
    const data = convert ? convert(raw) : raw;
    this.recent.push({ name, data });
    if (this.recent.length > this.keep) this.recent.shift();
    return data;
  }
}

/**
 * Reads every tensor the config and the variant's parameters ask of `ckpt`, checked, as float32. `lazy`: each
 * tensor's data is read when used (closed shards are reopened for it), for uploading a large model to the GPU.
 */
export function loadHfWeights(config: ModelConfig, ckpt: HfCheckpoint, params: readonly AttentionParamSpec[], opts: { lazy?: boolean } = {}): ModelWeights<Float32Array> {
  const lazy = opts.lazy ? new LazyTensors(ckpt) : undefined;
  const tensors = new Map<string, Tensor<Float32Array>>();
  const used = new Set<string>();
  for (const spec of expectedTensors(config, params)) {
    const m = /^model\.layers\.(\d+)\.self_attn\.(.+)$/.exec(spec.name);
    const source = m && params.some((p) => p.name === m[2]) ? linearizedParamSource(Number(m[1]), m[2], spec.shape) : undefined;
    const name = source?.tensor ?? spec.name;
    const shape = source?.shape ?? spec.shape;
    const info = ckpt.info(name);
    if (!info) throw new ModelFileError(ckpt.file, name, `missing tensor (expected shape ${shapeString(shape)}${why(config, name)})`);
    if (info.shape.length !== shape.length || info.shape.some((s, k) => s !== shape[k])) {
      throw new ModelFileError(info.file, name, `expected shape ${shapeString(shape)}${why(config, name)}, got ${shapeString(info.shape)}`);
    }
    if (lazy) tensors.set(spec.name, lazy.tensor(name, spec.shape, source?.convert));
    else {
      const t = ckpt.read(name);
      tensors.set(spec.name, { shape: [...spec.shape], data: source ? source.convert(t.data) : t.data });
    }
    used.add(name);
  }
  for (const name of ckpt.names) {
    if (used.has(name)) continue;
    if (/\.rotary_emb\.inv_freq$/.test(name)) continue;
    if (name === 'lm_head.weight' && config.tieWordEmbeddings) continue;
    if (name.endsWith(`.self_attn.${CONV_MASK}`) && used.has(name.replace(CONV_MASK, CONV_TENSOR))) {
      checkConvMask(name, ckpt.read(name), ckpt.info(name)!.file);
      continue;
    }
    const linearized = name.endsWith(`.self_attn.${CONV_TENSOR}`) || name.endsWith(`.self_attn.${GLOBAL_FACTOR_TENSOR}`);
    const hint = linearized ? ` (a linearized layer's tensor, but the attention is ${config.attention.variant}: leave --attention at auto, or name the linearized layer)` : '';
    throw new ModelFileError(ckpt.info(name)!.file, name, `unexpected tensor, not part of the model ${config.file} describes${hint}`);
  }
  return weightsFromTensors(config, tensors, params, ckpt.file);
}

/** The config fields a tensor's shape follows from, for shape errors. */
function why(config: ModelConfig, name: string): string {
  if (/\.(k|v)_proj\.weight$/.test(name)) return ` = num_key_value_heads ${kvHeadsOf(config)} × head_dim ${config.headDim}, hidden_size ${config.hiddenSize}`;
  if (/\.q_proj\.weight$/.test(name)) return ` = num_attention_heads ${config.numHeads} × head_dim ${config.headDim}, hidden_size ${config.hiddenSize}`;
  if (/(embed_tokens|lm_head)\.weight$/.test(name)) return ` = vocab_size ${config.vocabSize}, hidden_size ${config.hiddenSize}`;
  if (/mlp\.(gate|up|down)_proj\.weight$/.test(name)) return ` (intermediate_size ${config.intermediateSize}, hidden_size ${config.hiddenSize})`;
  return '';
}
