// config.json of a decoder LM: Hugging Face LLaMA's field names for the parts we share with it, plus
// `attention` (which compiled variant replaces softmax attention), `tokenizer` and `medusa`.
//
//   {
//     "vocab_size": 257, "hidden_size": 64, "intermediate_size": 172,
//     "num_hidden_layers": 2, "num_attention_heads": 4, "head_dim": 16,      // head_dim defaults to hidden/heads
//     "rms_norm_eps": 1e-5, "tie_word_embeddings": false,                    // tie defaults to false, as in HF
//     "max_position_embeddings": 2048,                                       // optional, only a limit
//     "bos_token_id": 256, "eos_token_id": 0,                                 // optional
//     "attention": { "variant": "../../paper/elu_dwconv.la", "options": { "K": 4 } },
//     "tokenizer": "bytes",                       // or a tokenizer.json path; absent: tokenizer.json beside
//                                                 // config.json if there is one, else bytes
//     "medusa": { "num_heads": 3 }                // optional speculative heads (see weights.ts); "bias": true
//                                                 // when their residual blocks have biases
//   }
//
//     "num_key_value_heads": 2,                   // optional (default num_attention_heads): grouped-query
//                                                 // attention, k and v heads shared by groups of q heads
//     "rope_theta": 10000, "rope_scaling": {…}    // optional: replace θ and scaling of the variant's rope(…)
//                                                 // (HF's fields, rope-config.ts); the variant must use rope
//
// Other HF fields are ignored, except those that would silently change the model: `hidden_act` must be
// silu. A Hugging Face LLaMA directory is read through hf-config.ts, which writes this config from its own.
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RopeSpec } from '../ir/rope.ts';
import { ModelFileError } from './errors.ts';
import { readJsonFile } from './json-file.ts';
import { parseRopeFields } from './rope-config.ts';

export interface AttentionConfig {
  /** Absolute path of the variant's `.la` file. */
  readonly variant: string;
  /** Compile-time options of the variant (window K, chunk C, …). */
  readonly options: Readonly<Record<string, number>>;
}

export type TokenizerSpec = { readonly kind: 'bytes' } | { readonly kind: 'tokenizer.json'; readonly path: string };

export interface ModelConfig {
  /** Absolute path of the config.json this came from (or the name given to parseConfig). */
  readonly file: string;
  readonly vocabSize: number;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  /** Heads of k and v (grouped-query attention): q head n reads k/v head ⌊n / (numHeads / numKeyValueHeads)⌋. Default numHeads. */
  readonly numKeyValueHeads?: number;
  readonly headDim: number;
  readonly rmsNormEps: number;
  readonly tieWordEmbeddings: boolean;
  readonly maxPositionEmbeddings?: number;
  readonly bosTokenId?: number;
  readonly eosTokenId?: number;
  readonly attention: AttentionConfig;
  /** The position encoding the variant's rope(…) is compiled with (rope_theta, rope_scaling); absent: as written. */
  readonly rope?: RopeSpec;
  readonly tokenizer: TokenizerSpec;
  /** Medusa heads; `bias`: each residual block has a bias (the Medusa project's heads do). */
  readonly medusa?: { readonly numHeads: number; readonly bias?: boolean };
}

export interface ConfigLoadOptions {
  /** Require the variant and tokenizer files to exist (default true). */
  readonly checkFiles?: boolean;
}

