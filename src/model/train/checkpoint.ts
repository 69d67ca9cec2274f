// A training run's directory: what `linattn generate` loads (config.json, the tokenizer, model.safetensors) plus
// what resuming needs — optimizer.safetensors (AdamW's m and v per tensor: `m.<name>`, `v.<name>`) and
// trainer_state.json (the step, the run's settings, the data it trains on) — and train_log.jsonl. A train-medusa run
// is the same with the frozen base model's tensors in model.safetensors beside the heads, and moments for the heads.
//
// A save is two-phase, so that a crash at any moment leaves one whole checkpoint: first the three files are
// written beside the old ones as FILE.next (each through a temporary name and a rename, fsynced), the state last;
// then each FILE.next is renamed over FILE, the state last. recoverCheckpoint, run before a directory is read or
// resumed, finishes a save whose trainer_state.json.next exists (all of its files were written) and discards the
// .next files of one that never got that far (the old files are untouched). Every file also records the step it
// belongs to, so files of two saves that were mixed by hand are found ("optimizer.safetensors is from step 200,
// trainer_state.json from step 100") rather than trained on.
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expectTensor, readSafetensors, readSafetensorsMetadata, SafetensorsError, writeSafetensors, type SafetensorsEntry } from '../../io/safetensors.ts';
import type { ModelConfig } from '../config.ts';
import { ModelFileError } from '../errors.ts';
import { readJsonFile } from '../json-file.ts';
import { expectedTensors, loadWeights, type AttentionParamSpec, type ModelWeights } from '../weights.ts';
import { unpackFlat, type ParamLayout } from './param-layout.ts';
import type { OptimizerMoments, TrainerSnapshot } from './trainer.ts';
import type { DistillRecord } from './distill.ts';

export const MODEL_FILE = 'model.safetensors';
export const OPTIMIZER_FILE = 'optimizer.safetensors';
export const STATE_FILE = 'trainer_state.json';
export const LOG_FILE = 'train_log.jsonl';
const STEP_KEY = 'linattn.step';

/** The settings of a run (trainer_state.json's "options"); a resumed run keeps them. */
export interface TrainOptions {
  readonly steps: number;
  readonly batch: number;
  readonly block: number;
  readonly accum: number;
  readonly lr: number;
  /** The cosine schedule's floor. */
  readonly minLr: number;
  readonly warmup: number;
  readonly weightDecay: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  /** Global gradient-norm clip (0: none). */
  readonly clip: number;
  readonly seed: number;
  readonly valFraction: number;
  readonly evalEvery: number;
  readonly saveEvery: number;
}

export interface TrainerState {
  readonly format: 'linattn-trainer';
  readonly version: 1;
  /** Updates applied to the saved weights. */
  readonly step: number;
  readonly device: 'gpu' | 'cpu';
  readonly options: TrainOptions;
  readonly data: { readonly files: readonly { readonly path: string; readonly bytes: number; readonly tokens: number }[]; readonly tokens: number; readonly hash: string };
  readonly tokensSeen: number;
  readonly elapsedSeconds: number;
  readonly lastLoss?: number;
  readonly lastValLoss?: number;
  /** A linattn train-medusa run: only the heads train (their moments are the optimizer file's), the base is frozen. */
  readonly medusa?: MedusaRunState;
}

export interface MedusaRunState {
  readonly heads: number;
  readonly target: 'self' | 'data';
  /** The model directory the frozen base came from (its weights are copied into the run's model.safetensors). */
  readonly base: string;
  /** With --distill: the base's own continuations the heads train on (distill.ts; the sequences are DISTILL_FILE). */
  readonly distill?: DistillRecord;
}

/**
 * Writes the weights, the moments and then the state (the commit) of `snap` into `dir`; `frozen` tensors (a base
 * model that does not train) are written into the model file first, beside the trained ones, without moments.
 */
