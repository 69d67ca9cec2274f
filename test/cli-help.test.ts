// What a newcomer meets first: `linattn`, `linattn --help`, `linattn COMMAND --help`, a mistyped command and a
// mistyped option. Runs the CLI in-process (src/cli/main.ts) with captured output; nothing here opens a device.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { main } from '../src/cli/main.ts';

async function linattn(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  return { code, out, err };
}

const COMMANDS = ['check', 'ir', 'compile', 'inputs', 'run', 'init-model', 'train', 'eval', 'generate', 'demo'];

describe('linattn --help', () => {
  it('lists every command with its synopsis, exit 0; without a command the same, exit 2', async () => {
    const help = await linattn('--help');
    expect(help.code).toBe(0);
    for (const c of COMMANDS) expect(help.out).toContain(`linattn ${c} `);
    const bare = await linattn();
    expect(bare.code).toBe(2);
    expect(bare.out).toBe(help.out);
  });

  it.each(COMMANDS)('linattn %s --help prints that command\'s usage and options, exit 0, before checking anything else', async (c) => {
    for (const argv of [[c, '--help'], [c, '-h'], ['help', c], [c, 'no-such-file.la', '--bogus', '--help']]) {
      const r = await linattn(...argv);
      expect(r.code, argv.join(' ')).toBe(0);
      expect(r.out.startsWith(`usage: linattn ${c} `), r.out).toBe(true);
      expect(r.out).toMatch(/\n {2}(-\w, )?--\w/); // at least one option described
      expect(r.err).toBe('');
    }
  });

  it('a command that is not one says so, names it and lists the commands (exit 2)', async () => {
    const r = await linattn('logits', '--model', 'm');
    expect(r.code).toBe(2);
    expect(r.err).toContain("unknown command 'logits'");
    for (const c of COMMANDS) expect(r.err).toContain(c);
    expect(r.err).not.toMatch(/Unknown option/);
  });

  it('an unknown option names the command and the options it takes (exit 2)', async () => {
    const r = await linattn('run', 'examples/paper/elu_dwconv.la', '--model', 'm');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/^linattn run: unknown option '--model' \(linattn run takes --inputs, --out, /);
    expect(r.err).toContain('usage: linattn run FILE.la');
    const g = await linattn('generate', '--model', 'm', '--prompt', 'x', '--emit', 'ts');
    expect(g.code).toBe(2);
    expect(g.err).toMatch(/^linattn generate: unknown option '--emit'/);
  });

  it('a missing value, a missing file argument and a bad choice are usage errors naming the command', async () => {
    expect(await linattn('inputs', 'examples/paper/elu_dwconv.la', '--out')).toMatchObject({ code: 2, err: expect.stringMatching(/^linattn inputs: --out needs a value/) });
    expect(await linattn('ir')).toMatchObject({ code: 2, err: expect.stringMatching(/^linattn ir: give a variant file/) });
    expect(await linattn('run', 'x.la', '--inputs', 'i', '--out', 'o', '--device', 'tpu')).toMatchObject({ code: 2, err: expect.stringMatching(/^linattn run: --device takes gpu or cpu, got 'tpu'/) });
  });

  it('a DSL error prints file:line:col, the line and a caret; a missing file is named; the other files are still checked (exit 1)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'linattn-help-'));
    try {
      const bad = join(dir, 'bad.la');
      writeFileSync(bad, 'variant bad\ninput q[h, d], k[h, d], v[h, e]\nterm a : causal score dot(q[i], k[j], e) value v\noutput a\n');
      const r = await linattn('check', bad, 'no-such-file.la', 'examples/paper/elu_dwconv.la');
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/^examples\/paper\/elu_dwconv\.la: ok/);
      expect(r.err).toMatch(new RegExp(`^${bad.replace(/[.\\/]/g, '\\$&')}:3:\\d+: .*\\n  term a : causal score dot\\(q\\[i\\], k\\[j\\], e\\) value v\\n +\\^`));
      expect(r.err).toContain('linattn check: cannot read variant no-such-file.la');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
