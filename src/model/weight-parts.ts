// A weight larger than one buffer binding (a 32000×4096 float32 LM head is 524 MB; an adapter may bind less)
// stored as several buffers of whole rows, in order. A row of W[out, in] is one output column of x·Wᵀ and one
// token's embedding, so each part serves a column range of the LM head's matmul (matmul-fusion.ts's window)
// and the embedding gather reads a row from the one part that holds it. A weight within the limit is one part.
import type { Gpu } from '../runtime/device.ts';
import type { GpuTensor } from '../runtime/gpu-tensor.ts';
import type { Tensor } from '../tensor.ts';
import { createExactTensor } from './exact-tensor.ts';

export interface RowPart {
  /** The weight's first row in this part. */
  readonly first: number;
  readonly rows: number;
  readonly tensor: GpuTensor;
}

export interface RowParts {
  readonly name: string;
  readonly shape: readonly number[];
  readonly bytes: number;
  readonly parts: readonly RowPart[];
}

/**
 * The most bytes one weight buffer may hold: the adapter's binding and buffer limits, or `lower` when smaller
 * (tests split the tiny models' weights with it, which lavapipe's limits never would).
 */
export function weightBufferLimit(gpu: Gpu, lower?: number): number {
  const limit = Math.min(gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  return lower === undefined ? limit : Math.min(limit, lower);
}

/**
 * Row ranges of a float32 [rows, …] weight in buffers of at most `limit` bytes: as few parts as fit, of nearly
 * equal sizes. Throws, naming the tensor, when a single row passes the limit (no split along rows helps).
 */
export function rowRanges(name: string, shape: readonly number[], limit: number): { first: number; rows: number }[] {
  const rows = shape[0];
  const rowBytes = shape.slice(1).reduce((a, b) => a * b, 1) * 4;
  if (rowBytes > limit) {
    throw new Error(
      `tensor '${name}' [${shape.join(', ')}]: one row is ${rowBytes} bytes, over one buffer's limit of ${limit} bytes ` +
        `(maxStorageBufferBindingSize / maxBufferSize); weights are split across buffers by whole rows only`,
    );
  }
  const parts = Math.max(1, Math.ceil((rows * rowBytes) / (Math.floor(limit / rowBytes) * rowBytes)));
  const per = Math.ceil(rows / parts);
  const out: { first: number; rows: number }[] = [];
  for (let first = 0; first < rows; first += per) out.push({ first, rows: Math.min(per, rows - first) });
  return out;
}

/**
 * Uploads `t` as parts of whole rows under `limit` bytes each. `t` may be a list of tensors of one trailing
 * shape, stored as their stack along rows (the Medusa heads' projections): the stack is never made on the host,
 * which for a 7B model's five heads would be a second 2.6 GB. A part that lies in one float32 tensor is written
 * from a view of its array; another is assembled (or converted) into a buffer of at most one part.
 */
export function uploadRowParts(gpu: Gpu, name: string, t: Tensor | readonly Tensor[], limit: number): RowParts {
  const ts: readonly Tensor[] = Array.isArray(t) ? t : [t as Tensor];
  const trailing = ts[0].shape.slice(1);
  const cols = trailing.reduce((a, b) => a * b, 1);
  const starts: number[] = [];
  let total = 0;
  for (const [i, x] of ts.entries()) {
    if (x.shape.slice(1).join() !== trailing.join()) throw new Error(`tensor '${name}': part ${i} has shape [${x.shape.join(', ')}], the first [${ts[0].shape.join(', ')}]`);
    if (x.data.length !== x.shape[0] * cols) throw new Error(`tensor '${name}': ${x.data.length} elements for shape [${x.shape.join(', ')}]`);
    starts.push(total);
    total += x.shape[0];
  }
  const shape = [total, ...trailing];
  const ranges = rowRanges(name, shape, limit);
  // The tensor holding row r of the stack (the last whose first row is ≤ r).
  const holder = (r: number): number => {
    let i = 0;
    while (i + 1 < starts.length && starts[i + 1] <= r) i++;
    return i;
  };
  // Rows [first, first + rows) of the stack, as float32.
  const rowsOf = (first: number, rows: number): Float32Array => {
    const i = holder(first);
    const x = ts[i];
    const at = first - starts[i];
    if (at + rows <= x.shape[0] && x.data instanceof Float32Array) return x.data.subarray(at * cols, (at + rows) * cols);
    const out = new Float32Array(rows * cols);
    for (let r = 0; r < rows; ) {
      const j = holder(first + r);
      const from = first + r - starts[j];
      const n = Math.min(rows - r, ts[j].shape[0] - from);
      out.set(ts[j].data.subarray(from * cols, (from + n) * cols), r * cols);
      r += n;
    }
    return out;
  };
  const parts: RowPart[] = [];
  try {
    for (const { first, rows } of ranges) {
      const partName = ranges.length === 1 ? name : `${name} rows [${first}, ${first + rows})`;
      const tensor = createExactTensor(gpu, partName, [rows, ...trailing]);
      parts.push({ first, rows, tensor });
      const f32 = rowsOf(first, rows);
      gpu.device.queue.writeBuffer(tensor.buffer, 0, f32.buffer, f32.byteOffset, f32.byteLength);
    }
  } catch (e) {
    for (const p of parts) p.tensor.buffer.destroy();
    throw e;
  }
  return { name, shape, bytes: parts.reduce((s, p) => s + p.tensor.bytes, 0), parts };
}
