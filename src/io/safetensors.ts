// Reading and writing safetensors, the checkpoint format of Hugging Face models: an 8-byte
// little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__},
// then the raw tensor bytes. Checkpoints come from elsewhere and are large, so every inconsistency
// is reported with the file and tensor it concerns before any number is used, and writing goes
// through a temporary file so a crash never leaves a half-written checkpoint under the real name.
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, basename, join } from 'node:path';

export interface SafetensorsEntry {
  /** dtype as stored in the file; `data` is always float32. */
  readonly dtype: string;
  readonly shape: number[];
  readonly data: Float32Array;
}

export class SafetensorsError extends Error {
  constructor(
    readonly file: string,
    readonly tensor: string | undefined,
    detail: string,
  ) {
    super(`${file}: ${tensor === undefined ? '' : `tensor '${tensor}': `}${detail}`);
    this.name = 'SafetensorsError';
  }
}

export const BYTES_PER_ELEMENT: Readonly<Record<string, number>> = { F32: 4, F16: 2, BF16: 2, F64: 8 };
/** A header larger than this is not a safetensors file (the reference implementation caps at 100 MB). */
const MAX_HEADER_BYTES = 100_000_000;

// The format is little-endian; typed-array views below read it natively.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
  throw new Error('safetensors.ts assumes a little-endian host');
}

export interface ParsedHeader {
  readonly metadata: Record<string, string>;
  readonly tensors: readonly { name: string; dtype: string; shape: number[]; begin: number; end: number }[];
  readonly dataStart: number;
}

/** Every tensor of a safetensors file, converted to float32 (F32, F16, BF16 and F64 accepted). */
export function readSafetensors(path: string): Map<string, SafetensorsEntry> {
  const file = readFileSync(path);
  const { tensors, dataStart } = parseHeader(path, file, file.length);
  const out = new Map<string, SafetensorsEntry>();
  for (const t of tensors) {
    const bytes = file.subarray(dataStart + t.begin, dataStart + t.end);
    out.set(t.name, { dtype: t.dtype, shape: t.shape, data: toFloat32(bytes, t.dtype) });
  }
  return out;
}

/** The `__metadata__` string map of a file (empty when absent), after the same validation. */
export function readSafetensorsMetadata(path: string): Record<string, string> {
  const file = readFileSync(path);
  return parseHeader(path, file, file.length).metadata;
}

/**
 * The header of a safetensors file of `fileLength` bytes, from `prefix`: its first bytes, at least the 8-byte
 * length and the header itself when the file has them (safetensors-file.ts reads only those). Checks every
 * tensor's dtype, shape and data offsets against the file's length.
 */
export function parseHeader(path: string, prefix: Buffer, fileLength: number): ParsedHeader {
  const fail = (tensor: string | undefined, detail: string): never => {
    throw new SafetensorsError(path, tensor, detail);
  };
  if (fileLength < 8) fail(undefined, `truncated: ${fileLength} bytes, too short for the 8-byte header length`);
  const headerLen = prefix.readBigUInt64LE(0);
  if (headerLen > BigInt(fileLength - 8)) {
    fail(undefined, `header length ${headerLen} runs beyond the end of the file (${fileLength} bytes); file truncated or not safetensors`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) fail(undefined, `header length ${headerLen} exceeds ${MAX_HEADER_BYTES} bytes`);
  const dataStart = 8 + Number(headerLen);
  const dataBytes = fileLength - dataStart;

  let header: unknown;
  try {
    header = JSON.parse(prefix.toString('utf8', 8, dataStart));
  } catch (e) {
    fail(undefined, `header is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    fail(undefined, 'header is not a JSON object');
  }

  const parsed: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      const ok =
        typeof raw === 'object' && raw !== null && Object.values(raw).every((v) => typeof v === 'string');
      if (!ok) fail(undefined, '__metadata__ must be an object of strings');
      metadata = raw as Record<string, string>;
      continue;
    }
    if (typeof raw !== 'object' || raw === null) fail(name, 'header entry is not an object');
    const { dtype, shape, data_offsets: offsets } = raw as Record<string, unknown>;
    if (typeof dtype !== 'string') fail(name, 'missing dtype');
    const dt = dtype as string;
    if (!(dt in BYTES_PER_ELEMENT)) {
      fail(name, `dtype ${dt} is not supported (supported: ${Object.keys(BYTES_PER_ELEMENT).join(', ')})`);
    }
    if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      fail(name, `shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const dims = shape as number[];
    if (
      !Array.isArray(offsets) ||
      offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) ||
      offsets[0] > offsets[1]
    ) {
      fail(name, `data_offsets ${JSON.stringify(offsets)} must be [begin, end] with 0 ≤ begin ≤ end`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataBytes) {
      fail(name, `data_offsets [${begin}, ${end}] run past the data section (${dataBytes} bytes); file truncated?`);
    }
    const numel = dims.reduce((a, b) => a * b, 1);
    const expected = numel * BYTES_PER_ELEMENT[dt];
    if (end - begin !== expected) {
      fail(name, `shape [${dims.join(', ')}] of ${dt} needs ${expected} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`);
    }
    parsed.push({ name, dtype: dt, shape: dims, begin, end });
  }
  const spans = [...parsed].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < spans.length; i++) {
    const prev = spans[i - 1];
    const cur = spans[i];
    if (cur.begin < prev.end) {
      fail(cur.name, `data_offsets [${cur.begin}, ${cur.end}] overlap tensor '${prev.name}' [${prev.begin}, ${prev.end}]`);
    }
  }

  return { metadata, tensors: parsed, dataStart };
}

/** Raw little-endian elements of `dtype` as float32, in a fresh array (the bytes need not be aligned). */
export function toFloat32(bytes: Uint8Array, dtype: string): Float32Array {
  // Copy first: the data section need not be aligned for a typed-array view.
  const copy = new Uint8Array(bytes).buffer;
  switch (dtype) {
    case 'F32':
      return new Float32Array(copy);
    case 'F64':
      return Float32Array.from(new Float64Array(copy));
    case 'BF16': {
      const half = new Uint16Array(copy);
      const out = new Float32Array(half.length);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < half.length; i++) bits[i] = half[i] << 16;
      return out;
    }
    case 'F16': {
      const half = new Uint16Array(copy);
      const out = new Float32Array(half.length);
      for (let i = 0; i < half.length; i++) out[i] = halfToFloat(half[i]);
      return out;
    }
    default:
      throw new Error(`unreachable: dtype ${dtype} passed validation`);
  }
}

