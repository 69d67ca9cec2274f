import { copyFileSync, cpSync, existsSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readSafetensors, writeSafetensors, type TensorToWrite } from '../src/io/safetensors.ts';
import { execute, type CommandIo } from '../src/cli/command.ts';
import { generateWith } from '../src/cli/generate.ts';
import { initModelCommand } from '../src/cli/init-model.ts';
import type { AttentionContext } from '../src/model/attention-context.ts';
import { simpleAttentionFactory } from './helpers/simple-gpu-attention.ts';

const TINY = resolve(import.meta.dirname, '../examples/models/tiny/config.json');
const root = mkdtempSync(join(tmpdir(), 'model-commands-'));
const modelDir = join(root, 'tiny');
afterAll(() => rmSync(root, { recursive: true, force: true }));

function capture(): CommandIo & { out: string; err: string } {
  const io = {
    out: '',
    err: '',
    stdout: (s: string) => void (io.out += s),
    stderr: (s: string) => void (io.err += s),
  };
  return io;
}

const prepareAttention = ({ gpu, config, program }: AttentionContext) =>
  simpleAttentionFactory(gpu, { heads: config.numHeads, headDim: config.headDim, K: program.sizes['K'] });

/** A copy of the initialised model whose checkpoint is rewritten by `edit`. */
function brokenCopy(name: string, edit: (tensors: Record<string, TensorToWrite>) => void): string {
  const dir = join(root, name);
  cpSync(modelDir, dir, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const [n, t] of readSafetensors(join(dir, 'model.safetensors'))) tensors[n] = t;
  edit(tensors);
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return dir;
}

beforeAll(async () => {
  const io = capture();
  const code = await execute(initModelCommand, ['--config', TINY, '--out', modelDir, '--seed', '11'], io);
  expect(io.err).toBe('');
  expect(code).toBe(0);
});

describe('linattn init-model', () => {
  it('writes config.json and model.safetensors with the variant parameter w [h, e, K] per layer', () => {
    expect(existsSync(join(modelDir, 'config.json'))).toBe(true);
    const tensors = readSafetensors(join(modelDir, 'model.safetensors'));
    expect(tensors.get('model.layers.0.self_attn.w')?.shape).toEqual([4, 16, 4]);
    expect(Array.from(tensors.get('model.layers.1.self_attn.w')!.data.slice(0, 4))).toEqual([0.5, 0.25, 0.125, 0.0625]);
  });

  it('exits 2 with the usage when --out is missing', async () => {
    const io = capture();
    expect(await execute(initModelCommand, ['--config', TINY], io)).toBe(2);
    expect(io.err).toMatch(/--out is required/);
    expect(io.out).toBe('');
  });
});

describe('linattn generate', () => {
  const args = (dir: string, ...more: string[]) => ['--model', dir, '--prompt', 'Hi', '--max-tokens', '6', ...more];

  it('streams the same greedy text on the GPU and on the CPU, then prints prefill and decode tokens/s', async () => {
    const onGpu = capture();
    expect(await execute(generateWith(prepareAttention), args(modelDir), onGpu)).toBe(0);
    const onCpu = capture();
    expect(await execute(generateWith(prepareAttention), args(modelDir, '--device', 'cpu'), onCpu)).toBe(0);
    expect(onGpu.out).toBe(onCpu.out);
    expect(onGpu.out.endsWith('\n')).toBe(true);
    for (const io of [onGpu, onCpu]) expect(io.err).toMatch(/^prefill: 3 tokens, [\d.]+ tokens\/s; decode: 5 tokens, [\d.]+ tokens\/s/);
  });

  it('samples with --temperature, --top-k, --top-p and --seed reproducibly', async () => {
    const outs: string[] = [];
    for (let i = 0; i < 2; i++) {
      const io = capture();
      expect(await execute(generateWith(prepareAttention), args(modelDir, '--temperature', '1.5', '--top-k', '50', '--top-p', '0.9', '--seed', '5'), io)).toBe(0);
      outs.push(io.out);
    }
    expect(outs[0]).toBe(outs[1]);
  });

  const bad: [string, () => string, RegExp][] = [
    ['a missing model directory', () => join(root, 'nowhere'), /nowhere: directory: model directory not found/],
    ['a missing checkpoint', () => {
      const dir = join(root, 'no-weights');
      cpSync(modelDir, dir, { recursive: true });
      rmSync(join(dir, 'model.safetensors'));
      return dir;
    }, /no-weights\/model\.safetensors: file: cannot read/],
    ['a truncated (corrupt) checkpoint', () => {
      const dir = join(root, 'truncated');
      cpSync(modelDir, dir, { recursive: true });
      truncateSync(join(dir, 'model.safetensors'), 1000);
      return dir;
    }, /truncated\/model\.safetensors: .*(truncated|runs beyond)/],
    ['a mis-shaped tensor', () => brokenCopy('misshaped', (t) => {
      t['model.layers.1.self_attn.q_proj.weight'] = { shape: [64, 63], data: new Float32Array(64 * 63) };
    }), /misshaped\/model\.safetensors: tensor 'model\.layers\.1\.self_attn\.q_proj\.weight': has shape \[64, 63\] but \[64, 64\] was expected/],
    ['a missing variant parameter', () => brokenCopy('no-w', (t) => {
      delete t['model.layers.0.self_attn.w'];
    }), /no-w\/model\.safetensors: tensor 'model\.layers\.0\.self_attn\.w': missing \(expected shape \[4, 16, 4\]\)/],
    ['a variant parameter of the wrong shape', () => brokenCopy('w-shape', (t) => {
      t['model.layers.1.self_attn.w'] = { shape: [4, 16, 3], data: new Float32Array(4 * 16 * 3) };
    }), /w-shape\/model\.safetensors: tensor 'model\.layers\.1\.self_attn\.w': has shape \[4, 16, 3\]/],
    ['a non-finite weight', () => brokenCopy('nan', (t) => {
      const data = new Float32Array(64).fill(1);
      data[3] = NaN;
      t['model.norm.weight'] = { shape: [64], data };
    }), /nan\/model\.safetensors: model\.norm\.weight: element 3 is NaN/],
    ['a config.json that is not JSON', () => {
      const dir = join(root, 'bad-config');
      cpSync(modelDir, dir, { recursive: true });
      copyFileSync(join(dir, 'model.safetensors'), join(dir, 'config.json'));
      return dir;
    }, /bad-config\/config\.json: file: not valid JSON/],
  ];
  for (const [what, make, message] of bad) {
    for (const device of ['gpu', 'cpu']) {
      it(`${what} (--device ${device}): exit 1, one message naming the file and tensor, no output`, async () => {
        const io = capture();
        const code = await execute(generateWith(prepareAttention), args(make(), '--device', device), io);
        expect(code).toBe(1);
        expect(io.err).toMatch(message);
        expect(io.err.trim().split('\n')).toHaveLength(1);
        expect(io.out).toBe('');
      });
    }
  }

  it('bad arguments exit 2 before touching the model', async () => {
    for (const extra of [['--max-tokens', '0'], ['--top-p', '1.5'], ['--device', 'tpu'], ['--bogus']]) {
      const io = capture();
      expect(await execute(generateWith(prepareAttention), ['--model', modelDir, '--prompt', 'x', ...extra], io), extra.join(' ')).toBe(2);
      expect(io.out).toBe('');
    }
  });
});
