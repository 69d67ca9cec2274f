// A fresh, randomly initialised checkpoint directory (config.json + model.safetensors [+ tokenizer])
// from a config.json: what tests, benchmarks and demos run on before any model is trained.
//
// Initialisation (each tensor seeded from (seed, tensor name), so adding a tensor changes no other):
//   linear weights and embeddings   N(0, 1/fan_in), fan_in = the last axis ([out, in] layout)
//   RMSNorm gains                   1
//   variant parameters              'normal' as above (default), 'ones', 'decay':
//                                   w[…, l] = 2^−(l+1) along the last axis (a convolution whose
//                                   taps fade with the lag l and sum to < 1), or 'retention':
//                                   γ[…, l] = 1 − 2^−(5+l) along the last axis (RetNet's per-head
//                                   decay rates, all in (0, 1))
//
// The directory appears whole or not at all: everything is written to a sibling temporary directory,
// loaded back and checked, then renamed into place. An existing directory is replaced only when empty
// or when it holds nothing but a previous init-model's files (listed in its `.init-model` marker).
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, parse, relative, resolve, sep } from 'node:path';
import { writeSafetensors } from '../io/safetensors.ts';
import { randn, toFloat32, type Tensor } from '../tensor.ts';
import { loadConfig, type ModelConfig } from './config.ts';
import { ModelFileError } from './errors.ts';
import { expectedTensors, loadWeights, weightsFromTensors, weightsToTensors, type AttentionParamSpec, type ModelWeights } from './weights.ts';

export interface AttentionParamInit extends AttentionParamSpec {
  readonly init?: ParamInit;
}

export type ParamInit = 'normal' | 'decay' | 'ones' | 'retention';

export const MARKER = '.init-model';

/** Random weights for `config`, as described at the top of this file. */
export function randomWeights(config: ModelConfig, seed: number, attentionParams: readonly AttentionParamInit[]): ModelWeights<Float64Array> {
  const initOf = new Map(attentionParams.map((p) => [p.name, p.init ?? 'normal']));
  const tensors = new Map<string, Tensor<Float64Array>>();
  for (const { name, shape } of expectedTensors(config, attentionParams)) {
    const param = /^model\.layers\.\d+\.self_attn\.(.+)$/.exec(name)?.[1];
    const isNorm = name.endsWith('layernorm.weight') || name === 'model.norm.weight';
    const init = param !== undefined && initOf.has(param) ? initOf.get(param)! : isNorm ? 'ones' : 'normal';
    tensors.set(name, initTensor(shape, init, tensorSeed(seed, name)));
  }
  return weightsFromTensors(config, tensors, attentionParams, '(random weights)');
}

