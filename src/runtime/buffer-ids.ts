// A number per GPU buffer, for the cache keys of bindings made on given buffers: the same buffer always gets the
// same number, and a buffer once garbage-collected takes its entry with it.
const ids = new WeakMap<GPUBuffer, number>();
let nextId = 0;

export function bufferId(b: GPUBuffer): number {
  let id = ids.get(b);
  if (id === undefined) ids.set(b, (id = nextId++));
  return id;
}
