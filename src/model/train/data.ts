// Training data: text files tokenized with the model's tokenizer and concatenated (each file begins with the BOS
// token when the tokenizer has one, as generation's prompts do); the last `valFraction` of the tokens is held out
// for validation. Training batches are windows of block + 1 tokens at uniformly random starts, drawn from a
// generator seeded by (seed, step, micro-batch) so that any step's batch can be drawn again without replaying
// the ones before it (a resumed run sees exactly the batches an uninterrupted one would). Validation reads the
// held-out tokens as consecutive, non-overlapping windows of `block` predictions.
import { readFileSync, statSync } from 'node:fs';
import { rng } from '../../tensor.ts';
import type { Tokenizer } from '../tokenizer.ts';
import type { TokenBatch } from './trainer.ts';

/** A data file that cannot be trained on, naming the file. */
export class DataFileError extends Error {
  constructor(readonly file: string, detail: string) {
    super(`${file}: ${detail}`);
    this.name = 'DataFileError';
  }
}

export interface CorpusFile {
  readonly path: string;
  readonly bytes: number;
  readonly tokens: number;
}

export interface Corpus {
  readonly tokens: Uint32Array;
  readonly files: readonly CorpusFile[];
  /** FNV-1a of the token ids, hex: a resumed run checks it sees the same data. */
  readonly hash: string;
}

/** Byte offset of the first byte that is not part of valid UTF-8, or −1. */
export function invalidUtf8At(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i];
    const n = b < 0x80 ? 0 : b >= 0xc2 && b <= 0xdf ? 1 : b >= 0xe0 && b <= 0xef ? 2 : b >= 0xf0 && b <= 0xf4 ? 3 : -1;
    if (n < 0 || i + n >= bytes.length) return i;
    for (let k = 1; k <= n; k++) if ((bytes[i + k] & 0xc0) !== 0x80) return i;
    // Overlong three-byte forms, surrogates, and code points past U+10FFFF.
    if ((b === 0xe0 && bytes[i + 1] < 0xa0) || (b === 0xed && bytes[i + 1] > 0x9f) || (b === 0xf0 && bytes[i + 1] < 0x90) || (b === 0xf4 && bytes[i + 1] > 0x8f)) return i;
    i += n + 1;
  }
  return -1;
}

/** The text of a data file, refused when missing, empty, binary (a NUL byte) or not UTF-8. */
export function readTextFile(path: string): string {
  let bytes: Buffer;
  try {
    if (statSync(path).isDirectory()) throw new DataFileError(path, 'is a directory, not a text file');
    bytes = readFileSync(path);
  } catch (e) {
    if (e instanceof DataFileError) throw e;
    throw new DataFileError(path, `cannot read: ${(e as Error).message}`);
  }
  if (bytes.length === 0) throw new DataFileError(path, 'is empty');
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new DataFileError(path, `looks binary (a NUL byte at offset ${nul}); training reads text files`);
  const bad = invalidUtf8At(bytes);
  if (bad >= 0) throw new DataFileError(path, `is not UTF-8 text (invalid byte 0x${bytes[bad].toString(16).padStart(2, '0')} at offset ${bad})`);
  return bytes.toString('utf8');
}

/** Every file tokenized, in order, each after the tokenizer's BOS when it has one. */
export function loadCorpus(paths: readonly string[], tokenizer: Tokenizer): Corpus {
  if (paths.length === 0) throw new Error('no data files');
  const parts: number[][] = [];
  const files: CorpusFile[] = [];
  for (const path of paths) {
    const text = readTextFile(path);
    const ids = [...(tokenizer.bos !== undefined ? [tokenizer.bos] : []), ...tokenizer.encode(text)];
    parts.push(ids);
    files.push({ path, bytes: Buffer.byteLength(text), tokens: ids.length });
  }
  const tokens = new Uint32Array(parts.reduce((s, p) => s + p.length, 0));
  let at = 0;
  for (const p of parts) {
    tokens.set(p, at);
    at += p.length;
  }
  return { tokens, files, hash: fnv1a(tokens) };
}

export interface Split {
  readonly train: Uint32Array;
  readonly val: Uint32Array;
  /**
   * The training windows' possible starts when `train` is several texts laid end to end (distill.ts's sequences):
   * every window then lies within one text. Without it every start of `train` is one.
   */
  readonly trainStarts?: Uint32Array;
  /** Likewise for `val`: the evaluation windows' starts, in order (each window's t + 1 tokens within one text). */
  readonly valStarts?: Uint32Array;
}

