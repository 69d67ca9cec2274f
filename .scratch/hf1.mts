import { loadModelDir } from '../src/model/model-dir.ts';
import { cpuModel, cpuForward } from '../src/model/cpu-forward.ts';
import { cpuAttentionFromVariant } from '../src/model/cpu-attention.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { compiledAttentionFactory } from '../src/runtime/compiled-attention.ts';
import { getDevice } from '../src/runtime/dawn.ts';
import { relativeError } from '../src/tensor.ts';
import { readFileSync } from 'node:fs';
for (const name of ['tiny-llama', 'tiny-linearized']) {
  const dir = `test/fixtures/hf/${name}`;
  const m = loadModelDir(dir);
  console.log(name, m.attention, m.config.numKeyValueHeads, m.config.rope, m.variant.params);
  const tokens: number[] = JSON.parse(readFileSync(`${dir}/tokens.json`, 'utf8'));
  const cpu = cpuModel(m.config, m.weights);
  const ref = cpuForward(cpu, [tokens], cpuAttentionFromVariant(m.variant.program, cpu.weights.layers.map((l) => l.attention)));
  const g = await getDevice();
  const model = await GpuModel.create(g, m.config, m.weights, await compiledAttentionFactory(g, m.variant.compiled, m.config.numHeads, m.config.headDim, { maxLength: 256 }));
  const got = await model.forwardLogits([tokens]);
  console.log('gpu vs cpu', relativeError(got, ref.logits.data), ref.logits.data.slice(0, 4));
  await model.destroy();
}
process.exit(0);
