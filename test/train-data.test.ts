// Training data and schedule: text files refused with the reason (missing, empty, binary, not UTF-8), the corpus
// (BOS per file), the held-out tail and its size checks, seeded windows that are slices of the text and can be
// drawn again for any step, evaluation windows, the learning-rate schedule, and the embedding's CSR.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tokenRows } from '../backends/wgsl/train-embedding.ts';
import { ByteTokenizer } from '../src/model/tokenizer.ts';
import { batchSeed, DataFileError, evaluationBatches, invalidUtf8At, loadCorpus, readTextFile, sampleBatch, splitCorpus, unigramEntropy } from '../src/model/train/data.ts';
import { learningRate } from '../src/model/train/lr-schedule.ts';

const dir = mkdtempSync(join(tmpdir(), 'linattn-data-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string | Uint8Array) => {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
};

describe('data files', () => {
  it('refuses a missing, empty, binary or non-UTF-8 file, or a directory, naming the file and the reason', () => {
    const cases: [string, RegExp][] = [
      [join(dir, 'absent.txt'), /absent\.txt: cannot read/],
      [file('empty.txt', ''), /empty\.txt: is empty/],
      [file('binary.bin', new Uint8Array([0x47, 0x49, 0x46, 0x00, 0x01])), /binary\.bin: looks binary \(a NUL byte at offset 3\)/],
      [file('latin1.txt', new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x0a])), /latin1\.txt: is not UTF-8 text \(invalid byte 0xe9 at offset 3\)/],
    ];
    mkdirSync(join(dir, 'sub'));
    cases.push([join(dir, 'sub'), /sub: is a directory/]);
    for (const [path, message] of cases) {
      expect(() => readTextFile(path)).toThrow(DataFileError);
      expect(() => readTextFile(path)).toThrow(message);
    }
    expect(readTextFile(file('ok.txt', 'Grüße, 世界 🙂\n'))).toBe('Grüße, 世界 🙂\n');
  });

  it('finds the first byte that is not UTF-8: truncated, overlong, surrogate, beyond U+10FFFF', () => {
    expect(invalidUtf8At(new TextEncoder().encode('aé世🙂'))).toBe(-1);
    expect(invalidUtf8At(new Uint8Array([0x61, 0xe4, 0xb8]))).toBe(1); // cut three-byte character
    expect(invalidUtf8At(new Uint8Array([0xc0, 0x80]))).toBe(0); // overlong NUL
    expect(invalidUtf8At(new Uint8Array([0x61, 0xed, 0xa0, 0x80]))).toBe(1); // surrogate
    expect(invalidUtf8At(new Uint8Array([0xf4, 0x90, 0x80, 0x80]))).toBe(0); // U+110000
  });

  it('tokenizes each file after BOS and concatenates them; the tail is held out; a block too long for either part is refused', () => {
    const tok = new ByteTokenizer({ bos: 256 });
    const a = file('a.txt', 'abc');
    const b = file('b.txt', 'de');
    const c = loadCorpus([a, b], tok);
    expect(Array.from(c.tokens)).toEqual([256, 97, 98, 99, 256, 100, 101]);
    expect(c.files.map((f) => f.tokens)).toEqual([4, 3]);
    expect(loadCorpus([a, b], tok).hash).toBe(c.hash);
    expect(loadCorpus([b, a], tok).hash).not.toBe(c.hash);
    const long = loadCorpus([file('long.txt', 'x'.repeat(99))], tok);
    const s = splitCorpus(long, 0.1, 8);
    expect([s.train.length, s.val.length]).toEqual([90, 10]);
    expect(() => splitCorpus(long, 0.1, 10)).toThrow(/100 tokens are too few for --block 10: .* \(90 and 10 here\)/);
  });
});

describe('batches', () => {
  const tokens = Uint32Array.from({ length: 500 }, (_, i) => (i * 7919) % 251);

  it('training windows are slices of the text with targets one token ahead, reproducible from (seed, step, micro)', () => {
    const x = sampleBatch(tokens, 4, 16, batchSeed(3, 17, 0));
    for (let s = 0; s < 4; s++) {
      const row = Array.from(x.inputs).slice(s * 16, s * 16 + 16);
      const at = [...Array(tokens.length - 16).keys()].find((p) => row.every((v, i) => tokens[p + i] === v));
      expect(at, `window ${s} is a slice of the text`).toBeDefined();
      expect(Array.from(x.targets).slice(s * 16, s * 16 + 16)).toEqual(Array.from(tokens.subarray(at! + 1, at! + 17)));
    }
    expect(sampleBatch(tokens, 4, 16, batchSeed(3, 17, 0))).toEqual(x);
    const seeds = new Set([batchSeed(3, 17, 0), batchSeed(3, 17, 1), batchSeed(3, 18, 0), batchSeed(4, 17, 0)]);
    expect(seeds.size).toBe(4);
  });

  it('evaluation reads consecutive windows, b to a batch, the last batch smaller and a short tail left out', () => {
    const bs = evaluationBatches(tokens, 3, 40); // ⌊499 / 40⌋ = 12 windows → 3 + 3 + 3 + 3
    expect(bs.map((b) => b.b)).toEqual([3, 3, 3, 3]);
    const b7 = evaluationBatches(tokens, 5, 40);
    expect(b7.map((b) => b.b)).toEqual([5, 5, 2]);
    const all = b7.flatMap((b) => Array.from(b.targets));
    expect(all).toEqual(Array.from(tokens.subarray(1, 481)));
  });

  it('unigram entropy of the tokens, in nats', () => {
    expect(unigramEntropy([1, 1, 2, 2])).toBeCloseTo(Math.log(2), 12);
    expect(unigramEntropy([5, 5, 5])).toBe(0);
  });

  it('the embedding CSR lists each id\'s rows in ascending order', () => {
    const { starts, rows } = tokenRows([2, 0, 2, 3, 0, 2], 5);
    expect(Array.from(starts)).toEqual([0, 2, 2, 5, 6, 6]);
    expect(Array.from(rows)).toEqual([1, 4, 0, 2, 5, 3]);
  });
});

describe('learning-rate schedule', () => {
  it('warms up linearly, then follows a cosine from lr to minLr at the last step', () => {
    const s = { lr: 1e-3, minLr: 1e-4, warmup: 10, steps: 110 };
    expect(learningRate(1, s)).toBeCloseTo(1e-4, 15);
    expect(learningRate(10, s)).toBeCloseTo(1e-3, 15);
    expect(learningRate(60, s)).toBeCloseTo(5.5e-4, 15);
    expect(learningRate(110, s)).toBeCloseTo(1e-4, 15);
    expect(learningRate(5, { ...s, warmup: 0 })).toBeLessThan(1e-3);
  });
});
