// After the last chunk: a segment-state launch writes each segment's own S_k, z_k for the scan over segments;
// a state export writes S_k, z_k (and an open group's So_k, zo_k) as the decoding state: S, So and z [b, NS, F, NR]
// (z copied into each column, every tile writing its own columns: layout.ts), zo [b, NS, F].
import type { Block } from '../wgsl-block.ts';
import type { WorkgroupArray } from '../kernel-builder.ts';
import { exportResident, storeResidentSegment } from './resident.ts';
import { elem, segBase, stateArrays, stateBuffer, stateRef, type ChunkKernel } from './declarations.ts';
import { eachOpen, gateTrips } from './state.ts';

export function emitSegmentState(K: ChunkKernel, body: Block): void {
  const { a } = K;
  if (a.segmented !== 'state') return;
  emitSegmentDecays(K, body);
  if (a.resident) return storeResidentSegment(K, body);
  for (const q of a.prefix) {
    const { S, z, So, zo } = stateArrays(K, q);
    // a past_groups term's segment ends at a group's end (segments.ts): the group still open is the segment's last, its own too
    const openZ = (f: string) => (zo ? ` + ${elem(zo, f)}` : '');
    const store = (b: Block, x: string, value: string) => {
      const col = b.let('col', `tile * ${a.R}u + ${x} % ${a.R}u`);
      b.block(`if (${col} < ${a.NR}u)`, (l) => l.line(`${K.kb.use(K.io.segS[q.k])}[${segBase(K, q, 'S')} + (${x} / ${a.R}u) * ${a.NR}u + ${col}] = ${value};`));
    };
    body.comment(`this segment's own ${S.name}, for the scan`);
    if (So) eachOpen(K, q, body, (b, x, reg) => store(b, x, `${S.name}[${x}] + ${reg}`));
    else body.strided('x', `${q.F * a.R}u`, (b, x) => store(b, x, `${S.name}[${x}]`));
    body.strided('f', `${q.F}u`, (b, f) => b.block('if (tile == 0u)', (l) => l.line(`${K.kb.use(K.io.segZ[q.k])}[${segBase(K, q, 'z')} + ${f}] = ${elem(z, f)}${openZ(f)};`)));
  }
}

/** Each decayed term's Σ log decay over the segment (state.ts emitSegmentDecay), for the scan: the first tile writes it. */
function emitSegmentDecays(K: ChunkKernel, body: Block): void {
  for (const q of K.a.prefix) {
    const segG = K.io.segG[q.k];
    if (!segG) continue;
    for (const { x, guard, reg } of gateTrips(K, q)) {
      body.line(`if (tile == 0u${guard ? ` && ${guard}` : ''}) { ${K.kb.use(segG)}[${segBase(K, q, 'g')} + ${x}] = ${reg}; }`);
    }
  }
}

export function emitStateExport(K: ChunkKernel, into: Block): void {
  const { a } = K;
  if (!a.state) return;
  // A segmented plan's output launch: only the last segment's workgroups end on the whole sequence's S, z (the
  // scan's incoming state plus their own chunks); the rings are written while staging, by whichever segment
  // stages the last rows.
  if (a.segmented === 'output') into.block(`if (sg + 1u == ${(a.spec.schedule.span ?? 1) > 1 ? 'nspan' : 'nseg'})`, (last) => exportPrefixStates(K, last));
  else exportPrefixStates(K, into);
}

function exportPrefixStates(K: ChunkKernel, body: Block): void {
  const { a } = K;
  if (a.resident) return exportResident(K, body);
  for (const q of a.prefix) {
    const { S, z, So, zo } = stateArrays(K, q);
    /** `shared` [F, R] (perColumn) or [F] into every column of the tile. */
    const write = (shared: WorkgroupArray, buffer: string, perColumn: boolean, note?: string) =>
      body.strided('x', `${q.F * a.R}u`, (b, x) => {
        if (note) b.comment(note);
        const f = b.let('f', `${x} / ${a.R}u`);
        const col = b.let('col', `tile * ${a.R}u + ${x} % ${a.R}u`);
        b.block(`if (${col} < ${a.NR}u)`, (l) => l.line(`${stateRef(K, buffer)}[((b * ${a.NS}u + s) * ${q.F}u + ${f}) * ${a.NR}u + ${col}] = ${elem(shared, perColumn ? x : f)};`));
      });
    const writeZ = (shared: WorkgroupArray, buffer: string) =>
      body.strided('f', `${q.F}u`, (b, f) => b.block('if (tile == 0u)', (l) => l.line(`${stateRef(K, buffer)}[(b * ${a.NS}u + s) * ${q.F}u + ${f}] = ${elem(shared, f)};`)));
    write(S, stateBuffer(K, q, 'S'), true, `export ${S.name}`);
    write(z, stateBuffer(K, q, 'z'), false, `export ${z.name}, a copy per column`);
    if (So && zo) {
      eachOpen(K, q, body, (b, x, reg) => {
        const f = b.let('f', `${x} / ${a.R}u`);
        const col = b.let('col', `tile * ${a.R}u + ${x} % ${a.R}u`);
        b.block(`if (${col} < ${a.NR}u)`, (l) => l.line(`${stateRef(K, stateBuffer(K, q, 'So'))}[((b * ${a.NS}u + s) * ${q.F}u + ${f}) * ${a.NR}u + ${col}] = ${reg};`));
      });
      writeZ(zo, stateBuffer(K, q, 'zo'));
    }
  }
}