/** The last ⌈valFraction·n⌉ tokens held out; each part must hold at least one window of block + 1 tokens. */
export function splitCorpus(corpus: Corpus, valFraction: number, block: number): Split {
  if (!(valFraction > 0 && valFraction < 1)) throw new Error(`the validation fraction must be in (0, 1), got ${valFraction}`);
  const n = corpus.tokens.length;
  const nVal = Math.ceil(n * valFraction);
  const where = corpus.files.map((f) => f.path).join(', ');
  if (n - nVal < block + 1 || nVal < block + 1) {
    throw new DataFileError(where, `${n} tokens are too few for --block ${block}: training and the held-out ${Math.round(valFraction * 100)}% for validation each need at least ${block + 1} tokens (${n - nVal} and ${nVal} here); use a shorter --block or more text`);
  }
  return { train: corpus.tokens.subarray(0, n - nVal), val: corpus.tokens.subarray(n - nVal) };
}

/** A seed for (seed, step, micro-batch): independent streams, any of them reachable directly. */
export function batchSeed(seed: number, step: number, micro: number): number {
  let h = 0x811c9dc5;
  for (const x of [seed, step, micro]) {
    for (let k = 0; k < 4; k++) h = Math.imul(h ^ ((x >>> (8 * k)) & 0xff), 0x01000193);
  }
  return h >>> 0;
}

/**
 * b windows of t + 1 tokens of `tokens` at random starts: uniform over every full window, or over `starts` (each
 * the start of a full window) when given.
 */
export function sampleBatch(tokens: Uint32Array, b: number, t: number, seed: number, starts?: Uint32Array): TokenBatch {
  const windows = starts ? starts.length : tokens.length - t;
  if (windows < 1) throw new Error(`sampleBatch: ${tokens.length} tokens hold no window of ${t + 1}`);
  if (starts && starts[windows - 1] + t + 1 > tokens.length) throw new Error(`sampleBatch: a window of ${t + 1} at ${starts[windows - 1]} runs past the ${tokens.length} tokens`);
  const r = rng(seed);
  const inputs = new Uint32Array(b * t);
  const targets = new Uint32Array(b * t);
  for (let s = 0; s < b; s++) {
    const start = starts ? starts[Math.floor(r() * windows)] : Math.floor(r() * windows);
    inputs.set(tokens.subarray(start, start + t), s * t);
    targets.set(tokens.subarray(start + 1, start + t + 1), s * t);
  }
  return { b, t, inputs, targets };
}

/**
 * Step `step`'s `accum` micro-batches of b windows of t + 1 training tokens (within one sequence where the split has
 * trainStarts), each drawn from its own seeded stream.
 */
export function stepBatches(split: Split, b: number, t: number, accum: number, seed: number, step: number): TokenBatch[] {
  return Array.from({ length: accum }, (_, i) => sampleBatch(split.train, b, t, batchSeed(seed, step, i), split.trainStarts));
}

/** The split's validation batches: its held-out part as consecutive windows, or the windows at its valStarts. */
export function validationBatches(split: Split, b: number, t: number): TokenBatch[] {
  return evaluationBatches(split.val, b, t, split.valStarts);
}

/**
 * The held-out tokens as consecutive windows (window k predicts tokens k·t + 1 … k·t + t), grouped b to a batch;
 * the last batch may hold fewer windows, and a tail shorter than a window is left out. With `starts`, the windows
 * at those starts, in order.
 */
export function evaluationBatches(tokens: Uint32Array, b: number, t: number, starts?: Uint32Array): TokenBatch[] {
  const windows = starts ? starts.length : Math.floor((tokens.length - 1) / t);
  if (windows < 1) throw new Error(`evaluation: ${tokens.length} tokens hold no window of ${t + 1}`);
  const out: TokenBatch[] = [];
  for (let w0 = 0; w0 < windows; w0 += b) {
    const nb = Math.min(b, windows - w0);
    const inputs = new Uint32Array(nb * t);
    const targets = new Uint32Array(nb * t);
    for (let s = 0; s < nb; s++) {
      const start = starts ? starts[w0 + s] : (w0 + s) * t;
      if (start + t + 1 > tokens.length) throw new Error(`evaluation: a window of ${t + 1} at ${start} runs past the ${tokens.length} tokens`);
      inputs.set(tokens.subarray(start, start + t), s * t);
      targets.set(tokens.subarray(start + 1, start + t + 1), s * t);
    }
    out.push({ b: nb, t, inputs, targets });
  }
  return out;
}

/** Entropy (nats) of the tokens' unigram distribution: the loss of a model that ignores context. */
export function unigramEntropy(tokens: ArrayLike<number>): number {
  const counts = new Map<number, number>();
  for (let i = 0; i < tokens.length; i++) counts.set(tokens[i], (counts.get(tokens[i]) ?? 0) + 1);
  let h = 0;
  for (const c of counts.values()) h -= (c / tokens.length) * Math.log(c / tokens.length);
  return h;
}

export function fnv1a(tokens: Uint32Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < tokens.length; i++) {
    const x = tokens[i];
    h = Math.imul(h ^ (x & 0xff), 0x01000193);
    h = Math.imul(h ^ ((x >>> 8) & 0xff), 0x01000193);
    h = Math.imul(h ^ (x >>> 16), 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}
