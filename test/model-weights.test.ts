import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { loadConfig, type ModelConfig } from '../src/model/config.ts';
import { cpuForward, cpuModel } from '../src/model/cpu-forward.ts';
import { initModel, MARKER, type AttentionParamInit } from '../src/model/init-model.ts';
import { loadTokenizer } from '../src/model/tokenizer.ts';
import { expectedTensors, loadWeights, type AttentionParamSpec } from '../src/model/weights.ts';
import type { Tensor } from '../src/tensor.ts';

const SEED = 31337;
const root = mkdtempSync(join(tmpdir(), 'model-weights-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// A source model directory: config.json, a stand-in variant file, and (for one test) a tokenizer.
const src = join(root, 'src');
mkdirSync(src);
writeFileSync(join(src, 'v.la'), '# stand-in variant\n');
const CONFIG = {
  vocab_size: 259, hidden_size: 16, intermediate_size: 24, num_hidden_layers: 2, num_attention_heads: 2,
  rms_norm_eps: 1e-5, tie_word_embeddings: false, bos_token_id: 256, tokenizer: 'bytes',
  attention: { variant: 'v.la', options: { K: 3 } }, medusa: { num_heads: 2 },
};
const configPath = join(src, 'config.json');
writeFileSync(configPath, JSON.stringify(CONFIG));
const PARAMS: AttentionParamInit[] = [{ name: 'w', shape: [2, 8, 3], init: 'decay' }, { name: 'gain', shape: [2], init: 'ones' }];

/** All tensors of a checkpoint for `config` except those `edit` changes (undefined drops one). */
function tensorsFor(config: ModelConfig, params: readonly AttentionParamSpec[], edit: Record<string, Tensor<Float32Array> | undefined> = {}) {
  const out: Record<string, Tensor<Float32Array>> = {};
  for (const { name, shape } of expectedTensors(config, params)) {
    out[name] = { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)).fill(0.01) };
  }
  for (const [name, t] of Object.entries(edit)) {
    if (t === undefined) delete out[name];
    else out[name] = t;
  }
  return out;
}

