// The self-distillation data of train-medusa --distill (src/model/train/distill.ts) without a model: prompts drawn
// from the training tokens, continuations cut after EOS, windows that never straddle two sequences (checked window
// by window against the sequences themselves), the saved file read back, and a damaged or mismatched file refused.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { sampleBatch, stepBatches, validationBatches } from '../src/model/train/data.ts';
import { checkDistill, distill, distillRecord, DISTILL_FILE, layOut, readDistill, writeDistill } from '../src/model/train/distill.ts';

const root = mkdtempSync(join(tmpdir(), 'linattn-distill-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** Where `window` occurs in `seq`, or -1. */
function indexOf(seq: Uint32Array, window: Uint32Array): number {
  outer: for (let i = 0; i + window.length <= seq.length; i++) {
    for (let k = 0; k < window.length; k++) if (seq[i + k] !== window[k]) continue outer;
    return i;
  }
  return -1;
}

describe('distilled sequences', () => {
  const train = Uint32Array.from({ length: 500 }, (_, i) => (i * 7) % 50);
  const val = Uint32Array.from({ length: 40 }, (_, i) => 50 + (i % 13));
  // A stand-in for greedy decoding: the continuation counts up from the prompt's last token; a prompt ending in 3 is
  // answered with EOS (99) after two tokens.
  const calls: number[][][] = [];
  const fake = async (prompts: readonly (readonly number[])[], length: number) => {
    calls.push(prompts.map((p) => [...p]));
    return prompts.map((p) => Array.from({ length }, (_, k) => (p.at(-1) === 3 && k === 2 ? 99 : 100 + ((p.at(-1)! + k) % 20))));
  };

  it('are prompts of the training tokens and, a tenth as many, of the held-out ones (BOS in front), and their continuations, cut after an EOS; batched', async () => {
    const s = { tokens: 70, prompt: 6, length: 10 };
    const d = await distill(train, val, s, 5, { bos: 98, eos: 99 }, fake, 3);
    expect([d.train.length, d.val.length]).toEqual([7, 1]);
    expect(calls.map((c) => c.length)).toEqual([3, 3, 2]);
    for (const [i, q] of [...d.train, ...d.val].entries()) {
      const prompt = q.subarray(0, 6);
      expect(calls.flat()[i]).toEqual([98, ...prompt]);
      expect(indexOf(i < 7 ? train : val, prompt), `prompt ${i} is a window of the ${i < 7 ? 'training' : 'held-out'} tokens`).toBeGreaterThanOrEqual(0);
      const cont = [...q.subarray(6)];
      if (prompt[5] === 3) expect(cont).toEqual([100 + 3, 100 + 4, 99]);
      else expect(cont).toEqual(Array.from({ length: 10 }, (_, k) => 100 + ((prompt[5] + k) % 20)));
    }
    // The same seed draws the same prompts; another draws others.
    expect(await distill(train, val, s, 5, { bos: 98, eos: 99 }, fake, 4)).toEqual(d);
    expect(await distill(train, val, s, 6, { bos: 98, eos: 99 }, fake, 4)).not.toEqual(d);
    await expect(distill(train, val.subarray(0, 5), s, 5, {}, fake, 4)).rejects.toThrow(/--distill-prompt 6: the held-out text has only 5 tokens/);
  });

  it('lay out end to end with every window inside one sequence, and sampleBatch draws only those', () => {
    const seqs = [Uint32Array.of(1, 2, 3, 4, 5, 6), Uint32Array.of(7, 8), Uint32Array.of(9, 10, 11, 12, 13)];
    const { tokens, starts } = layOut(seqs, 3);
    expect([...tokens]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    // Windows of 4 tokens: 3 in the first sequence, none in the second, 2 in the third.
    expect([...starts]).toEqual([0, 1, 2, 8, 9]);
    const batch = sampleBatch(tokens, 64, 3, 11, starts);
    for (let s = 0; s < 64; s++) {
      const window = Uint32Array.of(...Array.from(batch.inputs).slice(3 * s, 3 * s + 3), batch.targets[3 * s + 2]);
      expect(seqs.some((q) => indexOf(q, window) >= 0), `window ${[...window]} lies in one sequence`).toBe(true);
    }
    // A training step's micro-batches (train-loop.ts draws them so) keep to the split's starts too.
    for (const micro of stepBatches({ train: tokens, val: tokens, trainStarts: starts }, 16, 3, 2, 0, 7)) {
      for (let s = 0; s < 16; s++) {
        const window = Uint32Array.of(...Array.from(micro.inputs).slice(3 * s, 3 * s + 3), micro.targets[3 * s + 2]);
        expect(seqs.some((q) => indexOf(q, window) >= 0), `step window ${[...window]} lies in one sequence`).toBe(true);
      }
    }
    // Evaluation reads consecutive windows within each sequence: stride 3 leaves one window in each long sequence.
    const ev = layOut(seqs, 3, 3);
    expect([...ev.starts]).toEqual([0, 8]);
    const [batch2] = validationBatches({ train: tokens, val: ev.tokens, valStarts: ev.starts }, 4, 3);
    expect([...Array.from(batch2.inputs), ...Array.from(batch2.targets)]).toEqual([1, 2, 3, 9, 10, 11, 2, 3, 4, 10, 11, 12]);
    expect(() => layOut([Uint32Array.of(1, 2)], 3)).toThrow(/no sequence holds a window of 4 tokens/);
    expect(() => sampleBatch(tokens, 1, 3, 0, Uint32Array.of(10))).toThrow(/runs past the 13 tokens/);
  });

  it('are saved and read back; a damaged file or one of another run is refused, naming the file', () => {
    const d = { train: [Uint32Array.of(1, 2, 3), Uint32Array.of(4, 5)], val: [Uint32Array.of(6, 7)] };
    const s = { tokens: 4, prompt: 1, length: 2 };
    const record = distillRecord(s, d);
    expect(record).toMatchObject({ sequences: 2, valSequences: 1, total: 5 });
    writeDistill(root, s, d);
    expect(readDistill(root, record)).toEqual(d);
    const path = join(root, DISTILL_FILE);
    const json = JSON.parse(readFileSync(path, 'utf8')) as { sequences: number[][]; val: number[][] };
    json.val[0][0] = 8;
    writeFileSync(path, JSON.stringify(json));
    expect(() => readDistill(root, record)).toThrow(new RegExp(`${DISTILL_FILE}: 2 \\+ 1 sequences, hash \\w+; trainer_state.json records 2 \\+ 1, hash ${record.hash}`));
    json.sequences[1] = [-1];
    writeFileSync(path, JSON.stringify(json));
    expect(() => readDistill(root, record)).toThrow(/sequence 1 is not a list of token ids/);
    rmSync(path);
    expect(() => readDistill(root, record)).toThrow(/distill.json: missing/);
  });

  it('settings that hold no window name the flags', () => {
    expect(() => checkDistill({ tokens: 100, prompt: 8, length: 8 }, 20)).toThrow(/--distill-prompt 8 \+ --distill-length 8 tokens hold no training window: a window is --block \+ heads \+ 1 = 21 tokens/);
    expect(() => checkDistill({ tokens: 0, prompt: 8, length: 8 }, 4)).toThrow(/--distill takes a positive number of tokens, got 0/);
    expect(() => checkDistill({ tokens: 10, prompt: 8, length: 8 }, 4)).not.toThrow();
  });
});
