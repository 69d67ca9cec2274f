// The autotuner's on-disk cache: best chunk schedule per (variant text, axis sizes, b, t bucket, adapter).
// Lives in $LINATTN_CACHE_DIR or ~/.cache/linattn/autotune.json; a corrupt file is ignored and rewritten.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ChunkSchedule } from '../../backends/wgsl/chunked.ts';
import { printProgram } from '../ir/print.ts';
import type { Program } from '../ir/types.ts';
import type { Gpu } from './device.ts';

export function cachePath(): string {
  return join(process.env.LINATTN_CACHE_DIR ?? join(homedir(), '.cache', 'linattn'), 'autotune.json');
}

function hash(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h.toString(16);
}

export function cacheKey(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, shape: { b: number; t: number }): string {
  const tBucket = 2 ** Math.ceil(Math.log2(Math.max(1, shape.t)));
  return `${gpu.adapterName}|${hash(printProgram(p))}|${JSON.stringify(sizes)}|b${shape.b}|t${tBucket}`;
}

function load(): Record<string, ChunkSchedule> {
  try {
    const j = JSON.parse(readFileSync(cachePath(), 'utf8'));
    return j && typeof j === 'object' ? j : {};
  } catch {
    return {};
  }
}

export function cachedSchedule(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, shape: { b: number; t: number }): ChunkSchedule | undefined {
  return load()[cacheKey(gpu, p, sizes, shape)];
}

export function storeSchedule(gpu: Gpu, p: Program, sizes: Readonly<Record<string, number>>, shape: { b: number; t: number }, s: ChunkSchedule): void {
  const all = load();
  all[cacheKey(gpu, p, sizes, shape)] = s;
  const path = cachePath();
  try {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(all, null, 1));
    renameSync(tmp, path);
  } catch (e) {
    process.stderr.write(`linattn: could not write the autotune cache ${path}: ${(e as Error).message}\n`);
  }
}
