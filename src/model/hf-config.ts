// A Hugging Face LLaMA directory's config.json (and generation_config.json) as our ModelConfig: LlamaConfig's
// fields — hidden and intermediate sizes, heads and num_key_value_heads (grouped-query attention), head_dim,
// rms_norm_eps, rope_theta / rope_scaling (or transformers 5's rope_parameters), tie_word_embeddings, bos/eos —
// plus the attention variant that stands in for LlamaAttention:
//
//   softmax              examples/models/llama/softmax_rope.la       (LLaMA itself: D = head_dim)
//   linearized-local     examples/models/llama/linearized_local.la   the paper's checkpoints (You et al. 2024,
//   linearized-grouped   examples/models/llama/linearized_grouped.la GATECH-EIC/Linearized-LLM): group C = 64,
//   linearized-aug       examples/models/llama/linearized_aug.la     masked conv K = 32 (hf-linearized.ts)
//   linearized-local-conv examples/models/llama/linearized_local_conv.la
//
// Which one a checkpoint needs is not in its config.json: the authors' inference code selects the linearized layer
// with environment flags (USE_LINEAR, USE_GLOBAL, GLOBAL_FACTOR, ADD_CONV in experiments/medusa/model/
// modeling_llama_kv.py) and their training code with config._attn_implementation == "linear" plus group_size and
// res_kernel_size. So `auto` reads the tensors: self_attn.global_factor means the grouped term's learned scale,
// self_attn.dwconv.weight the masked convolution; with neither, "_attn_implementation": "linear" or a positive
// group_size in config.json means the local term alone; otherwise softmax.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseConfig, REPO_ROOT, type ModelConfig } from './config.ts';
import { ModelFileError } from './errors.ts';
import type { HfCheckpoint } from './hf-checkpoint.ts';
import { CONV_TENSOR, GLOBAL_FACTOR_TENSOR, linearizedOptions } from './hf-linearized.ts';

export const HF_ATTENTIONS = ['softmax', 'linearized-local', 'linearized-local-conv', 'linearized-grouped', 'linearized-aug'] as const;
export type HfAttention = (typeof HF_ATTENTIONS)[number];

const VARIANT_FILES: Record<HfAttention, string> = {
  softmax: 'examples/models/llama/softmax_rope.la',
  'linearized-local': 'examples/models/llama/linearized_local.la',
  'linearized-local-conv': 'examples/models/llama/linearized_local_conv.la',
  'linearized-grouped': 'examples/models/llama/linearized_grouped.la',
  'linearized-aug': 'examples/models/llama/linearized_aug.la',
};

/** Model types whose checkpoints are LLaMA's layout and math. */
const LLAMA_TYPES = ['llama'];

/** Is this parsed config.json Hugging Face's (a model_type, no linattn "attention")? */
export function isHfConfigJson(json: unknown): boolean {
  return typeof json === 'object' && json !== null && !Array.isArray(json) && 'model_type' in json && !('attention' in json);
}

export interface HfConfigResult {
  readonly config: ModelConfig;
  readonly attention: HfAttention;
  /** Why that attention (auto-detection's evidence, or "asked for"). */
  readonly because: string;
}

/** The attention `auto` picks for a checkpoint (see the top of this file), with the evidence. */
export function detectHfAttention(root: Record<string, unknown>, ckpt: HfCheckpoint): { attention: HfAttention; because: string } {
  const conv = ckpt.has(`model.layers.0.self_attn.${CONV_TENSOR}`);
  const global = ckpt.has(`model.layers.0.self_attn.${GLOBAL_FACTOR_TENSOR}`);
  if (conv || global) {
    const attention: HfAttention = conv && global ? 'linearized-aug' : conv ? 'linearized-local-conv' : 'linearized-grouped';
    const has = [global && `self_attn.${GLOBAL_FACTOR_TENSOR}`, conv && `self_attn.${CONV_TENSOR}`].filter(Boolean).join(' and ');
    return { attention, because: `layer 0 has ${has}` };
  }
  if (root['_attn_implementation'] === 'linear') return { attention: 'linearized-local', because: 'config.json has "_attn_implementation": "linear"' };
  if (typeof root['group_size'] === 'number' && root['group_size'] > 0) return { attention: 'linearized-local', because: `config.json has group_size ${root['group_size']}` };
  return { attention: 'softmax', because: 'no linearized layer\'s tensors or config keys' };
}

