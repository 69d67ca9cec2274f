// The example models training reads: tiny (CI) and nano (6 layers, hidden 384, 6 heads of 64, SwiGLU 1024, byte
// vocabulary), each taking any shipped variant whose inputs are q, k, v through `attention.variant`; nano's flat
// parameter layout keeps every tensor 256-byte aligned.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseConfig, REPO_ROOT } from '../src/model/config.ts';
import { paramLayout } from '../src/model/train/param-layout.ts';
import { loadModelVariant } from '../src/model/variant.ts';

const variants = ['paper', 'variants'].flatMap((dir) => readdirSync(`examples/${dir}`).filter((f) => f.endsWith('.la')).map((f) => `examples/${dir}/${f}`));

describe('example model configs', () => {
  it('nano is the nanoGPT-scale model: 6 layers, hidden 384, 6 heads of 64, SwiGLU 1024, bytes, elu_aug', () => {
    const c = loadConfig('examples/models/nano/config.json');
    expect([c.numLayers, c.hiddenSize, c.numHeads, c.headDim, c.intermediateSize, c.vocabSize]).toEqual([6, 384, 6, 64, 1024, 257]);
    expect(c.tokenizer.kind).toBe('bytes');
    expect(c.attention.variant).toBe(`${REPO_ROOT}examples/paper/elu_aug.la`);
    const v = loadModelVariant(c);
    const layout = paramLayout(c, v.params);
    expect(layout.slots.every((s) => s.offset % 64 === 0)).toBe(true);
    const params = layout.slots.reduce((n, s) => n + s.size, 0);
    expect(params).toBe(2 * 257 * 384 + 384 + 6 * (4 * 384 * 384 + 3 * 384 * 1024 + 2 * 384 + 6 * 4));
  });

  for (const model of ['tiny', 'nano']) {
    it(`${model} takes every shipped variant with inputs q, k, v through attention.variant`, () => {
      const raw = JSON.parse(readFileSync(`examples/models/${model}/config.json`, 'utf8'));
      const fitted: string[] = [];
      for (const file of variants) {
        const c = parseConfig({ ...raw, attention: { variant: `${REPO_ROOT}${file}`, options: {} } }, `${REPO_ROOT}examples/models/${model}/config.json`);
        const v = loadModelVariant.bind(null, c);
        const inputs = readFileSync(file, 'utf8').match(/^input (.*)$/m)![1];
        if (/\b(g|a)\[/.test(inputs)) {
          expect(v, `${file} needs inputs beyond q, k, v`).toThrow(/the model supplies only q, k and v/);
          continue;
        }
        expect(v().program.name).toBeTruthy();
        fitted.push(file);
      }
      expect(fitted.length).toBeGreaterThanOrEqual(15);
    });
  }
});
