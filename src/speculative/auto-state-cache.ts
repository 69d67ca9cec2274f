// Where `linattn generate --tree auto` keeps its controller's measurements between runs when no --auto-state FILE is
// given: on a hardware GPU each generation had started fresh and spent part of itself exploring (H200 call 167: one
// fresh 256-token generation 1.31–1.96× plain decoding, where one controller kept across generations ran 1.96–2.37×
// in call 147). The file is keyed by what the measurements are of — the model's files (path, size and modification
// time: a retrained model starts afresh), the draft, the adapter and the controller's options — and lives beside the
// autotune cache ($LINATTN_CACHE_DIR or ~/.cache/linattn, under speculation/). The controller keeps re-probing what it
// did not pick (speculation-controller.ts), so measurements of other text are a start, not a verdict.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { ModelFileError } from '../model/errors.ts';
import { readJsonFile } from '../model/json-file.ts';
import type { ControllerState } from './speculation-controller.ts';

export interface AutoStateKey {
  /** The model's files (config.json, model.safetensors; a draft model's too). */
  readonly files: readonly string[];
  /** --speculate as given. */
  readonly source: string;
  readonly adapter: string;
  /** The controller's option labels, plain first. */
  readonly labels: readonly string[];
  /** Sequences decoded together, above 1 (a batch's rates are the whole batch's tokens over its time). */
  readonly batch?: number;
  /** A batch's credit (batch-credit.ts): its rates count what it is credited with, so each keeps its own measurements. */
  readonly credit?: string;
  /** Continuous batching (more prompts than sequences): its rates include the refills, so it keeps its own measurements. */
  readonly continuous?: boolean;
}

/** The cache directory the autotune cache uses too. */
export const cacheDir = () => process.env.LINATTN_CACHE_DIR ?? join(homedir(), '.cache', 'linattn');

/** The measurements file for `key`: $cacheDir/speculation/<hash>.json. */
export function autoStatePath(key: AutoStateKey): string {
  const files = key.files.map((f) => {
    const path = resolve(f);
    if (!existsSync(path)) return { path };
    const st = statSync(path);
    return { path, size: st.size, mtimeMs: st.mtimeMs };
  });
  const hash = createHash('sha256').update(JSON.stringify({ files, source: key.source, adapter: key.adapter, labels: key.labels, ...(key.batch !== undefined && key.batch > 1 && { batch: key.batch }), ...(key.credit !== undefined && { credit: key.credit }), ...(key.continuous && { continuous: true }) })).digest('hex').slice(0, 20);
  return join(cacheDir(), 'speculation', `${hash}.json`);
}

/** --auto-state's measurements, or none when the file does not exist yet; a file that is not one names itself. */
export function readAutoState(path: string): { from?: ControllerState } {
  if (!existsSync(path)) return {};
  const state = readJsonFile(path, 'not the JSON --auto-state writes') as ControllerState;
  if (!(state && Array.isArray(state.labels) && Array.isArray(state.options) && state.options.every((o) => o && Array.isArray(o.recent)))) {
    throw new ModelFileError(path, 'file', 'not the measurements --auto-state writes ({"labels": […], "options": [{"recent": […], …}]})');
  }
  return { from: state };
}

/** Written beside, then renamed over FILE: a run stopped while writing leaves the last measurements whole. */
export function writeAutoState(path: string, state: ControllerState): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp`;
  writeFileSync(tmp, JSON.stringify(state) + '\n');
  renameSync(tmp, path);
}

/**
 * A controller made by `make` from the measurements kept in `path` (none: afresh). Measurements of other options, or a
 * file that is not them, name the file; the cache's own file (`named` false: not one the user gave) is then started
 * afresh instead, and rewritten after the run. `started`: whether the measurements were used.
 */
export function keptController<T>(path: string | undefined, named: boolean, make: (from?: ControllerState) => T): { controller: T; started: boolean } {
  if (path === undefined) return { controller: make(), started: false };
  try {
    const saved = readAutoState(path);
    try {
      return { controller: make(saved.from), started: saved.from !== undefined };
    } catch (e) {
      throw new ModelFileError(path, 'file', (e as Error).message.replace(/^speculation controller: /, ''));
    }
  } catch (e) {
    if (named || !(e instanceof ModelFileError)) throw e;
    return { controller: make(), started: false };
  }
}

/** The report's line on where auto's measurements came from and went. */
export function keptLine(path: string, started: boolean): string {
  return `auto: ${started ? 'started from the measurements of earlier runs in' : 'measured afresh; kept for the next run in'} ${path} (--auto-state none: afresh, nothing kept)\n`;
}
