// A safetensors file read tensor by tensor: the header once, then each tensor's bytes by a positioned read, converted
// to float32 on the way. A checkpoint shard can be larger than a Node buffer (2 GiB) and a model larger than the
// host wants twice, so nothing reads a whole file: the caller holds one tensor at a time if it wants to
// (src/model/hf-checkpoint.ts uploads and drops them). The header is validated as in safetensors.ts, against the
// file's real length, so a truncated file is reported before any tensor is read.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { BYTES_PER_ELEMENT, parseHeader, SafetensorsError, toFloat32 } from './safetensors.ts';

export interface SafetensorsTensorInfo {
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Bytes in the file. */
  readonly bytes: number;
}

export class SafetensorsFile {
  private fd: number | undefined;
  private constructor(
    readonly path: string,
    fd: number,
    private readonly dataStart: number,
    private readonly entries: ReadonlyMap<string, { dtype: string; shape: number[]; begin: number; end: number }>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.fd = fd;
  }

  /** Opens `path` and reads and checks its header. */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(path, undefined, `cannot open: ${(e as Error).message}`);
    }
    try {
      const length = fstatSync(fd).size;
      const lenBytes = Buffer.alloc(8);
      if (length >= 8) readExactly(fd, lenBytes, 0, path);
      const headerLen = length >= 8 ? lenBytes.readBigUInt64LE(0) : 0n;
      const prefixLen = headerLen <= BigInt(length - 8) && headerLen < 100_000_001n ? 8 + Number(headerLen) : 8;
      const prefix = Buffer.alloc(Math.max(8, prefixLen));
      if (length >= 8) readExactly(fd, prefix, 0, path);
      const h = parseHeader(path, prefix, length);
      return new SafetensorsFile(path, fd, h.dataStart, new Map(h.tensors.map((t) => [t.name, t])), h.metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  get names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): SafetensorsTensorInfo | undefined {
    const e = this.entries.get(name);
    return e && { dtype: e.dtype, shape: e.shape, bytes: e.end - e.begin };
  }

  /** Tensor `name` as float32 (F32, F16, BF16 or F64 in the file); after close(), the file is reopened for the read. */
  read(name: string): { shape: number[]; data: Float32Array } {
    const e = this.entries.get(name);
    if (!e) throw new SafetensorsError(this.path, name, 'not in this file');
    if (!(e.dtype in BYTES_PER_ELEMENT)) throw new SafetensorsError(this.path, name, `dtype ${e.dtype} is not supported`);
    const bytes = Buffer.allocUnsafe(e.end - e.begin);
    const fd = this.fd ?? reopen(this.path, name);
    try {
      readExactly(fd, bytes, this.dataStart + e.begin, this.path, name);
    } finally {
      if (fd !== this.fd) closeSync(fd);
    }
    return { shape: [...e.shape], data: toFloat32(bytes, e.dtype) };
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

function reopen(path: string, tensor: string): number {
  try {
    return openSync(path, 'r');
  } catch (e) {
    throw new SafetensorsError(path, tensor, `cannot reopen: ${(e as Error).message}`);
  }
}

/** Fills `into` from byte `at` of the file, in pieces (a single read is capped near 2 GiB). */
function readExactly(fd: number, into: Uint8Array, at: number, path: string, tensor?: string): void {
  const PIECE = 1 << 30;
  let done = 0;
  while (done < into.length) {
    const n = readSync(fd, into, done, Math.min(PIECE, into.length - done), at + done);
    if (n === 0) throw new SafetensorsError(path, tensor, `file ended after ${at + done} bytes, ${into.length - done} bytes short; file truncated?`);
    done += n;
  }
}
