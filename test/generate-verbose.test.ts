// `linattn generate -v` prints the attention layers' prefill plan decision (choosePrefill's reason, handed through
// the PrepareAttention context to compiledAttentionFactory's onChoice) on stderr; without -v it does not.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execute, type CommandIo } from '../src/cli/command.ts';
import { generateCommand } from '../src/cli/generate.ts';
import { initModelCommand } from '../src/cli/init-model.ts';
import { gpu } from './helpers/gpu.ts';

const TINY = resolve(import.meta.dirname, '../examples/models/tiny/config.json');
const root = mkdtempSync(join(tmpdir(), 'generate-verbose-'));
const modelDir = join(root, 'tiny');
afterAll(() => rmSync(root, { recursive: true, force: true }));

function capture(): CommandIo & { out: string; err: string } {
  const io = { out: '', err: '', stdout: (s: string) => void (io.out += s), stderr: (s: string) => void (io.err += s) };
  return io;
}

beforeAll(async () => {
  const io = capture();
  expect(await execute(initModelCommand, ['--config', TINY, '--out', modelDir, '--seed', '3'], io), io.err).toBe(0);
});

describe('linattn generate --verbose', () => {
  it('prints the prefill plan choice of the tiny model\'s elu_dwconv layers once, and nothing of it without -v', async () => {
    const g = await gpu();
    const run = async (...extra: string[]) => {
      const io = capture();
      const code = await execute(generateCommand, ['--model', modelDir, '--prompt', 'ab', '--max-tokens', '2', ...extra], io);
      expect(code, io.err).toBe(0);
      return io.err;
    };
    const verbose = await run('-v');
    const lines = verbose.split('\n').filter((l) => l.startsWith('attention prefill plan'));
    expect(lines, verbose).toHaveLength(1);
    // A software adapter keeps every feature inline; hardware names the chosen schedule with its estimates.
    expect(lines[0]).toMatch(g.isSoftware ? /^attention prefill plan \(elu_dwconv, fused chunk kernel\): every feature inline \(chunk \d+, cols \d+, threads \d+\): software adapter$/ : /^attention prefill plan \(elu_dwconv, fused chunk kernel\): .*chunk \d+.*est\./);
    expect(verbose).toMatch(/prefill: \d+ tokens/);
    expect(await run()).not.toMatch(/prefill plan/);
  });
});
