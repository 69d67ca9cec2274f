// Self-distillation data for Medusa heads (`linattn train-medusa --distill N`): the base model's own greedy
// continuations of prompts drawn from the training text, which the heads then train on in place of the text.
//
// Why: greedy verification accepts a head's guess when it is the base's own pick after the base's own earlier
// picks. On the text, head n at position t sees the text's tokens t + 1 … t + n + 1 where at generation time
// the base's picks stand — wherever the text departs from what the base would say, the heads learn a context
// they never meet when drafting. On the base's continuations the two coincide (Medusa-2's self-distillation,
// there on a dataset's prompts; here on windows of the training text).
//
// Each sequence is a prompt of P tokens at a seeded random start of the training part (BOS in front when the
// tokenizer has one, as `generate` prompts) and its greedy continuation of up to G tokens, cut after an EOS. The
// sequences are laid end to end and training windows are drawn within one sequence only (Split.trainStarts).
// Validation is distilled the same way from prompts of the held-out part (a tenth as many sequences), read in
// whole windows within each sequence (Split.valStarts): the heads' held-out top-1 is then their agreement with the
// base's own continuations, what drafting meets — on the held-out text itself distilled heads score lower than
// heads trained on the text while being accepted more (docs/speculative.md). The sequences are saved in the run's
// directory (DISTILL_FILE), so that a resumed run trains on exactly the same tokens without generating them
// again; trainer_state.json records their counts and hash.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { rng } from '../../tensor.ts';
import { fnv1a } from './data.ts';

export const DISTILL_FILE = 'distill.json';

/** Settings that hold no window, a held-out part too short for a prompt, or a saved file that is not the run's. */
export class DistillError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DistillError';
  }
}

export interface DistillSettings {
  /** Tokens to generate in all (sequences of `length` each, the last ones rounding up). */
  readonly tokens: number;
  /** Prompt tokens of the training text per sequence (BOS not counted). */
  readonly prompt: number;
  /** New tokens per prompt at most (fewer where the base emits EOS). */
  readonly length: number;
}

/** What trainer_state.json keeps of a run's distilled sequences. */
export interface DistillRecord extends DistillSettings {
  /** Training sequences. */
  readonly sequences: number;
  /** Validation sequences (from held-out prompts). */
  readonly valSequences: number;
  /** Tokens of all training sequences, prompts included. */
  readonly total: number;
  /** Of the training sequences, then the validation ones. */
  readonly hash: string;
}

/** The training sequences and the validation ones. */
export interface Distilled {
  readonly train: readonly Uint32Array[];
  readonly val: readonly Uint32Array[];
}

/** Validation sequences for `count` training ones: a tenth, at least one. */
export const valCount = (count: number): number => Math.max(1, Math.ceil(count / 10));

/** Greedy continuations of `length` new tokens for a batch of prompts of equal length (EOS ends a sequence early). */
export type ContinueGreedy = (prompts: readonly (readonly number[])[], length: number) => Promise<number[][]>;

/** `count` prompts of `prompt` tokens at seeded random starts in `train`. */
export function distillPrompts(train: Uint32Array, count: number, prompt: number, seed: number): Uint32Array[] {
  if (train.length < prompt) throw new DistillError(`--distill-prompt ${prompt}: the training text has only ${train.length} tokens`);
  const r = rng(seed ^ 0x5eed_d157);
  return Array.from({ length: count }, () => {
    const start = Math.floor(r() * (train.length - prompt + 1));
    return train.subarray(start, start + prompt);
  });
}

/** The settings checked against a window of `window` + 1 tokens (the heads' block + heads): the flag that is wrong, named. */
export function checkDistill(s: DistillSettings, window: number): void {
  const positive = (v: number) => Number.isInteger(v) && v >= 1;
  if (!positive(s.tokens)) throw new DistillError(`--distill takes a positive number of tokens, got ${s.tokens}`);
  if (!positive(s.prompt)) throw new DistillError(`--distill-prompt takes a positive number of tokens, got ${s.prompt}`);
  if (!positive(s.length)) throw new DistillError(`--distill-length takes a positive number of tokens, got ${s.length}`);
  if (s.prompt + s.length < window + 1) {
    throw new DistillError(`--distill-prompt ${s.prompt} + --distill-length ${s.length} tokens hold no training window: a window is --block + heads + 1 = ${window + 1} tokens of one sequence`);
  }
}

/**
 * Generates the sequences: prompts from `train` and from `val` (seeded by `seed`, two streams), continued greedily
 * by `continueGreedy` in batches of `batch`; each sequence is its prompt (without BOS) and its continuation up to
 * and including an EOS.
 */