function initTensor(shape: readonly number[], init: ParamInit, seed: number): Tensor<Float64Array> {
  const fanIn = shape[shape.length - 1];
  switch (init) {
    case 'normal':
      return randn(shape, seed, 1 / Math.sqrt(fanIn));
    case 'ones':
      return { shape: [...shape], data: new Float64Array(numel(shape)).fill(1) };
    case 'decay': {
      const data = new Float64Array(numel(shape));
      for (let i = 0; i < data.length; i++) data[i] = 2 ** -((i % fanIn) + 1);
      return { shape: [...shape], data };
    }
    case 'retention': {
      const data = new Float64Array(numel(shape));
      for (let i = 0; i < data.length; i++) data[i] = 1 - 2 ** -(5 + (i % fanIn));
      return { shape: [...shape], data };
    }
    default: {
      const never: never = init;
      throw new Error(`unknown init ${String(never)}`);
    }
  }
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** FNV-1a of the name mixed with the seed: independent streams per tensor. */
function tensorSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ Math.imul(seed >>> 0, 0x9e3779b1);
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

export interface InitModelResult {
  readonly dir: string;
  readonly config: ModelConfig;
  readonly files: readonly string[];
}

/**
 * Writes `outDir`/config.json (a copy of `configPath` with its variant path rewritten to be relative
 * to outDir — absolute when they share no directory but the root — and its tokenizer copied beside
 * it), `outDir`/model.safetensors and the `.init-model` marker.
 */
export function initModel(configPath: string, outDir: string, seed: number, attentionParams: readonly AttentionParamInit[]): InitModelResult {
  if (!Number.isInteger(seed)) throw new Error(`initModel: seed must be an integer, got ${seed}`);
  const source = loadConfig(configPath);
  const dir = resolve(outDir);
  checkReplaceable(dir);

  const files = ['config.json', 'model.safetensors'];
  const tmp = join(dirname(dir), `.${parse(dir).base}.init-model-${process.pid}-${Date.now()}`);
  mkdirSync(dirname(dir), { recursive: true });
  mkdirSync(tmp);
  try {
    files.push(...writeModelConfig(source, tmp, dir).filter((f) => f !== 'config.json'));
    const written = loadConfig(join(tmp, 'config.json'));
    const weights = randomWeights(written, seed, attentionParams);
    const record: Record<string, { shape: readonly number[]; data: Float32Array }> = {};
    for (const [name, t] of weightsToTensors(written, weights, attentionParams)) record[name] = toFloat32(t);
    writeSafetensors(join(tmp, 'model.safetensors'), record, { format: 'pt', 'linattn.init_seed': String(seed) });
    loadWeights(written, join(tmp, 'model.safetensors'), attentionParams); // read back before it replaces anything
    writeFileSync(join(tmp, MARKER), JSON.stringify({ seed, source: source.file, files }, null, 2) + '\n');

    if (existsSync(dir)) {
      const old = `${tmp}.old`;
      renameSync(dir, old);
      renameSync(tmp, dir);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, dir);
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { dir, config: loadConfig(join(dir, 'config.json')), files: [...files, MARKER] };
}

/**
 * Writes `source`'s config.json into `into`, for a model directory that will live at `dir` (often `into` itself):
 * the variant path rewritten relative to `dir` (absolute when they share only the root), the tokenizer files
 * copied beside it. Returns the names of the files written.
 */
export function writeModelConfig(source: ModelConfig, into: string, dir = into): string[] {
  const raw = JSON.parse(readFileSync(source.file, 'utf8')) as Record<string, unknown>;
  const attention = { ...(raw['attention'] as Record<string, unknown>), variant: pathFrom(resolve(dir), source.attention.variant) };
  const tokenizerFiles: [string, string][] = [];
  if (source.tokenizer.kind === 'tokenizer.json') {
    tokenizerFiles.push([source.tokenizer.path, 'tokenizer.json']);
    const tokConfig = join(dirname(source.tokenizer.path), 'tokenizer_config.json');
    if (existsSync(tokConfig)) tokenizerFiles.push([tokConfig, 'tokenizer_config.json']);
  }
  const outJson = { ...raw, attention, tokenizer: source.tokenizer.kind === 'bytes' ? 'bytes' : 'tokenizer.json' };
  const files = ['config.json'];
  for (const [from, name] of tokenizerFiles) {
    if (resolve(from) !== resolve(into, name)) copyFileSync(from, join(into, name));
    files.push(name);
  }
  writeFileSync(join(into, 'config.json'), JSON.stringify(outJson, null, 2) + '\n');
  return files;
}

/** Throws unless `dir` is absent, empty, or holds only the files its init-model marker lists. */
function checkReplaceable(dir: string): void {
  if (!existsSync(dir)) return;
  const entries = readdirSync(dir);
  if (entries.length === 0) return;
  const marker = join(dir, MARKER);
  if (!entries.includes(MARKER)) {
    throw new ModelFileError(dir, 'directory', `not empty and not written by init-model (no ${MARKER}); refusing to overwrite`);
  }
  let listed: string[];
  try {
    listed = (JSON.parse(readFileSync(marker, 'utf8')) as { files: string[] }).files;
    if (!Array.isArray(listed)) throw new Error('no file list');
  } catch (e) {
    throw new ModelFileError(marker, 'files', `unreadable init-model marker (${(e as Error).message}); refusing to overwrite ${dir}`);
  }
  const foreign = entries.filter((e) => e !== MARKER && !listed.includes(e));
  if (foreign.length > 0) {
    throw new ModelFileError(dir, 'directory', `holds files init-model did not write (${foreign.join(', ')}); refusing to overwrite`);
  }
}

/** `target` relative to `dir` with forward slashes, or absolute when the two share only the root. */
function pathFrom(dir: string, target: string): string {
  const firstPart = (p: string) => p.split(sep).filter(Boolean)[0];
  if (!isAbsolute(target) || firstPart(dir) !== firstPart(target)) return target;
  return relative(dir, target).split(sep).join('/');
}