describe('init-model', () => {
  it('writes a checkpoint that loads, with norms = 1, the requested variant inits and a working forward', () => {
    const out = join(root, 'model-a');
    const result = initModel(configPath, out, SEED, PARAMS);
    expect(readdirSync(out).sort()).toEqual([MARKER, 'config.json', 'model.safetensors'].sort());
    const config = loadConfig(join(out, 'config.json'));
    expect(config.attention.variant).toBe(join(src, 'v.la'));
    expect(JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')).attention.variant).toBe('../src/v.la');
    expect(result.config).toEqual(config);

    const w = loadWeights(config, join(out, 'model.safetensors'), PARAMS);
    expect(w.layers).toHaveLength(2);
    expect(w.medusa).toHaveLength(2);
    expect(Array.from(w.layers[1].postNorm.data)).toEqual(new Array(16).fill(1));
    expect(Array.from(w.layers[0].attention['w'].data.slice(0, 3))).toEqual([0.5, 0.25, 0.125]);
    expect(Array.from(w.layers[0].attention['gain'].data)).toEqual([1, 1]);
    // N(0, 1/fan_in): the q projection's entries have variance ≈ 1/16
    const q = w.layers[0].qProj.data;
    const variance = q.reduce((s, x) => s + x * x, 0) / q.length;
    expect(variance).toBeGreaterThan(0.5 / 16);
    expect(variance).toBeLessThan(2 / 16);

    const tok = loadTokenizer(config);
    const ids = [tok.bos!, ...tok.encode('hi')];
    const { logits } = cpuForward(cpuModel(config, w), [ids], (_l, _q, _k, v) => v);
    expect(logits.data.every(Number.isFinite)).toBe(true);
  });

  it('is reproducible from the seed and replaces its own output', () => {
    const out = join(root, 'model-b');
    initModel(configPath, out, SEED, PARAMS);
    const first = readFileSync(join(out, 'model.safetensors'));
    initModel(configPath, out, SEED + 1, PARAMS);
    expect(readFileSync(join(out, 'model.safetensors')).equals(first)).toBe(false);
    initModel(configPath, out, SEED, PARAMS);
    expect(readFileSync(join(out, 'model.safetensors')).equals(first)).toBe(true);
  });

  it('refuses a non-empty directory it did not create, and one where files were added', () => {
    const foreign = join(root, 'foreign');
    mkdirSync(foreign);
    writeFileSync(join(foreign, 'notes.txt'), 'mine');
    expect(() => initModel(configPath, foreign, SEED, PARAMS)).toThrow(/not written by init-model.*refusing/);
    expect(readdirSync(foreign)).toEqual(['notes.txt']);

    const out = join(root, 'model-c');
    initModel(configPath, out, SEED, PARAMS);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    expect(() => initModel(configPath, out, SEED, PARAMS)).toThrow(/notes\.txt.*refusing/);
    expect(existsSync(join(out, 'notes.txt'))).toBe(true);

    const empty = join(root, 'empty');
    mkdirSync(empty);
    initModel(configPath, empty, SEED, PARAMS);
    expect(existsSync(join(empty, 'model.safetensors'))).toBe(true);
  });

  it('leaves no partial output when it fails', () => {
    const out = join(root, 'model-d');
    expect(() => initModel(configPath, out, SEED, [{ name: 'q_proj.weight', shape: [2] }])).toThrow(/clashes/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(root).filter((n) => n.includes('init-model'))).toEqual([]);

    const previous = join(root, 'model-e');
    initModel(configPath, previous, SEED, PARAMS);
    const before = readFileSync(join(previous, 'model.safetensors'));
    expect(() => initModel(configPath, previous, SEED + 5, [{ name: 'w', shape: [0] }])).toThrow(/shape \[0\]/);
    expect(readFileSync(join(previous, 'model.safetensors')).equals(before)).toBe(true);
    expect(readdirSync(root).filter((n) => n.includes('init-model'))).toEqual([]);
  });

  it('copies a tokenizer.json beside the new config', () => {
    const tokDir = join(root, 'tok-src');
    mkdirSync(tokDir);
    writeFileSync(join(tokDir, 'v.la'), '');
    const vocab: Record<string, number> = {};
    for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).padStart(2, '0').toUpperCase()}>`] = b;
    writeFileSync(join(tokDir, 'tokenizer.json'), JSON.stringify({
      version: '1.0', added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null,
      decoder: { type: 'ByteFallback' },
      model: { type: 'BPE', vocab, merges: [], byte_fallback: true, unk_token: null, dropout: null, fuse_unk: false, continuing_subword_prefix: null, end_of_word_suffix: null },
    }));
    const { tokenizer: _bytes, bos_token_id: _bos, ...rest } = CONFIG;
    writeFileSync(join(tokDir, 'config.json'), JSON.stringify({ ...rest, tokenizer: 'tokenizer.json' }));
    const out = join(root, 'model-tok');
    const { config } = initModel(join(tokDir, 'config.json'), out, SEED, PARAMS);
    expect(config.tokenizer).toEqual({ kind: 'tokenizer.json', path: resolve(out, 'tokenizer.json') });
    expect(loadTokenizer(config).decode(loadTokenizer(config).encode('ok'))).toBe('ok');
  });
});

describe('loading model.safetensors', () => {
  const config = loadConfig(configPath);
  const file = join(root, 'edited.safetensors');
  const errorFor = (edit: Record<string, Tensor<Float32Array> | undefined>, params: readonly AttentionParamSpec[] = PARAMS, cfg = config): string => {
    writeSafetensors(file, tensorsFor(cfg, params, edit));
    try {
      loadWeights(cfg, file, PARAMS);
    } catch (e) {
      return (e as Error).message;
    }
    throw new Error('expected loadWeights to throw');
  };

  it('names the file and a missing tensor with its expected shape', () => {
    const up = errorFor({ 'model.layers.1.mlp.up_proj.weight': undefined });
    expect(up.startsWith(`${file}: `)).toBe(true);
    expect(up).toMatch(/model\.layers\.1\.mlp\.up_proj\.weight.*missing.*\[24, 16\]/);
    expect(errorFor({ 'model.layers.0.self_attn.w': undefined })).toMatch(/model\.layers\.0\.self_attn\.w.*missing.*\[2, 8, 3\]/);
    expect(errorFor({ 'medusa.1.lm_head.weight': undefined })).toMatch(/medusa\.1\.lm_head\.weight.*missing.*\[259, 16\]/);
  });

  it('names the file and a mis-shaped tensor with expected vs actual shape', () => {
    const t = (shape: number[]) => ({ shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
    /** The message names the file, the tensor, its actual shape and the expected one. */
    const expectShapeError = (name: string, actual: number[], expected: string) => {
      const message = errorFor({ [name]: t(actual) });
      expect(message.startsWith(`${file}: `)).toBe(true);
      expect(message).toContain(name);
      expect(message).toContain(`[${actual.join(', ')}]`);
      expect(message).toContain(expected);
    };
    expectShapeError('model.layers.0.self_attn.q_proj.weight', [16, 8], '[16, 16]');
    expectShapeError('model.embed_tokens.weight', [258, 16], '[259, 16]');
    expectShapeError('model.layers.1.self_attn.w', [2, 8, 4], '[2, 8, 3]');
  });

  it('rejects tensors the config does not describe and non-finite values', () => {
    const extra = { shape: [16], data: new Float32Array(16) };
    expect(errorFor({ 'model.layers.2.input_layernorm.weight': extra })).toMatch(/model\.layers\.2\.input_layernorm\.weight: unexpected tensor/);
    const nan = new Float32Array(16).fill(1);
    nan[5] = NaN;
    expect(errorFor({ 'model.norm.weight': { shape: [16], data: nan } })).toBe(`${file}: model.norm.weight: element 5 is NaN`);
  });

  it('names the file when it is missing or corrupt', () => {
    expect(() => loadWeights(config, join(root, 'absent.safetensors'), PARAMS)).toThrow(join(root, 'absent.safetensors'));
    writeSafetensors(file, tensorsFor(config, PARAMS));
    truncateSync(file, 200);
    expect(() => loadWeights(config, file, PARAMS)).toThrow(file);
    writeFileSync(file, 'not a safetensors file at all');
    expect(() => loadWeights(config, file, PARAMS)).toThrow(file);
  });
});
