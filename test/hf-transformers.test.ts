// The tiny Hugging Face checkpoints against reference logits from outside this project (tools/make-hf-fixtures.py):
// tiny-llama's from Hugging Face transformers' LlamaForCausalLM, tiny-linearized's from a PyTorch re-implementation
// of the authors' linearized layer. Both run in float64 (transformers keeps RoPE and the softmax in float32), so the
// float64 CPU model agrees to ~1e-6 and the GPU model to float32 rounding. A missing reference file fails here: it
// must be made, once, on a machine with torch and transformers (the fixtures are committed with it).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readSafetensors } from '../src/io/safetensors.ts';
import { cpuAttentionFromVariant } from '../src/model/cpu-attention.ts';
import { cpuForward, cpuModel } from '../src/model/cpu-forward.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { loadModelDir } from '../src/model/model-dir.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { relativeError } from '../src/tensor.ts';
import { FIXTURES } from '../tools/make-hf-checkpoints.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

function reference(dir: string): Float32Array {
  const file = join(dir, 'reference_logits.safetensors');
  expect(existsSync(file), `${file} is missing: run python3 tools/make-hf-fixtures.py (torch, transformers, safetensors) and commit its output`).toBe(true);
  const t = readSafetensors(file).get('logits');
  expect(t, `${file} holds no tensor 'logits'`).toBeDefined();
  return t!.data;
}

describe.each([
  ['tiny-llama', 'transformers LlamaForCausalLM'],
  ['tiny-linearized', 'the re-implemented linearized layer'],
])('%s against %s', (name) => {
  const dir = join(FIXTURES, name);
  const tokens = JSON.parse(readFileSync(join(dir, 'tokens.json'), 'utf8')) as number[];

  it('float64 CPU logits at every position equal the reference', () => {
    const want = reference(dir);
    const m = loadModelDir(dir);
    const cpu = cpuModel(m.config, m.weights);
    const got = cpuForward(cpu, [tokens], cpuAttentionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention))).logits;
    expect(got.data.length).toBe(want.length);
    const err = relativeError(got.data, want);
    expect(err, `${name}: CPU vs reference relative error ${err.toExponential(2)}`).toBeLessThanOrEqual(1e-5);
  });

  it('GPU logits at every position equal the reference', async () => {
    const want = reference(dir);
    const g = await gpu();
    const m = loadModelDir(dir);
    const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: tokens.length }));
    try {
      expectRelClose(await model.forwardLogits([tokens]), want, 1e-4, `${name} GPU vs reference`);
    } finally {
      await model.destroy();
    }
  });
});
