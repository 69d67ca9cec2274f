// Text ↔ token ids. Two kinds: raw UTF-8 bytes (ids 0..255, specials above) for the tiniest models,
// and Hugging Face tokenizer.json files (byte-level BPE and the rest) through @huggingface/tokenizers.
//
// Neither adds special tokens on encode: a caller that wants BOS writes `[tok.bos!, ...tok.encode(s)]`,
// so prompts, drafts and continuations all concatenate without surprises. decode skips special tokens.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import type { ModelConfig } from './config.ts';
import { ModelFileError } from './errors.ts';
import { readJsonFile } from './json-file.ts';

export interface Tokenizer {
  /** One more than the largest id the tokenizer can produce (≤ the model's vocab_size). */
  readonly vocabSize: number;
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
  readonly bos?: number;
  readonly eos?: number;
}

/** UTF-8 bytes as ids 0..255; optional BOS/EOS ids ≥ 256. */
export class ByteTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos?: number;
  readonly eos?: number;
  private readonly decoder = new TextDecoder('utf-8', { fatal: false });

  constructor(specials: { bos?: number; eos?: number } = {}) {
    let size = 256;
    for (const [name, id] of Object.entries(specials)) {
      if (id === undefined) continue;
      if (!Number.isInteger(id) || id < 256) throw new Error(`ByteTokenizer: ${name} id must be an integer >= 256 (0..255 are bytes), got ${id}`);
      size = Math.max(size, id + 1);
    }
    this.vocabSize = size;
    if (specials.bos !== undefined) this.bos = specials.bos;
    if (specials.eos !== undefined) this.eos = specials.eos;
  }

  encode(text: string): number[] {
    return Array.from(new TextEncoder().encode(text));
  }

  /** Bytes that are not valid UTF-8 (e.g. a cut multi-byte character) decode to U+FFFD. */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`ByteTokenizer.decode: id ${id} outside [0, ${this.vocabSize})`);
      if (id < 256) bytes.push(id);
    }
    return this.decoder.decode(new Uint8Array(bytes));
  }
}

/** A Hugging Face tokenizer.json (with tokenizer_config.json beside it when present). */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bos?: number;
  readonly eos?: number;

  private constructor(private readonly impl: HfTokenizerImpl, specials: { bos?: number; eos?: number }) {
    let maxId = -1;
    for (const id of impl.get_vocab(true).values()) maxId = Math.max(maxId, id);
    this.vocabSize = maxId + 1;
    if (specials.bos !== undefined) this.bos = specials.bos;
    if (specials.eos !== undefined) this.eos = specials.eos;
  }

  /** `specials` (ids from config.json) override the bos/eos tokens named in tokenizer_config.json. */
  static fromFile(path: string, specials: { bos?: number; eos?: number } = {}): HfTokenizer {
    const json = readJsonFile(path) as object;
    const configPath = join(dirname(path), 'tokenizer_config.json');
    const tokConfig = existsSync(configPath) ? (readJsonFile(configPath) as object) : {};
    let impl: HfTokenizerImpl;
    try {
      impl = new HfTokenizerImpl(json, tokConfig);
    } catch (e) {
      throw new ModelFileError(path, 'file', `not a usable tokenizer.json: ${(e as Error).message}`);
    }
    const named = (field: string): number | undefined => {
      const v = (tokConfig as Record<string, unknown>)[field];
      const content = typeof v === 'string' ? v : typeof v === 'object' && v !== null ? (v as { content?: unknown }).content : undefined;
      if (typeof content !== 'string') return undefined;
      const id = impl.token_to_id(content);
      if (id === undefined) throw new ModelFileError(configPath, field, `token ${JSON.stringify(content)} is not in ${path}`);
      return id;
    };
    const bos = specials.bos ?? named('bos_token');
    const eos = specials.eos ?? named('eos_token');
    return new HfTokenizer(impl, { ...(bos !== undefined && { bos }), ...(eos !== undefined && { eos }) });
  }

  encode(text: string): number[] {
    return this.impl.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[]): string {
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) throw new Error(`HfTokenizer.decode: id ${id} outside [0, ${this.vocabSize})`);
    }
    if (ids.length === 0) return '';
    return this.impl.decode([...ids], { skip_special_tokens: true, clean_up_tokenization_spaces: false });
  }
}

/** The tokenizer config.json asks for, checked against its vocab_size. */
export function loadTokenizer(config: ModelConfig): Tokenizer {
  const specials = {
    ...(config.bosTokenId !== undefined && { bos: config.bosTokenId }),
    ...(config.eosTokenId !== undefined && { eos: config.eosTokenId }),
  };
  const spec = config.tokenizer;
  const tok = spec.kind === 'bytes' ? new ByteTokenizer(specials) : HfTokenizer.fromFile(spec.path, specials);
  if (tok.vocabSize > config.vocabSize) {
    throw new ModelFileError(config.file, 'vocab_size',
      `${config.vocabSize} is smaller than the tokenizer's vocabulary (${tok.vocabSize} ids, ${spec.kind === 'bytes' ? 'bytes' : spec.path})`);
  }
  return tok;
}
