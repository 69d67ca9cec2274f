// Float64 tensors over named axes and the broadcasting arithmetic the oracle needs. Slow and obvious on purpose.
export interface Named {
  readonly axes: readonly string[];
  readonly data: Float64Array;
}

export type Sizes = Readonly<Record<string, number>>;

function strides(axes: readonly string[], sizes: Sizes): number[] {
  const s = new Array<number>(axes.length);
  let acc = 1;
  for (let k = axes.length - 1; k >= 0; k--) {
    s[k] = acc;
    acc *= sizes[axes[k]];
  }
  return s;
}

export function count(axes: readonly string[], sizes: Sizes): number {
  let n = 1;
  for (const a of axes) n *= sizes[a];
  return n;
}

/**
 * Calls f(outOffset, offsets) for every element of a tensor over `out`, where offsets[k] is the offset
 * into operand k (whose axes are a subset of `out`; missing axes broadcast).
 */
export function forEachBroadcast(out: readonly string[], sizes: Sizes, ins: readonly (readonly string[])[], f: (o: number, offs: number[]) => void): void {
  const dims = out.map((a) => sizes[a]);
  const inStrides = ins.map((axes) => {
    const st = strides(axes, sizes);
    return out.map((a) => {
      const k = axes.indexOf(a);
      return k < 0 ? 0 : st[k];
    });
  });
  const total = count(out, sizes);
  const idx = new Array<number>(out.length).fill(0);
  const offs = new Array<number>(ins.length).fill(0);
  for (let o = 0; o < total; o++) {
    f(o, offs);
    for (let d = out.length - 1; d >= 0; d--) {
      idx[d]++;
      for (let k = 0; k < ins.length; k++) offs[k] += inStrides[k][d];
      if (idx[d] < dims[d]) break;
      for (let k = 0; k < ins.length; k++) offs[k] -= inStrides[k][d] * dims[d];
      idx[d] = 0;
    }
  }
}

export function scalar(x: number): Named {
  return { axes: [], data: Float64Array.of(x) };
}

export function map(x: Named, f: (v: number) => number): Named {
  return { axes: x.axes, data: x.data.map(f) };
}

export function union(a: readonly string[], b: readonly string[]): string[] {
  return [...a, ...b.filter((x) => !a.includes(x))];
}

export function zip(a: Named, b: Named, sizes: Sizes, f: (x: number, y: number) => number): Named {
  const axes = union(a.axes, b.axes);
  const data = new Float64Array(count(axes, sizes));
  forEachBroadcast(axes, sizes, [a.axes, b.axes], (o, [ia, ib]) => {
    data[o] = f(a.data[ia], b.data[ib]);
  });
  return { axes, data };
}

/** Reduces `axis` away: acc starts at init, combine folds each element, finish maps the result. */
export function reduce(x: Named, axis: string, sizes: Sizes, combine: (acc: number, v: number) => number, init = 0, finish = (v: number) => v): Named {
  const axes = x.axes.filter((a) => a !== axis);
  const data = new Float64Array(count(axes, sizes)).fill(init);
  forEachBroadcast(x.axes, sizes, [axes], (o, [r]) => {
    data[r] = combine(data[r], x.data[o]);
  });
  return { axes, data: data.map(finish) };
}

/** Moves the data to a new axis order (same set of axes). */
export function permute(x: Named, axes: readonly string[], sizes: Sizes): Named {
  if (x.axes.join() === axes.join()) return x;
  const data = new Float64Array(x.data.length);
  forEachBroadcast(axes, sizes, [x.axes], (o, [i]) => {
    data[o] = x.data[i];
  });
  return { axes, data };
}

/** x with `axis` fixed at position k (the axis is removed). */
export function slice(x: Named, axis: string, k: number, sizes: Sizes): Named {
  const axes = x.axes.filter((a) => a !== axis);
  const st = strides(x.axes, sizes)[x.axes.indexOf(axis)];
  const data = new Float64Array(count(axes, sizes));
  const rest = axes;
  const restStrides = strides(x.axes, sizes).filter((_, d) => x.axes[d] !== axis);
  const dims = rest.map((a) => sizes[a]);
  const idx = new Array<number>(rest.length).fill(0);
  for (let o = 0; o < data.length; o++) {
    let off = k * st;
    for (let d = 0; d < rest.length; d++) off += idx[d] * restStrides[d];
    data[o] = x.data[off];
    for (let d = rest.length - 1; d >= 0; d--) {
      if (++idx[d] < dims[d]) break;
      idx[d] = 0;
    }
  }
  return { axes, data };
}
