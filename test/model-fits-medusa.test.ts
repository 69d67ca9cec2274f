// The up-front fit check (checkModelFits, run by GpuModel.create before it compiles or allocates anything) counts
// the Medusa heads a tree verifier will upload beside the model: a model whose heads do not fit is refused at
// once, naming the total with its heads and the budget, not after the base weights are on the GPU. The GPU here
// is a mock whose device throws on any use, so "refused before allocating" is what the test sees.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/model/config.ts';
import { GpuModel } from '../src/model/gpu-model.ts';
import { checkModelFits } from '../src/model/gpu-weights.ts';
import { randomWeights } from '../src/model/init-model.ts';
import { loadModelVariant } from '../src/model/variant.ts';
import type { ModelWeights } from '../src/model/weights.ts';
import type { Gpu } from '../src/runtime/device.ts';

const TINY = resolve(import.meta.dirname, '../examples/models/tiny/config.json');

function tiny() {
  const json = JSON.parse(readFileSync(TINY, 'utf8')) as Record<string, unknown>;
  const config = parseConfig({ ...json, medusa: { num_heads: 3, bias: true } }, TINY);
  const variant = loadModelVariant(config);
  return { config, weights: randomWeights(config, 7, variant.params) };
}

/** Limits large enough for every tiny weight; any use of the device throws. */
const gpu = {
  adapterName: 'mock adapter',
  limits: { maxStorageBufferBindingSize: 2 ** 30, maxBufferSize: 2 ** 30 },
  device: new Proxy({}, { get: (_, key) => { throw new Error(`device.${String(key)} used: something was allocated or compiled`); } }),
} as unknown as Gpu;

/** Bytes of every tensor of the checkpoint, counted from the weights themselves (the tiny model has no GQA to repeat). */
function allBytes(w: ModelWeights, heads: boolean): number {
  const ts = [w.embedTokens, w.lmHead, w.norm, ...w.layers.flatMap((l) => Object.values(l).flatMap((v) => ('shape' in v ? [v] : Object.values(v))))];
  if (heads) ts.push(...w.medusa.flatMap((m) => [m.proj, m.lmHead, m.bias!]));
  return ts.reduce((s, t) => s + (t as { data: ArrayLike<number> }).data.length * 4, 0);
}

describe('the model fit check counts the Medusa heads', () => {
  const { config, weights } = tiny();
  const base = allBytes(weights, false);
  const withHeads = allBytes(weights, true);

  it('reports every uploaded byte: the base alone, and with its 3 heads', () => {
    expect(weights.medusa).toHaveLength(3);
    expect(checkModelFits(gpu, config, weights).bytes).toBe(base);
    expect(checkModelFits(gpu, config, weights, { withMedusa: true }).bytes).toBe(withHeads);
  });

  it('refuses, before allocating anything, a model whose heads pass the budget, naming the total and the budget', async () => {
    const budget = Math.floor((base + withHeads) / 2);
    expect(checkModelFits(gpu, config, weights, { maxWeightBytes: budget }).bytes).toBe(base);
    const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
    await expect(GpuModel.create(gpu, config, weights, () => { throw new Error('attention made'); }, { maxWeightBytes: budget, withMedusa: true })).rejects.toThrow(
      `the model's weights need ${kib(withHeads)} in all (${kib(withHeads - base)} of them its 3 Medusa heads), over the ${kib(budget)} given for mock adapter`,
    );
  });

  it('refuses heads whose stacked row passes one buffer\'s limit, up front', () => {
    const limit = config.hiddenSize * 4 - 4; // one row of any [·, hidden] weight is hidden·4 bytes
    expect(() => checkModelFits(gpu, config, { ...weights, embedTokens: { shape: [1, 1], data: new Float64Array(1) }, lmHead: { shape: [1, 1], data: new Float64Array(1) }, layers: [] }, { withMedusa: true, maxWeightBuffer: limit })).toThrow(
      /medusa\.\*\.proj\.weight \(stacked\)/,
    );
  });
});