/** The repository root: relative variant paths fall back to it (`examples/paper/elu_dwconv.la`). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export function loadConfig(path: string, options: ConfigLoadOptions = {}): ModelConfig {
  const file = resolve(path);
  const json = readJsonFile(file);
  return parseConfig(json, file, options);
}

/** Validates a parsed config.json; `file` names it in errors and anchors its relative paths. */
export function parseConfig(json: unknown, file: string, options: ConfigLoadOptions = {}): ModelConfig {
  const checkFiles = options.checkFiles ?? true;
  const f: Fields = new Fields(file);
  const root = f.object(json, '(top level)');

  const vocabSize = f.int(root, 'vocab_size', 1);
  const hiddenSize = f.int(root, 'hidden_size', 1);
  const intermediateSize = f.int(root, 'intermediate_size', 1);
  const numLayers = f.int(root, 'num_hidden_layers', 1);
  const numHeads = f.int(root, 'num_attention_heads', 1);
  let headDim = f.optionalInt(root, 'head_dim', 1);
  if (headDim === undefined) {
    if (hiddenSize % numHeads !== 0) {
      f.fail('head_dim', `missing, and hidden_size ${hiddenSize} is not divisible by num_attention_heads ${numHeads}`);
    }
    headDim = hiddenSize / numHeads;
  }
  const rmsNormEps = f.number(root, 'rms_norm_eps');
  if (!(rmsNormEps > 0)) f.fail('rms_norm_eps', `must be > 0, got ${rmsNormEps}`);
  const tieWordEmbeddings = f.optionalBool(root, 'tie_word_embeddings') ?? false;
  const maxPositionEmbeddings = f.optionalInt(root, 'max_position_embeddings', 1);

  const kvHeads = f.optionalInt(root, 'num_key_value_heads', 1);
  if (kvHeads !== undefined && numHeads % kvHeads !== 0) {
    f.fail('num_key_value_heads', `${kvHeads} does not divide num_attention_heads ${numHeads} (each k/v head serves an equal group of q heads)`);
  }
  const rope = parseRopeFields(root, (field, detail) => f.fail(field, detail));
  const act = root['hidden_act'];
  if (act !== undefined && act !== 'silu') f.fail('hidden_act', `only "silu" (SwiGLU) is supported, got ${JSON.stringify(act)}`);

  const bosTokenId = f.optionalInt(root, 'bos_token_id', 0);
  const eosTokenId = f.optionalInt(root, 'eos_token_id', 0);
  for (const [field, id] of [['bos_token_id', bosTokenId], ['eos_token_id', eosTokenId]] as const) {
    if (id !== undefined && id >= vocabSize) f.fail(field, `token id ${id} is outside the vocabulary (vocab_size ${vocabSize})`);
  }

  const dir = dirname(file);
  const attention = parseAttention(f, root, dir, checkFiles);
  const tokenizer = parseTokenizer(f, root, dir, checkFiles, vocabSize, bosTokenId, eosTokenId);

  let medusa: ModelConfig['medusa'];
  if (root['medusa'] !== undefined) {
    const m = f.object(root['medusa'], 'medusa');
    f.onlyKeys(m, 'medusa', ['num_heads', 'bias']);
    const bias = f.optionalBool(m, 'bias');
    medusa = { numHeads: f.int(m, 'num_heads', 1, 'medusa.'), ...(bias && { bias }) };
  }

  return {
    file, vocabSize, hiddenSize, intermediateSize, numLayers, numHeads, headDim, rmsNormEps, tieWordEmbeddings,
    ...(kvHeads !== undefined && kvHeads !== numHeads && { numKeyValueHeads: kvHeads }),
    ...(rope !== undefined && { rope }),
    ...(maxPositionEmbeddings !== undefined && { maxPositionEmbeddings }),
    ...(bosTokenId !== undefined && { bosTokenId }),
    ...(eosTokenId !== undefined && { eosTokenId }),
    attention, tokenizer,
    ...(medusa !== undefined && { medusa }),
  };
}

/**
 * Where a relative path in config.json points: the config's directory if the file is there, else the
 * repository root if it is there, else (nothing exists) the config's directory.
 */
export function resolveModelPath(configDir: string, p: string, root = REPO_ROOT): string {
  if (isAbsolute(p)) return p;
  const local = resolve(configDir, p);
  if (existsSync(local)) return local;
  const fromRoot = resolve(root, p);
  return existsSync(fromRoot) ? fromRoot : local;
}

function parseAttention(f: Fields, root: Record<string, unknown>, dir: string, checkFiles: boolean): AttentionConfig {
  if (root['attention'] === undefined) f.fail('attention', 'missing (expected { "variant": "<file>.la", "options": {…} })');
  const a = f.object(root['attention'], 'attention');
  f.onlyKeys(a, 'attention', ['variant', 'options']);
  const written = f.string(a, 'variant', 'attention.');
  if (!written.endsWith('.la')) f.fail('attention.variant', `expected a path to a .la file, got ${JSON.stringify(written)}`);
  const variant = resolveModelPath(dir, written);
  if (checkFiles && !existsSync(variant)) {
    const tried = isAbsolute(written) ? variant : `${resolve(dir, written)} nor ${resolve(REPO_ROOT, written)}`;
    f.fail('attention.variant', `file not found: neither ${tried} exists`);
  }
  const opts: Record<string, number> = {};
  if (a['options'] !== undefined) {
    const o = f.object(a['options'], 'attention.options');
    for (const [key, value] of Object.entries(o)) {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        f.fail(`attention.options.${key}`, `expected a finite number, got ${JSON.stringify(value)}`);
      }
      opts[key] = value;
    }
    for (const key of ['K', 'C']) {
      const v = opts[key];
      if (v !== undefined && !(Number.isInteger(v) && v >= 1)) f.fail(`attention.options.${key}`, `expected a positive integer, got ${v}`);
    }
  }
  return { variant, options: opts };
}

