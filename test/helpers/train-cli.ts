// Shared pieces of the tests that run the training commands end to end: the tiny model and the shipped text, a
// scratch directory per test file with a few KB of that text, a command run that keeps its output, and a run's log.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { execute, type Command } from '../../src/cli/command.ts';
import { main } from '../../src/cli/main.ts';

export const TINY = 'examples/models/tiny/config.json';
export const KJV = 'examples/data/kjv-excerpt.txt';

/**
 * A temporary directory named `prefix…`, removed after the file's tests, and `small`: 3,000 characters of the excerpt
 * from character `from` in it — enough for short runs and cheap float64 evaluation.
 */
export function scratchWithText(prefix: string, from: number): { readonly root: string; readonly small: string } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const small = join(root, 'small.txt');
  writeFileSync(small, readFileSync(KJV, 'utf8').slice(from, from + 3_000));
  return { root, small };
}

/** Runs command `c` (undefined: the whole CLI, the command named first in argv) and keeps its exit code and output. */
export async function runCommand(c: Command | undefined, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io = { stdout: (s: string) => void (out += s), stderr: (s: string) => void (err += s) };
  const code = c ? await execute(c, argv, io) : await main(argv, io);
  return { code, out, err };
}

/** The run's train_log.jsonl, without the wall-clock field. */
export function trainLog(dir: string): Record<string, number>[] {
  return readFileSync(join(dir, 'train_log.jsonl'), 'utf8').trim().split('\n').map((l) => {
    const { elapsed_s: _, ...rest } = JSON.parse(l) as Record<string, number>;
    return rest;
  });
}
