// Writes the tiny Hugging Face checkpoints the tests read, deterministically (seeded weights, float16 files):
//
//   test/fixtures/hf/tiny-llama/        LlamaForCausalLM: GQA (4 q heads, 2 k/v heads), RoPE with llama3 scaling,
//                                       untied LM head, float16, in two shards with model.safetensors.index.json
//   test/fixtures/hf/tiny-linearized/   the paper's aug-linear layout: the same plus per layer self_attn.dwconv.weight
//                                       [4, 1, 7, 1] (future taps non-zero, masked by conv_mask) and global_factor [1]
//
// each with tokens.json (the ids the reference logits are for). tools/make-hf-fixtures.py then loads these very
// files with Hugging Face transformers (tiny-llama) and with a PyTorch re-implementation of the authors' layer
// (tiny-linearized) and writes reference_logits.safetensors beside them. `npx tsx tools/make-hf-checkpoints.ts`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSafetensors, type TensorToWrite } from '../src/io/safetensors.ts';
import { randn } from '../src/tensor.ts';

export const FIXTURES = fileURLToPath(new URL('../test/fixtures/hf/', import.meta.url));

const DIMS = { vocab: 258, hidden: 64, intermediate: 112, layers: 2, heads: 4, kvHeads: 2, headDim: 16 };

/**
 * The token ids both reference files hold logits for: BOS, then ids across the vocabulary (bytes 0..255 and the
 * two specials, so that the byte tokenizer covers every id the model can produce).
 */
export const TOKENS = [256, 5, 17, 200, 42, 42, 7, 255, 128, 3, 99, 211, 64, 1, 2, 0, 250, 180, 77, 13, 13, 200, 33, 190, 8, 150, 60, 21, 219, 11, 4, 222, 97, 140, 56, 18, 230, 171, 9, 6];

function baseConfig(): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    vocab_size: DIMS.vocab,
    hidden_size: DIMS.hidden,
    intermediate_size: DIMS.intermediate,
    num_hidden_layers: DIMS.layers,
    num_attention_heads: DIMS.heads,
    num_key_value_heads: DIMS.kvHeads,
    head_dim: DIMS.headDim,
    hidden_act: 'silu',
    rms_norm_eps: 1e-5,
    max_position_embeddings: 256,
    tie_word_embeddings: false,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: 256,
    eos_token_id: 257,
    torch_dtype: 'float16',
  };
}

/** The model's tensors under Hugging Face's names: linear weights N(0, 1/fan_in), norm gains 1 + N(0, 0.1). */
function baseTensors(seed: number): Record<string, TensorToWrite> {
  const { vocab, hidden, intermediate, heads, kvHeads, headDim } = DIMS;
  const out: Record<string, TensorToWrite> = {};
  let n = 0;
  const linear = (name: string, rows: number, cols: number) => void (out[name] = randn([rows, cols], seed + 101 * ++n, 1 / Math.sqrt(cols)));
  const gain = (name: string) => {
    const t = randn([hidden], seed + 101 * ++n, 0.1);
    out[name] = { shape: t.shape, data: t.data.map((x) => 1 + x) };
  };
  linear('model.embed_tokens.weight', vocab, hidden);
  for (let l = 0; l < DIMS.layers; l++) {
    const p = `model.layers.${l}`;
    gain(`${p}.input_layernorm.weight`);
    linear(`${p}.self_attn.q_proj.weight`, heads * headDim, hidden);
    linear(`${p}.self_attn.k_proj.weight`, kvHeads * headDim, hidden);
    linear(`${p}.self_attn.v_proj.weight`, kvHeads * headDim, hidden);
    linear(`${p}.self_attn.o_proj.weight`, hidden, heads * headDim);
    gain(`${p}.post_attention_layernorm.weight`);
    linear(`${p}.mlp.gate_proj.weight`, intermediate, hidden);
    linear(`${p}.mlp.up_proj.weight`, intermediate, hidden);
    linear(`${p}.mlp.down_proj.weight`, hidden, intermediate);
  }
  gain('model.norm.weight');
  linear('lm_head.weight', vocab, hidden);
  return out;
}

function writeJson(path: string, v: unknown): void {
  writeFileSync(path, `${JSON.stringify(v, null, 2)}\n`);
}

/** The softmax LLaMA, in two shards and an index. */
export function writeTinyLlama(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeJson(join(dir, 'config.json'), {
    ...baseConfig(),
    rope_theta: 10000.0,
    rope_scaling: { rope_type: 'llama3', factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 64 },
  });
  writeJson(join(dir, 'generation_config.json'), { bos_token_id: 256, eos_token_id: 257 });
  const tensors = baseTensors(1600);
  const names = Object.keys(tensors);
  const shards = [names.filter((n) => !n.startsWith('model.layers.1.') && n !== 'lm_head.weight' && n !== 'model.norm.weight'), names.filter((n) => n.startsWith('model.layers.1.') || n === 'lm_head.weight' || n === 'model.norm.weight')];
  const files = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
  const weightMap: Record<string, string> = {};
  let total = 0;
  shards.forEach((part, k) => {
    writeSafetensors(join(dir, files[k]), Object.fromEntries(part.map((n) => [n, tensors[n]])), { format: 'pt' }, 'F16');
    for (const n of part) {
      weightMap[n] = files[k];
      total += 2 * tensors[n].data.length;
    }
  });
  writeJson(join(dir, 'model.safetensors.index.json'), { metadata: { total_size: total }, weight_map: Object.fromEntries(Object.entries(weightMap).sort()) });
  writeJson(join(dir, 'tokens.json'), TOKENS);
}

/** The paper's aug-linear layout (hf-linearized.ts), one file: group 8, a 7-tap centred convolution (K = 4). */
export function writeTinyLinearized(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeJson(join(dir, 'config.json'), { ...baseConfig(), rope_theta: 10000.0, rope_scaling: null, group_size: 8, res_kernel_size: 7 });
  const tensors = baseTensors(2600);
  const taps = 7;
  for (let l = 0; l < DIMS.layers; l++) {
    const p = `model.layers.${l}.self_attn`;
    // Taps 0..3 read the current and earlier positions; 4..6 are the future, non-zero here but masked by conv_mask.
    tensors[`${p}.dwconv.weight`] = randn([DIMS.heads, 1, taps, 1], 3600 + l, 0.3);
    tensors[`${p}.conv_mask`] = { shape: [1, 1, taps, 1], data: Float64Array.from({ length: taps }, (_, k) => (k <= 3 ? 1 : 0)) };
    tensors[`${p}.global_factor`] = { shape: [1], data: Float64Array.of(0.75 - 0.5 * l) };
  }
  writeSafetensors(join(dir, 'model.safetensors'), tensors, { format: 'pt' }, 'F16');
  writeJson(join(dir, 'tokens.json'), TOKENS);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeTinyLlama(join(FIXTURES, 'tiny-llama'));
  writeTinyLinearized(join(FIXTURES, 'tiny-linearized'));
  console.log(`wrote ${FIXTURES}tiny-llama and ${FIXTURES}tiny-linearized`);
}