export async function distill(
  train: Uint32Array, val: Uint32Array, s: DistillSettings, seed: number, tokens: { readonly bos?: number; readonly eos?: number },
  continueGreedy: ContinueGreedy, batch: number, onBatch?: (done: number, of: number) => void,
): Promise<Distilled> {
  const count = Math.ceil(s.tokens / s.length);
  if (val.length < s.prompt) throw new DistillError(`--distill-prompt ${s.prompt}: the held-out text has only ${val.length} tokens for validation prompts`);
  const prompts = [...distillPrompts(train, count, s.prompt, seed), ...distillPrompts(val, valCount(count), s.prompt, seed + 1)];
  const out: Uint32Array[] = [];
  for (let i = 0; i < prompts.length; i += batch) {
    const group = prompts.slice(i, i + batch);
    const continued = await continueGreedy(group.map((p) => [...(tokens.bos !== undefined ? [tokens.bos] : []), ...p]), s.length);
    for (let k = 0; k < group.length; k++) {
      let c = continued[k].slice(0, s.length);
      const end = tokens.eos === undefined ? -1 : c.indexOf(tokens.eos);
      if (end >= 0) c = c.slice(0, end + 1);
      const seq = new Uint32Array(group[k].length + c.length);
      seq.set(group[k]);
      seq.set(c, group[k].length);
      out.push(seq);
    }
    onBatch?.(Math.min(i + batch, prompts.length), prompts.length);
  }
  return { train: out.slice(0, count), val: out.slice(count) };
}

/**
 * The sequences end to end, and the start of every `stride`-th window of `window` + 1 tokens that lies within one
 * of them (a sequence shorter than that gives none): stride 1 for training, `window` for evaluation (consecutive
 * windows, as evaluationBatches reads a text). Throws when no window is left.
 */
export function layOut(sequences: readonly Uint32Array[], window: number, stride = 1): { readonly tokens: Uint32Array; readonly starts: Uint32Array } {
  const starts: number[] = [];
  let at = 0;
  for (const s of sequences) {
    for (let k = 0; k + window + 1 <= s.length; k += stride) starts.push(at + k);
    at += s.length;
  }
  if (starts.length === 0) throw new DistillError(`distill: no sequence holds a window of ${window + 1} tokens (the base ended every one early with EOS); give a longer --distill-length`);
  return { tokens: concat(sequences), starts: Uint32Array.from(starts) };
}

function concat(sequences: readonly Uint32Array[]): Uint32Array {
  const out = new Uint32Array(sequences.reduce((n, q) => n + q.length, 0));
  let at = 0;
  for (const q of sequences) {
    out.set(q, at);
    at += q.length;
  }
  return out;
}

export function distillRecord(s: DistillSettings, d: Distilled): DistillRecord {
  const all = concat([...d.train, ...d.val]);
  return {
    tokens: s.tokens, prompt: s.prompt, length: s.length, sequences: d.train.length, valSequences: d.val.length,
    total: d.train.reduce((n, q) => n + q.length, 0), hash: fnv1a(all),
  };
}

/** Writes the sequences into `dir` (through a temporary file: a crash leaves no half-written file). */
export function writeDistill(dir: string, s: DistillSettings, d: Distilled): void {
  const path = join(dir, DISTILL_FILE);
  const json = { format: 'linattn-distill', version: 1, ...s, sequences: d.train.map((q) => [...q]), val: d.val.map((q) => [...q]) };
  writeFileSync(path + '.tmp', JSON.stringify(json) + '\n');
  renameSync(path + '.tmp', path);
}

/** The sequences a run saved, checked against its record (the file names the problem). */
export function readDistill(dir: string, record: DistillRecord): Distilled {
  const path = join(dir, DISTILL_FILE);
  if (!existsSync(path)) throw new DistillError(`${path}: missing; the run trains on the ${record.sequences} sequences its base generated, saved there`);
  const json = JSON.parse(readFileSync(path, 'utf8')) as { format?: string; sequences?: unknown; val?: unknown };
  if (json.format !== 'linattn-distill' || !Array.isArray(json.sequences) || !Array.isArray(json.val)) throw new DistillError(`${path}: not a linattn-distill file`);
  const list = (what: string, qs: unknown[]) => qs.map((q, i) => {
    if (!Array.isArray(q) || q.some((t) => !Number.isInteger(t) || t < 0)) throw new DistillError(`${path}: ${what} ${i} is not a list of token ids`);
    return Uint32Array.from(q as number[]);
  });
  const d = { train: list('sequence', json.sequences as unknown[]), val: list('validation sequence', json.val as unknown[]) };
  const got = distillRecord(record, d);
  if (got.hash !== record.hash || got.sequences !== record.sequences || got.valSequences !== record.valSequences) {
    throw new DistillError(`${path}: ${got.sequences} + ${got.valSequences} sequences, hash ${got.hash}; trainer_state.json records ${record.sequences} + ${record.valSequences}, hash ${record.hash}`);
  }
  return d;
}