/**
 * ModelConfig of the Hugging Face directory whose config.json is `file`, with attention `choice` (auto: detected
 * from `ckpt`). The translated fields go through parseConfig, so every check and message of our own format applies.
 */
export function parseHfConfig(json: unknown, file: string, ckpt: HfCheckpoint, choice: HfAttention | 'auto' = 'auto'): HfConfigResult {
  const fail = (field: string, detail: string): never => {
    throw new ModelFileError(file, field, detail);
  };
  const root = json as Record<string, unknown>;
  const type = root['model_type'];
  if (!LLAMA_TYPES.includes(type as string)) fail('model_type', `${JSON.stringify(type)} is not supported (supported: ${LLAMA_TYPES.join(', ')}: LlamaForCausalLM checkpoints)`);
  for (const flag of ['attention_bias', 'mlp_bias']) if (root[flag] === true) fail(flag, 'biases on the projections are not supported (LLaMA has none)');
  const { attention, because } = choice === 'auto' ? detectHfAttention(root, ckpt) : { attention: choice, because: 'asked for' };
  const heads = root['num_attention_heads'];
  const hidden = root['hidden_size'];
  const headDim = root['head_dim'] ?? (typeof heads === 'number' && typeof hidden === 'number' ? hidden / heads : undefined);
  const gen = generationConfig(dirname(file));
  const special = (key: 'bos_token_id' | 'eos_token_id'): number | undefined => {
    const v = gen.values[key] ?? root[key];
    const first = Array.isArray(v) ? v[0] : v;
    if (first === undefined || first === null) return undefined;
    if (!Number.isInteger(first)) fail(key, `expected a token id (or a list of them), got ${JSON.stringify(v)}`);
    return first as number;
  };
  const dir = dirname(file);
  if (!existsSync(join(dir, 'tokenizer.json'))) {
    const low = (['bos_token_id', 'eos_token_id'] as const).filter((k) => (special(k) ?? 256) < 256);
    if (low.length) {
      const sp = existsSync(join(dir, 'tokenizer.model')) ? ' (tokenizer.model is SentencePiece\'s format)' : '';
      fail('tokenizer', `no tokenizer.json in ${dir}${sp}, and bytes cannot stand in for it (${low.join(', ')} below 256): ` +
        `write one with transformers: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)`);
    }
  }
  const ours: Record<string, unknown> = {
    vocab_size: root['vocab_size'],
    hidden_size: hidden,
    intermediate_size: root['intermediate_size'],
    num_hidden_layers: root['num_hidden_layers'],
    num_attention_heads: heads,
    ...(root['num_key_value_heads'] !== undefined && root['num_key_value_heads'] !== null && { num_key_value_heads: root['num_key_value_heads'] }),
    ...(headDim !== undefined && { head_dim: headDim }),
    rms_norm_eps: root['rms_norm_eps'] ?? 1e-6, // LlamaConfig's default
    tie_word_embeddings: root['tie_word_embeddings'] ?? false,
    max_position_embeddings: root['max_position_embeddings'] ?? 2048,
    ...(special('bos_token_id') !== undefined && { bos_token_id: special('bos_token_id') }),
    ...(special('eos_token_id') !== undefined && { eos_token_id: special('eos_token_id') }),
    ...(root['hidden_act'] !== undefined && { hidden_act: root['hidden_act'] }),
    ...pick(root, ['rope_theta', 'rope_scaling', 'rope_parameters', 'partial_rotary_factor']),
    ...(root['rope_theta'] === undefined && root['rope_parameters'] === undefined && { rope_theta: 10000 }),
    attention: {
      variant: join(REPO_ROOT, VARIANT_FILES[attention]),
      options: attention === 'softmax' ? { D: headDim } : linearizedOptions(root, ckpt, file),
    },
  };
  return { config: parseConfig(ours, file), attention, because };
}

function pick(o: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]]));
}

/** generation_config.json beside config.json (its bos/eos win over config.json's), or nothing. */
function generationConfig(dir: string): { values: Record<string, unknown> } {
  const path = join(dir, 'generation_config.json');
  if (!existsSync(path)) return { values: {} };
  try {
    const v = JSON.parse(readFileSync(path, 'utf8'));
    return { values: typeof v === 'object' && v !== null ? v : {} };
  } catch (e) {
    throw new ModelFileError(path, 'file', `not valid JSON: ${(e as Error).message}`);
  }
}
