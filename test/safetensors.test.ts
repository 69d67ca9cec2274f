import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  expectTensor,
  halfToFloat,
  readSafetensors,
  readSafetensorsMetadata,
  SafetensorsError,
  writeSafetensors,
} from '../src/io/safetensors.ts';
import { randn } from '../src/tensor.ts';

const dir = mkdtempSync(join(tmpdir(), 'linattn-safetensors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A file with a hand-written header (for corruption cases) and `data` as its data section. */
function rawFile(name: string, header: unknown, data: Uint8Array, headerLenOverride?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLenOverride ?? BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, json, data]));
  return path;
}

function errorOf(f: () => unknown): SafetensorsError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SafetensorsError);
    return e as SafetensorsError;
  }
  throw new Error('expected an error');
}

describe('safetensors round trip', () => {
  it('writes F32 with an 8-byte aligned data section and reads back every tensor, shape and value', () => {
    const path = join(dir, 'model.safetensors');
    const w = randn([3, 5], 1);
    const b = Float32Array.from([1.5, -2, 3.25]);
    const s = Float32Array.from([7]);
    writeSafetensors(path, { 'layers.0.w': w, 'layers.0.b': { shape: [3], data: b }, scalar: { shape: [], data: s } }, {
      format: 'pt',
    });
    const bytes = readFileSync(path);
    expect(Number(bytes.readBigUInt64LE(0)) % 8).toBe(0);
    const read = readSafetensors(path);
    expect([...read.keys()]).toEqual(['layers.0.w', 'layers.0.b', 'scalar']);
    expect(read.get('layers.0.w')).toMatchObject({ dtype: 'F32', shape: [3, 5] });
    expect(Array.from(read.get('layers.0.w')!.data)).toEqual(Array.from(Float32Array.from(w.data)));
    expect(Array.from(read.get('layers.0.b')!.data)).toEqual([1.5, -2, 3.25]);
    expect(read.get('scalar')).toMatchObject({ shape: [], data: Float32Array.from([7]) });
    expect(readSafetensorsMetadata(path)).toEqual({ format: 'pt' });
  });

  it('converts F16, BF16 and F64 to float32', () => {
    const f16 = new Uint16Array([0x3c00, 0xc000, 0x3555, 0x0001]); // 1, -2, ≈1/3, smallest subnormal
    const bf16 = new Uint16Array([0x3f80, 0x4049]); // 1, 3.140625
    const f64 = new Float64Array([Math.PI, -1e-3]);
    const data = Buffer.concat([Buffer.from(f16.buffer), Buffer.from(bf16.buffer), Buffer.from(f64.buffer)]);
    const path = rawFile('mixed.safetensors', {
      h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] },
      bf: { dtype: 'BF16', shape: [2], data_offsets: [8, 12] },
      d: { dtype: 'F64', shape: [2], data_offsets: [12, 28] }, // deliberately unaligned
    }, data);
    const read = readSafetensors(path);
    expect(Array.from(read.get('h')!.data)).toEqual([1, -2, Math.fround(halfToFloat(0x3555)), Math.fround(2 ** -24)]);
    expect(read.get('h')!.dtype).toBe('F16');
    expect(Array.from(read.get('bf')!.data)).toEqual([1, 3.140625]);
    expect(Array.from(read.get('d')!.data)).toEqual([Math.fround(Math.PI), Math.fround(-1e-3)]);
    expect(halfToFloat(0x7c00)).toBe(Infinity);
    expect(halfToFloat(0x7e00)).toBeNaN();
  });

  it('leaves no file and no temporary behind when a write fails', () => {
    const path = join(dir, 'failed.safetensors');
    const before = readdirSync(dir).length;
    const e = errorOf(() =>
      writeSafetensors(path, { ok: { shape: [2], data: new Float32Array(2) }, bad: { shape: [2, 2], data: new Float32Array(3) } }),
    );
    expect(e.message).toBe(`${path}: tensor 'bad': shape [2, 2] needs 4 elements but data has 3`);
    expect(readdirSync(dir).length).toBe(before);
  });

  it('replaces an existing file only once the new one is complete', () => {
    const path = join(dir, 'replace.safetensors');
    writeSafetensors(path, { a: { shape: [1], data: Float32Array.from([1]) } });
    expect(() => writeSafetensors(join(dir, 'no-such-dir', 'x.safetensors'), { a: { shape: [1], data: new Float32Array(1) } })).toThrow(
      /no-such-dir.*write failed/,
    );
    writeSafetensors(path, { a: { shape: [1], data: Float32Array.from([2]) } });
    expect(readSafetensors(path).get('a')!.data[0]).toBe(2);
  });
});