export function saveCheckpoint(dir: string, layout: ParamLayout, snap: TrainerSnapshot, state: TrainerState, frozen?: ReadonlyMap<string, { readonly shape: readonly number[]; readonly data: Float32Array }>): void {
  if (state.step !== snap.step) throw new Error(`saveCheckpoint: the state says step ${state.step}, the snapshot ${snap.step}`);
  const meta = { format: 'pt', [STEP_KEY]: String(state.step) };
  const model: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
  for (const [name, t] of frozen ?? []) model[name] = t;
  for (const [name, t] of unpackFlat(layout, snap.params)) model[name] = t;
  const moments: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
  const m = unpackFlat(layout, snap.m);
  const v = unpackFlat(layout, snap.v);
  for (const s of layout.slots) {
    moments[`m.${s.name}`] = m.get(s.name)!;
    moments[`v.${s.name}`] = v.get(s.name)!;
  }
  writeSafetensors(join(dir, MODEL_FILE + NEXT), model, meta);
  writeSafetensors(join(dir, OPTIMIZER_FILE + NEXT), moments, meta);
  writeJsonAtomically(join(dir, STATE_FILE + NEXT), state);
  commit(dir);
}

const NEXT = '.next';
const SAVED_FILES = [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE];

function commit(dir: string): void {
  for (const f of SAVED_FILES) if (existsSync(join(dir, f + NEXT))) renameSync(join(dir, f + NEXT), join(dir, f));
}

/**
 * Finishes or undoes a save that was cut short in `dir`: 'completed' when its state had been written (so were the
 * others), 'discarded' when not (the previous checkpoint stands), 'none' when no save was interrupted.
 */
export function recoverCheckpoint(dir: string): 'none' | 'completed' | 'discarded' {
  const pending = SAVED_FILES.filter((f) => existsSync(join(dir, f + NEXT)));
  if (pending.length === 0) return 'none';
  if (pending.includes(STATE_FILE)) {
    commit(dir);
    return 'completed';
  }
  for (const f of pending) rmSync(join(dir, f + NEXT), { force: true });
  return 'discarded';
}

export function hasCheckpoint(dir: string): boolean {
  return existsSync(join(dir, STATE_FILE));
}

export interface LoadedCheckpoint {
  readonly state: TrainerState;
  readonly weights: ModelWeights<Float32Array>;
  readonly moments: OptimizerMoments;
}

/**
 * Reads and cross-checks a run's checkpoint; any damage is a ModelFileError naming the file and what is wrong.
 * `trained` says which tensors have moments (default: the model's, not Medusa heads'; train-medusa: the heads').
 */
export function loadCheckpoint(
  dir: string, config: ModelConfig, attentionParams: readonly AttentionParamSpec[], trained: (name: string) => boolean = (name) => !name.startsWith('medusa.'),
): LoadedCheckpoint {
  const slots = expectedTensors(config, attentionParams).filter((s) => trained(s.name));
  const statePath = join(dir, STATE_FILE);
  const state = readState(statePath);
  const modelPath = join(dir, MODEL_FILE);
  const optPath = join(dir, OPTIMIZER_FILE);
  for (const path of [modelPath, optPath]) {
    if (!existsSync(path)) throw new ModelFileError(path, 'file', `missing; ${statePath} describes step ${state.step}, so the checkpoint is incomplete`);
  }
  const weights = loadWeights(config, modelPath, attentionParams);
  checkStep(modelPath, state);
  let raw: Map<string, SafetensorsEntry>;
  try {
    raw = readSafetensors(optPath);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new ModelFileError(optPath, 'file', e.message);
    throw e;
  }
  checkStep(optPath, state);
  const m = new Map<string, { data: Float32Array }>();
  const v = new Map<string, { data: Float32Array }>();
  for (const s of slots) {
    for (const [prefix, into] of [['m', m], ['v', v]] as const) {
      const name = `${prefix}.${s.name}`;
      let t: SafetensorsEntry;
      try {
        t = expectTensor(raw, name, s.shape, optPath);
      } catch (e) {
        throw new ModelFileError(optPath, name, (e as Error).message);
      }
      const bad = t.data.findIndex((x) => !Number.isFinite(x) || (prefix === 'v' && x < 0));
      if (bad >= 0) throw new ModelFileError(optPath, name, `element ${bad} is ${t.data[bad]}`);
      into.set(s.name, { data: t.data });
    }
  }
  const expected = new Set(slots.flatMap((s) => [`m.${s.name}`, `v.${s.name}`]));
  for (const name of raw.keys()) if (!expected.has(name)) throw new ModelFileError(optPath, name, `unexpected tensor, not a moment of ${config.file}'s parameters`);
  return { state, weights, moments: { m, v } };
}

