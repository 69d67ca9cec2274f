// The demo's part 5 (src/cli/demo-speculative.ts) on this adapter: the shipped Medusa heads of
// examples/models/tiny-kjv-medusa and the adaptive draft each give exactly plain greedy decoding's text, and the heads
// are trained: their chained tree takes well over one token a verification step (random heads are accepted ~never).
import { describe, expect, it } from 'vitest';
import { speculativePart } from '../src/cli/demo-speculative.ts';
import { gpu } from './helpers/gpu.ts';

describe('npm run demo, part 5: speculative decoding with the shipped heads', () => {
  it('equals plain greedy decoding for both drafts, the trained heads at more than 2 tokens a step', async () => {
    const lines: string[] = [];
    let err = '';
    const ok = await speculativePart({ stdout: () => {}, stderr: (s) => void (err += s) }, (s = '') => void lines.push(s), (await gpu()).isSoftware);
    const text = lines.join('\n');
    expect(ok, `${text}\n${err}`).toBe(true);
    expect(text.match(/output identical to plain decoding/g)?.length, text).toBe(2);
    const heads = /trained Medusa heads.*:\n\s+160 tokens in (\d+) verification steps \(([\d.]+) tokens a step\)/.exec(text);
    expect(heads, text).not.toBeNull();
    expect(Number(heads![2]), text).toBeGreaterThan(2);
  });
});
