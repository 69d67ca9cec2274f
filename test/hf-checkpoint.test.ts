// Hugging Face LLaMA directories on the CPU: the committed tiny checkpoints (tools/make-hf-checkpoints.ts) load
// with their config's GQA, RoPE scaling, untied head and float16 shards; the paper's linearized extras map onto
// the variant's parameters; Medusa heads in the Medusa project's layout; and every broken checkpoint (a missing
// shard, a dtype we do not read, a shape against the config, a truncated file, extras that do not match, a pickle)
// is refused with an error naming the file and the tensor or field.
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { SafetensorsFile } from '../src/io/safetensors-file.ts';
import { cpuAttentionFromVariant } from '../src/model/cpu-attention.ts';
import { cpuForward, cpuMedusaLogits, cpuModel, linear, silu } from '../src/model/cpu-forward.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import type { ModelWeights } from '../src/model/weights.ts';
import { randn, type Tensor } from '../src/tensor.ts';
import { FIXTURES, writeTinyLinearized, writeTinyLlama } from '../tools/make-hf-checkpoints.ts';

const LLAMA = join(FIXTURES, 'tiny-llama');
const LINEARIZED = join(FIXTURES, 'tiny-linearized');
const tmp = mkdtempSync(join(tmpdir(), 'hf-checkpoint-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A copy of a fixture directory (without reference logits) to break. */
function copy(src: string, name: string): string {
  const dir = join(tmp, name);
  cpSync(src, dir, { recursive: true, filter: (f) => !f.endsWith('reference_logits.safetensors') });
  return dir;
}

function logitsOf(dir: string, tokens: readonly number[]): Float64Array {
  const m = loadModelDir(dir);
  const cpu = cpuModel(m.config, m.weights);
  return cpuForward(cpu, [tokens], cpuAttentionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention))).logits.data;
}

describe('the tiny Hugging Face checkpoints', () => {
  it('are exactly what tools/make-hf-checkpoints.ts writes (deterministic fixtures)', () => {
    const again = join(tmp, 'again');
    writeTinyLlama(join(again, 'tiny-llama'));
    writeTinyLinearized(join(again, 'tiny-linearized'));
    for (const name of ['tiny-llama', 'tiny-linearized']) {
      for (const f of readdirSync(join(again, name))) {
        expect(readFileSync(join(again, name, f)).equals(readFileSync(join(FIXTURES, name, f))), `${name}/${f}`).toBe(true);
      }
    }
  });

  it('tiny-llama: GQA, llama3-scaled RoPE, an untied head and bos/eos from generation_config.json, read from two float16 shards', () => {
    const m = loadModelDir(LLAMA);
    expect(m.format).toBe('huggingface');
    expect(m.attention?.kind).toBe('softmax');
    expect(m.config).toMatchObject({ numHeads: 4, numKeyValueHeads: 2, headDim: 16, tieWordEmbeddings: false, bosTokenId: 256, eosTokenId: 257 });
    expect(m.config.rope).toEqual({ theta: 10000, scaling: { kind: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositions: 64 } });
    // tensor by tensor through positioned reads, as the whole-file reader decodes the same shard
    const shard = readSafetensors(join(LLAMA, 'model-00002-of-00002.safetensors'));
    expect(m.weights.layers[1].kProj.shape).toEqual([32, 64]);
    expect(Array.from(m.weights.layers[1].kProj.data)).toEqual(Array.from(shard.get('model.layers.1.self_attn.k_proj.weight')!.data));
    expect(Array.from(m.weights.lmHead.data)).toEqual(Array.from(shard.get('lm_head.weight')!.data));
    expect(m.weights.lmHead).not.toBe(m.weights.embedTokens);
  });

  it('lazily: every weight read from its (reopened) shard when used equals the one read at once', () => {
    const eager = loadModelDir(LINEARIZED);
    const lazy = loadModelDir(LINEARIZED, { lazy: true });
    const all = (m: typeof eager) => [m.weights.embedTokens, m.weights.lmHead, m.weights.norm, ...m.weights.layers.flatMap((l) => [l.qProj, l.kProj, l.vProj, l.oProj, l.gateProj, l.upProj, l.downProj, l.inputNorm, l.postNorm, ...Object.values(l.attention)])];
    const [a, b] = [all(eager), all(lazy)];
    a.forEach((t, k) => expect(Array.from(b[k].data), `weight ${k}`).toEqual(Array.from(t.data)));
  });

  it('grouped-query attention equals the same model with each k/v head repeated for its q heads', () => {
    const m = loadModelDir(LLAMA);
    const tokens = [256, 5, 17, 200, 42, 7, 9];
    const repeat = (t: { shape: readonly number[]; data: Float32Array }) => {
      const d = m.config.headDim;
      const cols = t.shape[1];
      const out = new Float32Array(4 * d * cols);
      for (let h = 0; h < 4; h++) out.set(t.data.subarray(Math.floor(h / 2) * d * cols, (Math.floor(h / 2) + 1) * d * cols), h * d * cols);
      return { shape: [4 * d, cols], data: out };
    };
    const mha = { ...m.config, numKeyValueHeads: undefined };
    const weights = { ...m.weights, layers: m.weights.layers.map((l) => ({ ...l, kProj: repeat(l.kProj), vProj: repeat(l.vProj) })) };
    const attend = (w: ModelWeights) => cpuAttentionFromVariant(m.variant.program, cpuModel(mha, w).weights.layers.map((l) => l.attention));
    const gqa = cpuForward(cpuModel(m.config, m.weights), [tokens], attend(m.weights)).logits.data;
    const full = cpuForward(cpuModel(mha, weights), [tokens], attend(weights)).logits.data;
    expect(Math.max(...gqa.map((x, i) => Math.abs(x - full[i])))).toBeLessThan(1e-12);
  });

  it('tiny-linearized: auto-detected as the aug-linear layer; w[h, l] = dwconv.weight[h, 0, 3 − l, 0], alpha = global_factor', () => {
    const m = loadModelDir(LINEARIZED);
    expect(m.attention).toEqual({ kind: 'linearized-aug', because: 'layer 0 has self_attn.global_factor and self_attn.dwconv.weight' });
    expect(m.variant.program.sizes).toMatchObject({ C: 8, K: 4 });
    const f = SafetensorsFile.open(join(LINEARIZED, 'model.safetensors'));
    try {
      for (const layer of [0, 1]) {
        const conv = f.read(`model.layers.${layer}.self_attn.dwconv.weight`).data;
        const w = m.weights.layers[layer].attention['w'];
        expect(w.shape).toEqual([4, 4]);
        for (let h = 0; h < 4; h++) for (let l = 0; l < 4; l++) expect(w.data[h * 4 + l]).toBe(conv[h * 7 + 3 - l]);
        expect(Array.from(m.weights.layers[layer].attention['alpha'].data)).toEqual(Array.from(f.read(`model.layers.${layer}.self_attn.global_factor`).data));
      }
    } finally {
      f.close();
    }
  });
});