/** IEEE binary16 → number, subnormals, infinities and NaN included. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 0x1f) return frac === 0 ? sign * Infinity : NaN;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

export interface TensorToWrite {
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array;
}

/** number → IEEE binary16 bits, rounded to nearest even (overflow to ±Infinity, underflow through subnormals to ±0). */
export function floatToHalf(x: number): number {
  const f = new Float32Array([x]);
  const b = new Uint32Array(f.buffer)[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (half + (rest > mid || (rest === mid && (half & 1)) ? 1 : 0));
  }
  const half = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  e = half + (rest > 0x1000 || (rest === 0x1000 && (half & 1)) ? 1 : 0);
  return sign | e;
}

/** How writeSafetensors stores the numbers: float32 (default), or float16 / bfloat16 rounded to nearest even. */
export type WriteDtype = 'F32' | 'F16' | 'BF16';

function encode(data: Float32Array | Float64Array, dtype: WriteDtype): Uint8Array {
  if (dtype === 'F32') {
    const f32 = data instanceof Float32Array ? data : Float32Array.from(data);
    return new Uint8Array(f32.buffer, f32.byteOffset, f32.byteLength);
  }
  const out = new Uint16Array(data.length);
  if (dtype === 'F16') for (let i = 0; i < data.length; i++) out[i] = floatToHalf(data[i]);
  else {
    const bits = new Uint32Array(Float32Array.from(data).buffer);
    for (let i = 0; i < data.length; i++) {
      const b = bits[i];
      out[i] = (b & 0x7f800000) === 0x7f800000 && b & 0x7fffff ? (b >>> 16) | 0x40 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
  }
  return new Uint8Array(out.buffer);
}

/**
 * Writes `tensors` as `dtype` (F32 by default; in the given order), header padded with spaces so the data starts
 * 8-byte aligned. The bytes go to a temporary file beside `path`, fsynced, then renamed over it.
 */
export function writeSafetensors(
  path: string,
  tensors: Record<string, TensorToWrite>,
  metadata?: Record<string, string>,
  dtype: WriteDtype = 'F32',
): void {
  const size = BYTES_PER_ELEMENT[dtype];
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(path, undefined, `metadata '${k}' must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  const names = Object.keys(tensors);
  for (const name of names) {
    if (name === '__metadata__' || name === '') throw new SafetensorsError(path, name, 'reserved or empty tensor name');
    const { shape, data } = tensors[name];
    if (!shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
      throw new SafetensorsError(path, name, `shape [${shape.join(', ')}] is not a list of non-negative integers`);
    }
    const numel = shape.reduce((a, b) => a * b, 1);
    if (numel !== data.length) {
      throw new SafetensorsError(path, name, `shape [${shape.join(', ')}] needs ${numel} elements but data has ${data.length}`);
    }
    header[name] = { dtype, shape: [...shape], data_offsets: [offset, offset + size * numel] };
    offset += size * numel;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const lenBytes = Buffer.alloc(8);
  lenBytes.writeBigUInt64LE(BigInt(headerBytes.length));

  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx');
    writeAll(fd, lenBytes);
    writeAll(fd, headerBytes);
    for (const name of names) writeAll(fd, encode(tensors[name].data, dtype));
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    rmSync(tmp, { force: true });
    if (e instanceof SafetensorsError) throw e;
    throw new SafetensorsError(path, undefined, `write failed: ${(e as Error).message}`);
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** The tensor `name` of a read file, checked to have exactly `shape`. */
export function expectTensor(
  tensors: ReadonlyMap<string, SafetensorsEntry>,
  name: string,
  shape: readonly number[],
  file: string,
): SafetensorsEntry {
  const t = tensors.get(name);
  if (!t) {
    const names = [...tensors.keys()];
    const near = names.filter((n) => n.endsWith(name.split('.').pop() ?? name)).slice(0, 5);
    const hint = near.length > 0 ? `; similar names: ${near.join(', ')}` : names.length === 0 ? '; the file has no tensors' : '';
    throw new SafetensorsError(file, name, `missing (expected shape [${shape.join(', ')}])${hint}`);
  }
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw new SafetensorsError(file, name, `has shape [${t.shape.join(', ')}] but [${shape.join(', ')}] was expected`);
  }
  return t;
}
