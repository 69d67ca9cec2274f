import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.ts';
import { TextStream } from '../src/model/generate.ts';
import { ByteTokenizer, HfTokenizer, loadTokenizer, type Tokenizer } from '../src/model/tokenizer.ts';

const SAMPLES = ['', 'hello world', 'the cat sat on the hat\n\tthe end', 'héllo wörld — 你好 🙂', '  two  spaces '];

const dir = mkdtempSync(join(tmpdir(), 'model-tokenizer-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * Byte-level BPE's byte → printable character table (bytes that print as themselves keep their
 * character; the others take 256, 257, … in byte order), as tokenizer.json vocabularies spell bytes.
 */
function byteLevelAlphabet(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const chars: string[] = [];
  let next = 256;
  for (let b = 0; b < 256; b++) chars.push(String.fromCodePoint(printable(b) ? b : next++));
  return chars;
}

/** A tiny byte-level BPE tokenizer.json: 256 byte tokens, the given merges, and an end-of-text token. */
function tinyBpeJson(merges: [string, string][]): object {
  const vocab: Record<string, number> = {};
  byteLevelAlphabet().forEach((c, i) => (vocab[c] = i));
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  const eot = Object.keys(vocab).length;
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [{ id: eot, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null,
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, vocab, merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
}

const MERGES: [string, string][] = [['t', 'h'], ['th', 'e'], ['Ġ', 'the'], ['a', 't'], ['Ġ', 'h'], ['Ġh', 'at']];

describe('ByteTokenizer', () => {
  it('round-trips UTF-8 text through byte ids', () => {
    const tok = new ByteTokenizer({ bos: 256 });
    for (const s of SAMPLES) {
      const ids = tok.encode(s);
      expect(ids.every((i) => i >= 0 && i < 256)).toBe(true);
      expect(tok.decode(ids)).toBe(s);
    }
  });

  it('has vocab 256 + specials, never emits BOS on encode, and skips it on decode', () => {
    const tok = new ByteTokenizer({ bos: 256, eos: 257 });
    expect(tok.vocabSize).toBe(258);
    expect(tok.encode('ab')).toEqual([97, 98]);
    expect(tok.decode([256, 97, 98, 257])).toBe('ab');
    expect(() => new ByteTokenizer({ bos: 10 })).toThrow(/>= 256/);
    expect(() => tok.decode([300])).toThrow(/outside/);
  });

  it('comes from config.json with bos_token_id', () => {
    const config = parseConfig({
      vocab_size: 257, hidden_size: 8, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
      rms_norm_eps: 1e-5, bos_token_id: 256, tokenizer: 'bytes', attention: { variant: 'x.la' },
    }, join(dir, 'config.json'), { checkFiles: false });
    const tok = loadTokenizer(config);
    expect(tok.bos).toBe(256);
    expect(tok.vocabSize).toBe(257);
  });
});

describe('HfTokenizer (byte-level BPE from tokenizer.json)', () => {
  const path = join(dir, 'tokenizer.json');
  writeFileSync(path, JSON.stringify(tinyBpeJson(MERGES)));

  it('round-trips text, including bytes no merge covers', () => {
    const tok = HfTokenizer.fromFile(path);
    expect(tok.vocabSize).toBe(256 + MERGES.length + 1);
    for (const s of SAMPLES) expect(tok.decode(tok.encode(s))).toBe(s);
  });

  it('applies the merges', () => {
    const tok = HfTokenizer.fromFile(path);
    const vocabOf = (piece: string) => 256 + MERGES.findIndex(([a, b]) => a + b === piece);
    expect(tok.encode('the hat')).toEqual([vocabOf('the'), vocabOf('Ġhat')]);
    expect(tok.encode(' the')).toEqual([vocabOf('Ġthe')]);
  });

  it('skips special tokens on decode and takes bos/eos ids from config.json', () => {
    const eot = 256 + MERGES.length;
    const tok = HfTokenizer.fromFile(path, { eos: eot });
    expect(tok.eos).toBe(eot);
    expect(tok.decode([...tok.encode('hi'), eot])).toBe('hi');
  });

  it('is refused when config.json has a smaller vocab_size', () => {
    const config = parseConfig({
      vocab_size: 256, hidden_size: 8, intermediate_size: 8, num_hidden_layers: 1, num_attention_heads: 2,
      rms_norm_eps: 1e-5, tokenizer: 'tokenizer.json', attention: { variant: 'x.la' },
    }, join(dir, 'config.json'), { checkFiles: false });
    expect(() => loadTokenizer(config)).toThrow(/vocab_size: 256 is smaller than the tokenizer's vocabulary \(263 ids/);
  });

  it('names the file when tokenizer.json is not JSON', () => {
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, '{ nope');
    expect(() => HfTokenizer.fromFile(bad)).toThrow(bad);
  });
});

describe('TextStream (streaming detokenisation)', () => {
  const path = join(dir, 'stream-tokenizer.json');
  writeFileSync(path, JSON.stringify(tinyBpeJson(MERGES)));
  const long = Array.from({ length: 40 }, (_, i) => SAMPLES[i % SAMPLES.length]).join(' ');

  /** `tok` with the longest id list any decode call was given. */
  const counting = (tok: Tokenizer) => {
    const seen = { longest: 0 };
    const wrapped: Tokenizer = { ...tok, vocabSize: tok.vocabSize, encode: (s) => tok.encode(s), decode: (ids) => ((seen.longest = Math.max(seen.longest, ids.length)), tok.decode(ids)) };
    return { wrapped, seen };
  };

  it.each([
    ['bytes', () => new ByteTokenizer()],
    ['byte-level BPE', () => HfTokenizer.fromFile(path)],
  ] as const)('%s: releases whole characters that add up to the decoded text, decoding a few tokens per push, not the sequence', (_name, make) => {
    const tok = make();
    const ids = tok.encode(long);
    expect(ids.length).toBeGreaterThan(300);
    const { wrapped, seen } = counting(tok);
    const stream = new TextStream(wrapped);
    const pieces = ids.map((id) => stream.push(id));
    pieces.push(stream.flush());
    expect(pieces.join('')).toBe(tok.decode(ids));
    expect(stream.text).toBe(tok.decode(ids));
    expect(pieces.some((p) => p.includes('\ufffd'))).toBe(false);
    // 4-byte characters and merged pieces span a few tokens; the whole sequence is hundreds.
    expect(seen.longest).toBeLessThanOrEqual(12);
  });

  it('holds back a split character until it is complete, and flushes an incomplete one as U+FFFD', () => {
    const tok = new ByteTokenizer();
    const stream = new TextStream(tok);
    const [a, b, c, d] = tok.encode('🙂');
    expect([stream.push(0x61), stream.push(a), stream.push(b), stream.push(c), stream.push(d)]).toEqual(['a', '', '', '', '🙂']);
    stream.push(a);
    expect(stream.flush()).toBe('\ufffd');
  });
});