describe('broken Hugging Face checkpoints', () => {
  it('a shard the index names is missing', () => {
    const dir = copy(LLAMA, 'missing-shard');
    rmSync(join(dir, 'model-00002-of-00002.safetensors'));
    expect(() => loadModelDir(dir)).toThrow(/model\.safetensors\.index\.json: .+: its shard model-00002-of-00002\.safetensors is missing/);
  });

  it('a dtype the loader does not read', () => {
    const dir = copy(LINEARIZED, 'dtype');
    const path = join(dir, 'model.safetensors');
    const bytes = readFileSync(path);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = bytes.toString('utf8', 8, 8 + n).replace('"dtype":"F16","shape":[64]', '"dtype":"I16","shape":[64]');
    expect(header.length).toBe(n);
    writeFileSync(path, Buffer.concat([bytes.subarray(0, 8), Buffer.from(header), bytes.subarray(8 + n)]));
    expect(() => loadModelDir(dir)).toThrow(/model\.safetensors: tensor '[\w.]+': dtype I16 is not supported \(supported: F32, F16, BF16, F64\)/);
  });

  it('a shape that disagrees with config.json, naming the tensor and the fields it follows from', () => {
    const dir = copy(LLAMA, 'shape');
    const config = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    config.num_key_value_heads = 4;
    writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
    expect(() => loadModelDir(dir)).toThrow(
      /model-00001-of-00002\.safetensors: model\.layers\.0\.self_attn\.k_proj\.weight: expected shape \[64, 64\] = num_key_value_heads 4 × head_dim 16, hidden_size 64, got \[32, 64\]/,
    );
  });

  it('a truncated file', () => {
    const dir = copy(LINEARIZED, 'truncated');
    const path = join(dir, 'model.safetensors');
    truncateSync(path, readFileSync(path).length - 100);
    expect(() => loadModelDir(dir)).toThrow(/model\.safetensors: tensor '[\w.]+': data_offsets \[\d+, \d+\] run past the data section \(\d+ bytes\); file truncated\?/);
  });

  it('extras that do not match the attention asked for, and a conv_mask that is not the causal mask', () => {
    expect(() => loadModelDir(LINEARIZED, { attention: 'softmax' })).toThrow(/model\.layers\.0\.self_attn\.(dwconv\.weight|global_factor): unexpected tensor.*a linearized layer's tensor/);
    expect(() => loadModelDir(LLAMA, { attention: 'linearized-aug' })).toThrow(/model\.layers\.0\.self_attn\.dwconv\.weight: missing tensor \(expected shape \[4, 1, 63, 1\]\)/);
    const dir = copy(LINEARIZED, 'mask');
    const path = join(dir, 'model.safetensors');
    const t = Object.fromEntries([...readSafetensors(path)].map(([k, v]) => [k, v]));
    t['model.layers.1.self_attn.conv_mask'] = { ...t['model.layers.1.self_attn.conv_mask'], data: Float32Array.of(1, 1, 1, 1, 1, 0, 0) };
    writeSafetensors(path, t, undefined, 'F16');
    expect(() => loadModelDir(dir)).toThrow(/model\.layers\.1\.self_attn\.conv_mask: expected the causal mask \[1, 1, K', 1\]/);
  });

  it('special tokens below 256 without a tokenizer.json, which the byte tokenizer cannot stand in for', () => {
    const dir = copy(LLAMA, 'no-tokenizer');
    writeFileSync(join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }));
    writeFileSync(join(dir, 'tokenizer.model'), 'sentencepiece');
    expect(() => loadModelDir(dir)).toThrow(/config\.json: tokenizer: no tokenizer\.json in .*no-tokenizer \(tokenizer\.model is SentencePiece's format\), and bytes cannot stand in for it \(bos_token_id, eos_token_id below 256\)/);
  });

  it('a PyTorch pickle, with the line that converts it', () => {
    const dir = join(tmp, 'pickle');
    cpSync(LLAMA, dir, { recursive: true, filter: (f) => !/safetensors/.test(f) });
    writeFileSync(join(dir, 'pytorch_model.bin'), 'not read');
    expect(() => loadModelDir(dir)).toThrow(/neither model\.safetensors nor model\.safetensors\.index\.json; it holds pytorch_model\.bin\. PyTorch pickles are not read.*save_file/);
  });
});

describe('Medusa heads in the Medusa project\'s layout', () => {
  const H = 64;
  const V = 258;
  function heads(name: string, files: (dir: string) => void): string {
    const dir = join(tmp, name);
    mkdirSync(dir);
    files(dir);
    return dir;
  }
  const medusa = heads('medusa', (dir) => {
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ medusa_num_heads: 2, medusa_num_layers: 1, base_model_name_or_path: 'tiny-llama' }));
    const t: Record<string, Tensor<Float64Array>> = {};
    for (let n = 0; n < 2; n++) {
      t[`${n}.0.linear.weight`] = randn([H, H], 40 + n, 0.2);
      t[`${n}.0.linear.bias`] = randn([H], 50 + n, 0.5);
      t[`${n}.1.weight`] = randn([V, H], 60 + n, 1 / 8);
    }
    writeSafetensors(join(dir, 'medusa_lm_head.safetensors'), t, undefined, 'F16');
  });

  it('load with their residual blocks\' biases: logits_N = W_N · (x + silu(L_N x + b_N))', () => {
    const m = loadModelDir(LLAMA, { medusa });
    expect(m.config.medusa).toEqual({ numHeads: 2, bias: true });
    const cpu = cpuModel(m.config, m.weights);
    const hidden = cpuForward(cpu, [[256, 5, 17]], cpuAttentionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention))).hidden;
    const got = cpuMedusaLogits(cpu, hidden);
    const raw = readSafetensors(join(medusa, 'medusa_lm_head.safetensors'));
    for (let n = 0; n < 2; n++) {
      const L = Float64Array.from(raw.get(`${n}.0.linear.weight`)!.data);
      const b = raw.get(`${n}.0.linear.bias`)!.data;
      const r = linear(hidden.data, L, 3, H, H).map((z, i) => hidden.data[i] + silu(z + b[i % H]));
      const want = linear(r, Float64Array.from(raw.get(`${n}.1.weight`)!.data), 3, H, V);
      expect(Math.max(...got[n].data.map((x, i) => Math.abs(x - want[i])))).toBeLessThan(1e-12);
    }
  });

  it('a medusa_lm_head.pt pickle is refused with the line that converts it; a second residual block is refused', () => {
    const pt = heads('medusa-pt', (dir) => writeFileSync(join(dir, 'medusa_lm_head.pt'), 'not read'));
    expect(() => loadModelDir(LLAMA, { medusa: pt })).toThrow(/medusa_lm_head\.pt: file: PyTorch pickles are not read.*save_file\(.*'.*medusa_lm_head\.safetensors'\)/);
    const two = heads('medusa-two', (dir) => {
      copyFileSync(join(medusa, 'medusa_lm_head.safetensors'), join(dir, 'medusa_lm_head.safetensors'));
      writeFileSync(join(dir, 'config.json'), JSON.stringify({ medusa_num_heads: 2, medusa_num_layers: 2 }));
    });
    expect(() => loadModelDir(LLAMA, { medusa: two })).toThrow(/config\.json: medusa_num_layers: only 1 residual block per head is supported, got 2/);
  });
});

describe('tiny-llama and tiny-linearized logits (float64)', () => {
  it('differ from each other and stay finite (the fixtures are not degenerate)', () => {
    const tokens = JSON.parse(readFileSync(join(LLAMA, 'tokens.json'), 'utf8')) as number[];
    const a = logitsOf(LLAMA, tokens);
    const b = logitsOf(LINEARIZED, tokens);
    expect(a.every(Number.isFinite) && b.every(Number.isFinite)).toBe(true);
    expect(Math.max(...a.map((x, i) => Math.abs(x - b[i])))).toBeGreaterThan(0.1);
  });
});