function parseTokenizer(
  f: Fields, root: Record<string, unknown>, dir: string, checkFiles: boolean,
  vocabSize: number, bos: number | undefined, eos: number | undefined,
): TokenizerSpec {
  const t = root['tokenizer'];
  let spec: TokenizerSpec;
  if (t === undefined) {
    const beside = resolve(dir, 'tokenizer.json');
    spec = existsSync(beside) ? { kind: 'tokenizer.json', path: beside } : { kind: 'bytes' };
  } else if (t === 'bytes') {
    spec = { kind: 'bytes' };
  } else if (typeof t === 'string' && t.endsWith('.json')) {
    const path = isAbsolute(t) ? t : resolve(dir, t);
    if (checkFiles && !existsSync(path)) f.fail('tokenizer', `file not found: ${path}`);
    spec = { kind: 'tokenizer.json', path };
  } else {
    f.fail('tokenizer', `expected "bytes" or a path to a tokenizer.json, got ${JSON.stringify(t)}`);
  }
  if (spec.kind === 'bytes') {
    if (vocabSize < 256) f.fail('vocab_size', `the byte tokenizer needs vocab_size >= 256, got ${vocabSize}`);
    for (const [field, id] of [['bos_token_id', bos], ['eos_token_id', eos]] as const) {
      if (id !== undefined && id < 256) f.fail(field, `with the byte tokenizer a special token needs an id >= 256 (0..255 are bytes), got ${id}`);
    }
  }
  return spec;
}

/** Typed reads of JSON fields whose errors name the file and the field. */
class Fields {
  constructor(readonly file: string) {}

  fail(field: string, detail: string): never {
    throw new ModelFileError(this.file, field, detail);
  }

  object(v: unknown, field: string): Record<string, unknown> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(field, `expected an object, got ${describe(v)}`);
    return v as Record<string, unknown>;
  }

  onlyKeys(o: Record<string, unknown>, field: string, allowed: readonly string[]): void {
    for (const key of Object.keys(o)) {
      if (!allowed.includes(key)) this.fail(`${field}.${key}`, `unknown field (expected one of ${allowed.join(', ')})`);
    }
  }

  number(o: Record<string, unknown>, key: string, prefix = ''): number {
    const v = o[key];
    if (v === undefined) this.fail(prefix + key, 'missing');
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(prefix + key, `expected a finite number, got ${describe(v)}`);
    return v;
  }

  int(o: Record<string, unknown>, key: string, min: number, prefix = ''): number {
    const v = this.number(o, key, prefix);
    if (!Number.isInteger(v) || v < min) this.fail(prefix + key, `expected an integer >= ${min}, got ${v}`);
    return v;
  }

  optionalInt(o: Record<string, unknown>, key: string, min: number): number | undefined {
    return o[key] === undefined || o[key] === null ? undefined : this.int(o, key, min);
  }

  optionalBool(o: Record<string, unknown>, key: string): boolean | undefined {
    const v = o[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') this.fail(key, `expected true or false, got ${describe(v)}`);
    return v;
  }

  string(o: Record<string, unknown>, key: string, prefix = ''): string {
    const v = o[key];
    if (v === undefined) this.fail(prefix + key, 'missing');
    if (typeof v !== 'string' || v === '') this.fail(prefix + key, `expected a non-empty string, got ${describe(v)}`);
    return v;
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  return JSON.stringify(v);
}

/** Heads of k and v: numKeyValueHeads, or numHeads without grouped-query attention. */
export function kvHeadsOf(config: Pick<ModelConfig, 'numHeads' | 'numKeyValueHeads'>): number {
  return config.numKeyValueHeads ?? config.numHeads;
}
