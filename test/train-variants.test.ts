// The experiments' variants through `linattn train` and `linattn eval` on lavapipe (tiny model):
//   - softmax attention (its compiled backward: lse, then probabilities) and the leaky ablation leaky_dwconv (its
//     noncausal convolution in the parallel form beside the chunked causal term) train on the GPU, their steps equal
//     to the float64 CPU trainer's;
//   - `eval --causal`: each position predicted from its prefix alone. For a causal model that is the teacher-forced
//     loss again; for leaky_dwconv it is not (teacher-forced, its convolution reads the next token), and the GPU and
//     the float64 CPU agree on both; `--json` gives both.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCommand, scratchWithText, TINY, trainLog } from './helpers/train-cli.ts';

const { root, small } = scratchWithText('linattn-variants-', 30_000);

/** The tiny config with another variant (absolute path) and options. */
function tinyWith(name: string, file: string, options: Record<string, number>): string {
  const c = JSON.parse(readFileSync(TINY, 'utf8'));
  c.attention = { variant: resolve(file), options };
  const path = join(root, `${name}.json`);
  writeFileSync(path, JSON.stringify(c));
  return path;
}

const run = (...argv: string[]) => runCommand(undefined, ...argv);

const SOFTMAX = () => tinyWith('softmax', 'examples/variants/softmax.la', { D: 16 });
const LEAKY = () => tinyWith('leaky', 'examples/paper/leaky_dwconv.la', { K: 3 });

describe('the experiments’ variants in linattn train', () => {
  it.each([['softmax', SOFTMAX], ['leaky_dwconv', LEAKY]])('%s trains on the GPU: its steps equal the float64 CPU trainer’s', async (name, config) => {
    const args = ['train', '--config', config(), '--data', small, '--steps', '2', '--batch', '2', '--block', '16', '--eval-every', '2'];
    const gpuOut = join(root, `${name}-gpu`);
    const cpuOut = join(root, `${name}-cpu`);
    const r = await run(...args, '--out', gpuOut);
    expect(r.code, r.err).toBe(0);
    expect((await run(...args, '--out', cpuOut, '--device', 'cpu')).code).toBe(0);
    const [got, want] = [trainLog(gpuOut), trainLog(cpuOut)];
    expect(got.length).toBe(want.length);
    got.forEach((l, i) => {
      for (const key of ['loss', 'val_loss']) if (want[i][key] !== undefined) expect(Math.abs(l[key] - want[i][key]), `${name}: ${key} at line ${i}`).toBeLessThan(1e-4 * want[i][key]);
    });
  });
});

describe('linattn eval --causal', () => {
  const evalJson = async (dir: string, device: string) => {
    const r = await run('eval', '--model', dir, '--data', small, '--block', '12', '--windows', '3', '--batch', '3', '--causal', '--json', '--device', device);
    expect(r.code, r.err).toBe(0);
    return JSON.parse(r.out) as { loss: number; causal_loss: number; causal_perplexity: number; tokens: number };
  };

  it('a causal model: the causally consistent loss is the teacher-forced one', async () => {
    const dir = join(root, 'causal-model');
    expect((await run('init-model', '--config', TINY, '--out', dir)).code).toBe(0);
    const r = await evalJson(dir, 'gpu');
    expect(r.tokens).toBe(36);
    expect(Math.abs(r.causal_loss - r.loss)).toBeLessThan(1e-5 * r.loss);
    expect(r.causal_perplexity).toBeCloseTo(Math.exp(r.causal_loss), 9);
  });

  it('leaky_dwconv: teacher-forced and causally consistent losses differ (the leak); GPU and float64 CPU agree on both', async () => {
    const dir = join(root, 'leaky-model');
    expect((await run('init-model', '--config', LEAKY(), '--out', dir)).code).toBe(0);
    const [g, c] = [await evalJson(dir, 'gpu'), await evalJson(dir, 'cpu')];
    for (const key of ['loss', 'causal_loss'] as const) expect(Math.abs(g[key] - c[key]), key).toBeLessThan(1e-5 * c[key]);
    expect(Math.abs(c.causal_loss - c.loss)).toBeGreaterThan(1e-3);
    // a noncausal model cannot decode: generation is refused, not silently wrong
    const gen = await run('generate', '--model', dir, '--prompt', 'In the', '--max-tokens', '2');
    expect(gen.code).not.toBe(0);
  });
});
