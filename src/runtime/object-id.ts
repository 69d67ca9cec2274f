// Small integer ids for GPU objects (buffers, bind groups, pipelines), for keys of caches that must miss when an
// object they were built from is replaced: Dawn's objects carry no id of their own, and a label is not unique.

const ids = new WeakMap<object, number>();
let nextId = 0;

/** The object's id, the same for as long as it lives; −1 for none. */
export function idOf(o: object | undefined): number {
  if (!o) return -1;
  let id = ids.get(o);
  if (id === undefined) ids.set(o, (id = nextId++));
  return id;
}