function checkStep(path: string, state: TrainerState): void {
  let meta: Record<string, string>;
  try {
    meta = readSafetensorsMetadata(path);
  } catch (e) {
    throw new ModelFileError(path, 'file', (e as Error).message);
  }
  const step = meta[STEP_KEY];
  if (step === undefined) throw new ModelFileError(path, STEP_KEY, `no step recorded: not written by linattn train, so it cannot be resumed`);
  if (Number(step) !== state.step) {
    throw new ModelFileError(path, STEP_KEY, `is from step ${step}, but ${STATE_FILE} from step ${state.step}: a save was cut short; the checkpoint cannot be resumed exactly`);
  }
}

/** trainer_state.json, checked field by field. */
export function readState(path: string): TrainerState {
  const json = readJsonFile(path, 'not valid JSON (a damaged checkpoint)') as Record<string, unknown>;
  const fail = (field: string, detail: string): never => {
    throw new ModelFileError(path, field, detail);
  };
  if (typeof json !== 'object' || json === null || json['format'] !== 'linattn-trainer') fail('format', 'expected "linattn-trainer"');
  if (json['version'] !== 1) fail('version', `expected 1, got ${JSON.stringify(json['version'])}`);
  const int = (o: Record<string, unknown>, key: string, prefix = '') => {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(prefix + key, `expected a non-negative integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const num = (o: Record<string, unknown>, key: string, prefix = '') => {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(prefix + key, `expected a number, got ${JSON.stringify(v)}`);
    return v as number;
  };
  int(json, 'step');
  if (json['device'] !== 'gpu' && json['device'] !== 'cpu') fail('device', `expected "gpu" or "cpu", got ${JSON.stringify(json['device'])}`);
  const o = json['options'];
  if (typeof o !== 'object' || o === null) fail('options', 'missing');
  const opts = o as Record<string, unknown>;
  for (const k of ['steps', 'batch', 'block', 'accum', 'warmup', 'seed', 'evalEvery', 'saveEvery']) int(opts, k, 'options.');
  for (const k of ['lr', 'minLr', 'weightDecay', 'beta1', 'beta2', 'eps', 'clip', 'valFraction']) num(opts, k, 'options.');
  const d = json['data'];
  if (typeof d !== 'object' || d === null || !Array.isArray((d as Record<string, unknown>)['files']) || typeof (d as Record<string, unknown>)['hash'] !== 'string') fail('data', 'missing or without files and hash');
  int(d as Record<string, unknown>, 'tokens', 'data.');
  const medusa = json['medusa'];
  if (medusa !== undefined) {
    if (typeof medusa !== 'object' || medusa === null) fail('medusa', 'expected { "heads", "target", "base" }');
    const m = medusa as Record<string, unknown>;
    if (int(m, 'heads', 'medusa.') < 1) fail('medusa.heads', 'expected at least 1');
    if (m['target'] !== 'self' && m['target'] !== 'data') fail('medusa.target', `expected "self" or "data", got ${JSON.stringify(m['target'])}`);
    if (typeof m['base'] !== 'string') fail('medusa.base', `expected the base model's directory, got ${JSON.stringify(m['base'])}`);
    const d = m['distill'];
    if (d !== undefined) {
      if (typeof d !== 'object' || d === null) fail('medusa.distill', 'expected { "tokens", "prompt", "length", "sequences", "valSequences", "total", "hash" }');
      const r = d as Record<string, unknown>;
      for (const k of ['tokens', 'prompt', 'length', 'sequences', 'valSequences', 'total']) int(r, k, 'medusa.distill.');
      if (typeof r['hash'] !== 'string') fail('medusa.distill.hash', `expected the sequences' hash, got ${JSON.stringify(r['hash'])}`);
    }
  }
  return json as unknown as TrainerState;
}

function writeJsonAtomically(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w');
    try {
      writeFileSync(fd, JSON.stringify(value, null, 2) + '\n');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`writing ${path}: ${(e as Error).message}`);
  }
}
