// `linattn grad` as a user calls it, on files `linattn inputs` makes: the GPU's fused backward and the CPU's
// float64 forms write d<name> for every input and parameter equal to the gradient oracle (reverse mode over the
// parallel form, computed here from the same files); a noncausal training variant runs; a missing, mis-shaped or
// non-float32 cotangent — or input — is refused naming the tensor, exit ≠ 0, and nothing is written.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { gradientParallel } from '../backends/cpu/grad-oracle.ts';
import { main } from '../src/cli/main.ts';
import { loadVariant } from '../src/io/variant-file.ts';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.ts';
import { randn, toFloat64 } from '../src/tensor.ts';
import { maxRelative } from './helpers/grad.ts';

const dir = mkdtempSync(join(tmpdir(), 'linattn-grad-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function linattn(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  return { code, out, err };
}

/** Inputs from `linattn inputs` and a cotangent file for them; returns their paths. */
async function files(variant: string, tag: string): Promise<{ input: string; dout: string }> {
  const input = join(dir, `in-${tag}.safetensors`);
  const made = await linattn('inputs', variant, '--b', '2', '--t', '13', '--axis', 'h=2', '--axis', 'd=2', '--axis', 'e=3', '--seed', '5', '--out', input);
  expect(made.code, made.err).toBe(0);
  const dout = join(dir, `do-${tag}.safetensors`);
  writeSafetensors(dout, { o: randn([2, 13, 2, 3], 6) });
  return { input, dout };
}

function expectOracle(variant: string, input: string, dout: string, out: string, tol: number, what: string): void {
  const p = loadVariant(variant);
  const x = Object.fromEntries([...readSafetensors(input)].map(([k, v]) => [k, toFloat64({ shape: v.shape, data: v.data })]));
  const o = readSafetensors(dout).get('o')!;
  const want = gradientParallel(p, x, toFloat64({ shape: o.shape, data: o.data }));
  const got = readSafetensors(out);
  expect([...got.keys()].sort()).toEqual(Object.keys(want).sort());
  for (const [name, w] of Object.entries(want)) {
    const g = got.get(name)!;
    expect(g.dtype).toBe('F32');
    expect(g.shape).toEqual(w.shape);
    expect(maxRelative(g.data, w.data), `${what}: ${name}`).toBeLessThanOrEqual(tol);
  }
}

describe('linattn grad', () => {
  it('on the GPU (fused chunked backward) equals the gradient oracle for elu+1 attention with the masked DWConv', async () => {
    const v = 'examples/paper/elu_dwconv.la';
    const { input, dout } = await files(v, 'gpu');
    const out = join(dir, 'grads-gpu.safetensors');
    const r = await linattn('grad', v, '--inputs', input, '--dout', dout, '--out', out);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/wrote .*dq \[2, 13, 2, 2\], dk \[2, 13, 2, 2\], dv \[2, 13, 2, 3\], dw \[2, 3, 4\] \(gpu, chunked, \d+ launches, fused/);
    expectOracle(v, input, dout, out, 1e-4, 'gpu');
  });

  it('on the CPU: the float64 gradient program (chunked) and the oracle itself (parallel); a noncausal variant trains', async () => {
    for (const [v, form] of [['examples/paper/elu_dwconv.la', 'chunked'], ['examples/paper/elu_dwconv.la', 'parallel'], ['examples/paper/leaky_dwconv.la', 'chunked']] as const) {
      const tag = `${v.replace(/.*\//, '')}-${form}`;
      const { input, dout } = await files(v, tag);
      const out = join(dir, `grads-${tag}.safetensors`);
      const r = await linattn('grad', v, '--inputs', input, '--dout', dout, '--out', out, '--device', 'cpu', '--form', form);
      expect(r.code, r.err).toBe(0);
      expectOracle(v, input, dout, out, 1e-6, `cpu ${form} ${v}`);
    }
  });

  const v = 'examples/paper/elu_dwconv.la';
  const f64 = (name: string, shape: number[]) => {
    const header = JSON.stringify({ [name]: { dtype: 'F64', shape, data_offsets: [0, 8 * shape.reduce((a, b) => a * b, 1)] } });
    const h = Buffer.from(header + ' '.repeat((8 - (header.length % 8)) % 8));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(h.length));
    return Buffer.concat([len, h, Buffer.alloc(8 * shape.reduce((a, b) => a * b, 1))]);
  };
  const cases: [string, (paths: { input: string; dout: string }) => string[], RegExp][] = [
    ['a cotangent file without o', ({ input }) => {
      const p = join(dir, 'no-o.safetensors');
      writeSafetensors(p, { do: randn([2, 13, 2, 3], 1) });
      return ['--inputs', input, '--dout', p];
    }, /no-o\.safetensors: missing tensor 'o' \(the output's cotangent \[b, t, h, e\] = \[2, 13, 2, 3\]\); it holds do/],
    ['a mis-shaped o', ({ input }) => {
      const p = join(dir, 'bad-shape.safetensors');
      writeSafetensors(p, { o: randn([2, 13, 2, 2], 1) });
      return ['--inputs', input, '--dout', p];
    }, /tensor 'o' has shape \[2, 13, 2, 2\]; the output's cotangent must be \[b, t, h, e\] = \[2, 13, 2, 3\]/],
    ['a float64 o', ({ input }) => {
      const p = join(dir, 'f64-o.safetensors');
      writeFileSync(p, f64('o', [2, 13, 2, 3]));
      return ['--inputs', input, '--dout', p];
    }, /tensor 'o' is F64; linattn grad takes a float32 \(F32\) cotangent/],
    ['a float64 input', ({ dout }) => {
      const p = join(dir, 'f64-q.safetensors');
      writeFileSync(p, f64('q', [2, 13, 2, 2]));
      return ['--inputs', p, '--dout', dout];
    }, /tensor 'q' is F64/],
  ];
  it.each(cases)('refuses %s naming the tensor, exit ≠ 0, no output', async (name, make, message) => {
    const paths = await files(v, 'bad');
    const out = join(dir, `never-${name.replace(/\W/g, '_')}.safetensors`);
    const r = await linattn('grad', v, ...make(paths), '--out', out, '--device', 'cpu');
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(message);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(existsSync(out)).toBe(false);
  });
});
