import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, parseConfig, REPO_ROOT, resolveModelPath } from '../src/model/config.ts';
import { ModelFileError } from '../src/model/errors.ts';

const dir = mkdtempSync(join(tmpdir(), 'model-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'v.la'), '# variant stand-in\n');

const FILE = join(dir, 'config.json');
const BASE = {
  vocab_size: 300, hidden_size: 32, intermediate_size: 86, num_hidden_layers: 2, num_attention_heads: 4,
  rms_norm_eps: 1e-6, attention: { variant: 'v.la', options: { K: 4 } },
};

/** The error parseConfig throws for `json`, which must name the file and `field`. */
function errorFor(json: object): ModelFileError {
  try {
    parseConfig(json, FILE);
  } catch (e) {
    expect(e).toBeInstanceOf(ModelFileError);
    return e as ModelFileError;
  }
  throw new Error('expected parseConfig to throw');
}

function expectFieldError(json: object, field: string, detail: RegExp): void {
  const e = errorFor(json);
  expect(e.file).toBe(FILE);
  expect(e.where).toBe(field);
  expect(e.message).toContain(FILE);
  expect(e.message).toContain(field);
  expect(e.detail).toMatch(detail);
}

describe('config.json', () => {
  it('reads a minimal config with HF defaults (head_dim = hidden/heads, untied, byte tokenizer)', () => {
    const c = parseConfig(BASE, FILE);
    expect(c.headDim).toBe(8);
    expect(c.tieWordEmbeddings).toBe(false);
    expect(c.tokenizer).toEqual({ kind: 'bytes' });
    expect(c.attention).toEqual({ variant: join(dir, 'v.la'), options: { K: 4 } });
    expect(c.medusa).toBeUndefined();
  });

  it('names the missing field', () => {
    for (const field of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'rms_norm_eps', 'attention']) {
      const json: Record<string, unknown> = { ...BASE };
      delete json[field];
      expectFieldError(json, field, /missing/);
    }
    expectFieldError({ ...BASE, attention: { options: {} } }, 'attention.variant', /missing/);
  });

  it('names the field with a wrong type or value', () => {
    expectFieldError({ ...BASE, hidden_size: '32' }, 'hidden_size', /expected a finite number, got "32"/);
    expectFieldError({ ...BASE, num_hidden_layers: 1.5 }, 'num_hidden_layers', /integer >= 1, got 1.5/);
    expectFieldError({ ...BASE, vocab_size: 0 }, 'vocab_size', /integer >= 1/);
    expectFieldError({ ...BASE, rms_norm_eps: 0 }, 'rms_norm_eps', /> 0/);
    expectFieldError({ ...BASE, tie_word_embeddings: 'yes' }, 'tie_word_embeddings', /true or false/);
    expectFieldError({ ...BASE, hidden_size: 30 }, 'head_dim', /not divisible/);
    expectFieldError({ ...BASE, hidden_act: 'gelu' }, 'hidden_act', /silu/);
    expectFieldError({ ...BASE, num_key_value_heads: 3 }, 'num_key_value_heads', /3 does not divide num_attention_heads 4/);
    expectFieldError({ ...BASE, rope_scaling: { rope_type: 'yarn', factor: 4 } }, 'rope_scaling.rope_type', /"yarn" is not supported \(supported: default, linear, llama3\)/);
    expectFieldError({ ...BASE, bos_token_id: 300 }, 'bos_token_id', /outside the vocabulary/);
    expectFieldError({ ...BASE, bos_token_id: 3 }, 'bos_token_id', /byte tokenizer.*>= 256/);
    expectFieldError({ ...BASE, vocab_size: 100 }, 'vocab_size', /byte tokenizer needs vocab_size >= 256/);
    expectFieldError({ ...BASE, tokenizer: 'sentencepiece' }, 'tokenizer', /"bytes" or a path/);
    expectFieldError({ ...BASE, tokenizer: 'missing.json' }, 'tokenizer', /not found/);
    expectFieldError({ ...BASE, medusa: { num_heads: 0 } }, 'medusa.num_heads', /integer >= 1/);
    expectFieldError({ ...BASE, medusa: { heads: 2 } }, 'medusa.heads', /unknown field/);
  });

  it('checks the attention section', () => {
    expectFieldError({ ...BASE, attention: 'v.la' }, 'attention', /expected an object/);
    expectFieldError({ ...BASE, attention: { variant: 'v.txt' } }, 'attention.variant', /\.la file/);
    expectFieldError({ ...BASE, attention: { variant: 'nowhere.la' } }, 'attention.variant', /file not found/);
    expectFieldError({ ...BASE, attention: { variant: 'v.la', options: { K: 0 } } }, 'attention.options.K', /positive integer/);
    expectFieldError({ ...BASE, attention: { variant: 'v.la', options: { C: 'big' } } }, 'attention.options.C', /finite number/);
    expectFieldError({ ...BASE, attention: { variant: 'v.la', option: {} } }, 'attention.option', /unknown field/);
  });

  it('resolves the variant against the config directory, then the repository root', () => {
    const sub = join(dir, 'sub');
    mkdirSync(sub, { recursive: true });
    const c = parseConfig({ ...BASE, attention: { variant: 'examples/paper/whatever.la' } }, join(sub, 'config.json'), { checkFiles: false });
    expect(c.attention.variant).toBe(resolve(sub, 'examples/paper/whatever.la'));
    const abs = parseConfig({ ...BASE, attention: { variant: join(dir, 'v.la') } }, join(sub, 'config.json'));
    expect(abs.attention.variant).toBe(join(dir, 'v.la'));
    // v.la is not in sub/ but is under the (stand-in) root
    expect(resolveModelPath(sub, 'v.la', dir)).toBe(join(dir, 'v.la'));
    expect(resolveModelPath(sub, 'v.la', '/nonexistent-root')).toBe(join(sub, 'v.la'));
  });

  it('names the file when it is not JSON', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{"vocab_size": ');
    expect(() => loadConfig(bad)).toThrow(`${bad}: file: not valid JSON`);
    expect(() => loadConfig(join(dir, 'absent.json'))).toThrow(/absent\.json: file: cannot read/);
  });

  it('reads examples/models/tiny/config.json', () => {
    const c = loadConfig(join(REPO_ROOT, 'examples/models/tiny/config.json'), { checkFiles: false });
    expect(c).toMatchObject({
      vocabSize: 257, hiddenSize: 64, intermediateSize: 172, numLayers: 2, numHeads: 4, headDim: 16,
      rmsNormEps: 1e-5, tieWordEmbeddings: false, bosTokenId: 256, tokenizer: { kind: 'bytes' },
      attention: { variant: resolve(REPO_ROOT, 'examples/paper/elu_dwconv.la'), options: { K: 4 } },
    });
  });
});
