// The tiny Hugging Face checkpoints on the GPU: the prefill's logits and every decode step's logits (RoPE at each
// position; softmax attention's growing key/value cache, the linearized layer's groups and convolution) equal the
// float64 CPU model's; speculative decoding with Medusa heads in the Medusa project's layout emits exactly the
// plain greedy tokens; decoding past the cache's capacity is refused before anything runs.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { execute, type CommandIo } from '../src/cli/command.ts';
import { generateCommand } from '../src/cli/generate.ts';
import { writeSafetensors } from '../src/io/safetensors.ts';
import { cpuAttentionSessionFromVariant } from '../src/model/cpu-attention.ts';
import { cpuDecodeStep, cpuModel } from '../src/model/cpu-forward.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { randn, type Tensor } from '../src/tensor.ts';
import { FIXTURES } from '../tools/make-hf-checkpoints.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const tmp = mkdtempSync(join(tmpdir(), 'hf-gpu-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const PROMPT = [256, 5, 17, 200, 42, 42, 7, 255, 128, 3, 99];
const STEPS = 6;

describe.each(['tiny-llama', 'tiny-linearized'])('%s on the GPU', (name) => {
  it(`prefill of ${PROMPT.length} tokens, then ${STEPS} decode steps (teacher-forced): logits equal the float64 CPU model's`, async () => {
    const g = await gpu();
    const m = loadModelDir(join(FIXTURES, name));
    const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: 64 }));
    model.keepLogits = true;
    const cpu = cpuModel(m.config, m.weights);
    const session = cpuAttentionSessionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention));
    try {
      const cpuPrefill = PROMPT.map((id) => cpuDecodeStep(cpu, [id], session).logits.data);
      await (await model.prefill([PROMPT])).tokens();
      expectRelClose(await model.readLogits(), cpuPrefill[cpuPrefill.length - 1], 1e-4, `${name} prefill`);
      const forced = [11, 257, 0, 255, 64, 2];
      for (let k = 0; k < STEPS; k++) {
        await model.decodeStep({ tokens: [forced[k]] }).tokens();
        const want = cpuDecodeStep(cpu, [forced[k]], session).logits.data;
        expectRelClose(await model.readLogits(), want, 1e-4, `${name} decode step ${k} at position ${PROMPT.length + k}`);
      }
    } finally {
      await model.destroy();
    }
  });
});

describe('softmax attention\'s key/value cache', () => {
  it('refuses a step past its capacity, naming the layer and the capacity', async () => {
    const g = await gpu();
    const m = loadModelDir(join(FIXTURES, 'tiny-llama'));
    const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: 8 }));
    try {
      await (await model.prefill([PROMPT.slice(0, 8)])).tokens();
      expect(() => model.decodeStep()).toThrow(/layer 0: llama_softmax's key\/value cache holds 8 positions; 8 \+ 1 tokens would exceed it/);
    } finally {
      await model.destroy();
    }
  });
});

describe('linattn generate --speculate medusa on a Hugging Face directory with --medusa', () => {
  const medusa = join(tmp, 'medusa');
  mkdirSync(medusa);
  writeFileSync(join(medusa, 'config.json'), JSON.stringify({ medusa_num_heads: 2, medusa_num_layers: 1 }));
  const t: Record<string, Tensor<Float64Array>> = {};
  for (let n = 0; n < 2; n++) {
    t[`${n}.0.linear.weight`] = randn([64, 64], 70 + n, 0.2);
    t[`${n}.0.linear.bias`] = randn([64], 80 + n, 0.5);
    t[`${n}.1.weight`] = randn([258, 64], 90 + n, 1 / 8);
  }
  writeSafetensors(join(medusa, 'medusa_lm_head.safetensors'), t, undefined, 'F16');

  it.each(['tiny-llama', 'tiny-linearized'])('%s: the speculative output is the plain greedy output (GPU tree verification, Medusa heads with biases)', async (name) => {
    await gpu();
    const io = { out: '', err: '', stdout: (s: string) => void (io.out += s), stderr: (s: string) => void (io.err += s) } satisfies CommandIo & { out: string; err: string };
    const args = ['--model', join(FIXTURES, name), '--medusa', medusa, '--prompt', 'abcabcab', '--max-tokens', '10', '--speculate', 'medusa', '--tree', '[[0],[0,0],[1],[0,1]]'];
    const code = await execute(generateCommand, args, io);
    expect(code, io.err).toBe(0);
    expect(io.err).toMatch(/output identical to plain decoding/);
    expect(readFileSync(join(FIXTURES, name, 'config.json'), 'utf8')).toContain('"model_type": "llama"');
  });
});