describe('safetensors validation names the file and the tensor', () => {
  const f32 = (n: number) => new Uint8Array(4 * n);

  it('truncated before the header length', () => {
    const path = join(dir, 'tiny.safetensors');
    writeFileSync(path, Buffer.from([1, 2, 3]));
    expect(errorOf(() => readSafetensors(path)).message).toBe(
      `${path}: truncated: 3 bytes, too short for the 8-byte header length`,
    );
  });

  it('header length beyond the file', () => {
    const path = rawFile('long-header.safetensors', {}, f32(0), 1000n);
    expect(errorOf(() => readSafetensors(path)).message).toMatch(
      new RegExp(`^${escape(path)}: header length 1000 runs beyond the end of the file \\(10 bytes\\)`),
    );
  });

  it('invalid JSON', () => {
    const path = rawFile('bad-json.safetensors', '{"a": {"dtype": "F32",', f32(0));
    expect(errorOf(() => readSafetensors(path)).message).toMatch(new RegExp(`^${escape(path)}: header is not valid JSON`));
  });

  it('offsets out of range (a truncated data section)', () => {
    const path = rawFile('short-data.safetensors', { w: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, f32(3));
    const e = errorOf(() => readSafetensors(path));
    expect(e.message).toBe(`${path}: tensor 'w': data_offsets [0, 16] run past the data section (12 bytes); file truncated?`);
    expect(e.tensor).toBe('w');
    expect(e.file).toBe(path);
  });

  it('offsets reversed', () => {
    const path = rawFile('reversed.safetensors', { w: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }, f32(2));
    expect(errorOf(() => readSafetensors(path)).message).toMatch(/tensor 'w': data_offsets \[8,4\] must be \[begin, end\]/);
  });

  it('overlapping tensors', () => {
    const path = rawFile('overlap.safetensors', {
      a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
    }, f32(3));
    expect(errorOf(() => readSafetensors(path)).message).toBe(
      `${path}: tensor 'b': data_offsets [4, 12] overlap tensor 'a' [0, 8]`,
    );
  });

  it('unsupported dtype', () => {
    const path = rawFile('int.safetensors', { ids: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, f32(2));
    expect(errorOf(() => readSafetensors(path)).message).toBe(
      `${path}: tensor 'ids': dtype I64 is not supported (supported: F32, F16, BF16, F64)`,
    );
  });

  it('shape and byte length disagree', () => {
    const path = rawFile('mismatch.safetensors', { w: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 20] } }, f32(5));
    expect(errorOf(() => readSafetensors(path)).message).toBe(
      `${path}: tensor 'w': shape [2, 3] of F32 needs 24 bytes but data_offsets [0, 20] hold 20`,
    );
  });

  it('expectTensor: a missing tensor and a wrong shape', () => {
    const path = join(dir, 'expect.safetensors');
    writeSafetensors(path, { 'model.layers.0.q_proj.weight': { shape: [4, 2], data: new Float32Array(8) } });
    const read = readSafetensors(path);
    expect(expectTensor(read, 'model.layers.0.q_proj.weight', [4, 2], path).shape).toEqual([4, 2]);
    expect(errorOf(() => expectTensor(read, 'model.layers.1.q_proj.weight', [4, 2], path)).message).toBe(
      `${path}: tensor 'model.layers.1.q_proj.weight': missing (expected shape [4, 2]); similar names: model.layers.0.q_proj.weight`,
    );
    expect(errorOf(() => expectTensor(read, 'model.layers.0.q_proj.weight', [2, 4], path)).message).toBe(
      `${path}: tensor 'model.layers.0.q_proj.weight': has shape [4, 2] but [2, 4] was expected`,
    );
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
