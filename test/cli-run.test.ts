// `linattn inputs` + `linattn run` end to end, as a user calls them: the paper's layer on the GPU through
// safetensors files matches the formula written out independently (test/references), and bad files are
// refused with the tensor named and a non-zero exit, writing nothing.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { relativeError } from '../src/tensor.ts';
import { elu } from './references/feature-maps.ts';
import { maskedConv } from './references/conv.ts';
import { sum } from './references/common.ts';

const dir = mkdtempSync(join(tmpdir(), 'linattn-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const VARIANT = 'examples/paper/elu_dwconv.la';

function linattn(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/linattn.ts', ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('linattn run', () => {
  it.each(['chunked', 'recurrent', 'parallel'])('--form %s on the GPU matches the formula of elu+1 attention with the masked DWConv', (form) => {
    const input = join(dir, `in-${form}.safetensors`);
    const out = join(dir, `out-${form}.safetensors`);
    const made = linattn('inputs', VARIANT, '--b', '2', '--t', '37', '--axis', 'h=3', '--axis', 'd=4', '--axis', 'e=5', '--seed', '9', '--out', input);
    expect(made.code, made.stderr).toBe(0);
    const ran = linattn('run', VARIANT, '--inputs', input, '--out', out, '--device', 'gpu', '--form', form);
    expect(ran.code, ran.stderr).toBe(0);
    const x = Object.fromEntries([...readSafetensors(input)].map(([k, v]) => [k, { shape: v.shape, data: v.data }]));
    const o = readSafetensors(out).get('o')!;
    expect(o.shape).toEqual([2, 37, 3, 5]);
    const want = sum(elu(x), maskedConv(x, 4));
    expect(relativeError(o.data, want)).toBeLessThanOrEqual(1e-4);
  });

  const good = join(dir, 'good.safetensors');
  const cases: [string, (path: string) => void, RegExp][] = [
    ['a missing tensor', (p) => {
      const m = readSafetensors(good);
      writeSafetensors(p, Object.fromEntries([...m].filter(([k]) => k !== 'w').map(([k, v]) => [k, v])));
    }, /missing tensor 'w' \(parameter \[h, e, K\]\)/],
    ['a wrong shape', (p) => {
      const m = readSafetensors(good);
      writeSafetensors(p, Object.fromEntries([...m].map(([k, v]) => [k, k === 'k' ? { shape: [1, 8, 2, 3], data: v.data.subarray(0, 48) } : v])));
    }, /'k'.*d = 3|d = 3.*'k'/],
    ['a float64 tensor', (p) => {
      const header = JSON.stringify({ q: { dtype: 'F64', shape: [1, 1], data_offsets: [0, 8] } });
      const pad = ' '.repeat((8 - (header.length % 8)) % 8);
      const h = Buffer.from(header + pad);
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      writeFileSync(p, Buffer.concat([len, h, Buffer.alloc(8)]));
    }, /tensor 'q' is F64; linattn run takes float32/],
    ['a truncated file', (p) => {
      const m = readSafetensors(good);
      writeSafetensors(p, Object.fromEntries([...m]));
      const bytes = readFileSync(p);
      writeFileSync(p, bytes.subarray(0, bytes.length - 40));
    }, /truncat|short|bytes|offset/i],
  ];
  it.each(cases)('refuses %s naming the problem, exit ≠ 0, no output', (_name, make, message) => {
    if (!existsSync(good)) expect(linattn('inputs', VARIANT, '--b', '1', '--t', '8', '--axis', 'h=2', '--axis', 'd=4', '--axis', 'e=4', '--out', good).code).toBe(0);
    const bad = join(dir, `bad-${_name.replace(/\W/g, '_')}.safetensors`);
    const out = join(dir, `never-${_name.replace(/\W/g, '_')}.safetensors`);
    make(bad);
    const r = linattn('run', VARIANT, '--inputs', bad, '--out', out, '--device', 'cpu');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // a message, not a stack trace
    expect(existsSync(out)).toBe(false);
  });
});
