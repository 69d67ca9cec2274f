// Where `linattn generate --tree auto` keeps its measurements without --auto-state (auto-state-cache.ts): one file per
// model, draft, adapter and set of options, under $LINATTN_CACHE_DIR; a model retrained in place gets a new one.
import { mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { autoStatePath, type AutoStateKey } from '../src/speculative/auto-state-cache.ts';

describe('the cache file of --tree auto\'s measurements', () => {
  const cache = mkdtempSync(join(tmpdir(), 'linattn-auto-cache-'));
  const model = mkdtempSync(join(tmpdir(), 'linattn-auto-model-'));
  const weights = join(model, 'model.safetensors');
  writeFileSync(join(model, 'config.json'), '{}');
  writeFileSync(weights, 'weights');
  const key: AutoStateKey = { files: [join(model, 'config.json'), weights], source: 'medusa', adapter: 'NVIDIA H200', labels: ['plain', 'chain:4×4'] };
  const at = (k: AutoStateKey) => {
    const old = process.env.LINATTN_CACHE_DIR;
    process.env.LINATTN_CACHE_DIR = cache;
    try {
      return autoStatePath(k);
    } finally {
      if (old === undefined) delete process.env.LINATTN_CACHE_DIR;
      else process.env.LINATTN_CACHE_DIR = old;
    }
  };

  it('lives under $LINATTN_CACHE_DIR/speculation and is the same for the same model, draft, adapter and options', () => {
    expect(at(key)).toMatch(new RegExp(`^${cache.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/speculation/[0-9a-f]{20}\\.json$`));
    expect(at(key)).toBe(at({ ...key, files: [...key.files] }));
  });

  it('differs by draft, adapter, options, batch size and the model files (a retrained model starts afresh)', () => {
    const base = at(key);
    expect(at({ ...key, source: 'lookup' })).not.toBe(base);
    expect(at({ ...key, adapter: 'NVIDIA H100' })).not.toBe(base);
    expect(at({ ...key, labels: ['plain', 'chain:3×4'] })).not.toBe(base);
    // A batch's measurements are their own, per batch size; batch 1 keeps the file one sequence always had.
    expect(at({ ...key, batch: 8 })).not.toBe(base);
    expect(at({ ...key, batch: 8 })).not.toBe(at({ ...key, batch: 4 }));
    expect(at({ ...key, batch: 1 })).toBe(base);
    // Continuous batching's rates include its refills: apart from a static batch of the same size.
    expect(at({ ...key, batch: 8, continuous: true })).not.toBe(at({ ...key, batch: 8 }));
    expect(at({ ...key, batch: 8, continuous: false })).toBe(at({ ...key, batch: 8 }));
    utimesSync(weights, new Date(2020, 0, 1), new Date(2020, 0, 1));
    expect(at(key)).not.toBe(base);
  });
});
