// Several chunk kernels in one launch: each *section* is a chunk kernel spec of its own (its terms, value,
// state and outputs), and one workgroup walks the chunks once, running every section's phases 1–5 on each chunk
// in turn. The gradient program's stages that run in the same time direction over the same padded length and
// read nothing another of them writes are such sections (reverse-time dv and dψ, say, as fla's backward computes
// dk and dv in one kernel).
//
// The sections share the grid — one workgroup per (batch b, head slice s, column tile) — so they must agree on
// the chunk, the threads and the head axes; the grid has as many column tiles as the section that needs most,
// and a section with fewer simply has no columns in the others (its staged values are zero there, its stores
// are skipped). What a section keeps across chunks (S, z, an open group) is its own; what it stages per chunk
// (φ, ψ, values, score matrices) shares workgroup memory with the other sections', since a barrier ends each
// section's turn: the kernel needs Σ kept + max staged, not Σ of both. Segmented (ChunkSchedule.segment), every
// section walks only its segment's chunks, starting from (or, for the state launch, writing) its own segment
// states; grad/segmented-terms.ts puts the launches together.
import type { ChunkKernelSpec } from './analysis.ts';
import { analyseChunk } from './analysis.ts';
import { declareArrays, declareBindings, type ArrayAllocator, type ChunkKernel } from './declarations.ts';
import { emitSegmentState } from './export.ts';
import { segmentCount } from './segments.ts';
import { emitStateStart } from './state.ts';
import { emitChunkPhases, header } from '../chunked.ts';
import { KernelBuilder } from '../kernel-builder.ts';
import type { Kernel } from '../plan.ts';

export interface Section {
  readonly spec: ChunkKernelSpec;
  /** This section adds into a buffer an earlier section of the same kernel wrote this chunk: wait for its stores. */
  readonly afterStores?: boolean;
}

/** One kernel running every section's chunk phases in turn. */
export function chunkSectionsKernel(sections: readonly Section[], label: string): Kernel {
  // A section's phases run without the outputs beside the fold (chunked/teams.ts): its turn holds no registers across chunks.
  const as = sections.map((s) => analyseChunk({ ...s.spec, overlap: false }));
  const a0 = as[0];
  for (const a of as) {
    if (a.C !== a0.C || a.WG !== a0.WG) throw new Error(`${label}: sections must share the chunk and threads (${a.p.name}: ${a.C}/${a.WG}, ${a0.p.name}: ${a0.C}/${a0.WG})`);
    if (a.L.head.join() !== a0.L.head.join() || a.NS !== a0.NS) throw new Error(`${label}: sections must share the head axes ([${a.L.head}] vs [${a0.L.head}])`);
    if (a.state) throw new Error(`${label}: a sectioned kernel exports no state`);
    if (a.segmented !== a0.segmented || a.segment !== a0.segment) throw new Error(`${label}: sections run segmented alike or not at all`);
    if ((a.spec.schedule.span ?? 1) > 1) throw new Error(`${label}: sectioned kernels run one segment a workgroup (no spans)`);
  }
  const RT = Math.max(...as.map((a) => a.RT));
  const kb = new KernelBuilder(a0.WG, ['wid', 'lid']);
  const Ks = as.map((a, g): Omit<ChunkKernel, 'head'> => ({ a, arrays: declareArrays(a, kb, sectionArrays(kb, g)), io: declareBindings(a, kb), kb }));
  const main = kb.body;
  main.define('s', `wid.x / ${RT}u`);
  main.define('tile', `wid.x % ${RT}u`);
  if (a0.segmented) main.define('sg', 'wid.y', 'segment');
  main.define('b', a0.segmented ? 'wid.z' : 'wid.y');
  const head = main.split(a0.L.head, a0.sizes, 's', 'hx');
  const full: ChunkKernel[] = Ks.map((K) => ({ ...K, head }));
  if (a0.segmented) main.define('nseg', segmentCount(a0.C, a0.segment));
  for (const K of full) emitStateStart(K, main);
  main.define('nchunks', `(dims.t + ${a0.C - 1}u) / ${a0.C}u`);
  const G = a0.segment;
  const [first, end] = a0.segmented ? [`sg * ${G}u`, `min(nchunks, (sg + 1u) * ${G}u)`] : ['0u', 'nchunks'];
  main.for('c', first, (c) => `${c} < ${end}`, (chunk) => {
    chunk.define('c0', `c * ${a0.C}u`);
    chunk.define('n', `min(${a0.C}u, dims.t - c0)`);
    full.forEach((K, g) =>
      chunk.block('', (sec) => {
        sec.comment(`section ${g}: ${K.a.spec.label}`);
        if (sections[g].afterStores) sec.line('storageBarrier();');
        emitChunkPhases(K, sec);
      }),
    );
  }, { fixed: true });
  for (const K of full) emitSegmentState(K, main);
  return kb.build({
    label,
    comment: [`${sections.length} chunk sections in one kernel (${label})`, ...as.flatMap((a, g) => header(a).map((l) => `section ${g}: ${l}`))],
    ...(a0.segmented
      ? { workgroups: (b: number, t: number) => [a0.NS * RT, Math.ceil(Math.ceil(t / a0.C) / G), b] as [number, number, number] }
      : { workgroups: (b: number) => [a0.NS * RT, b, 1] as [number, number, number], launch: { kind: 'fixed', x: a0.NS * RT, perBatchY: true } as const }),
  });
}

/** Section g's arrays: its state its own, its per-chunk arrays in slots every section shares. */
function sectionArrays(kb: KernelBuilder, g: number): ArrayAllocator {
  let k = 0;
  return {
    keep: (stem, length, note, type) => kb.workgroup(stem, length, note, type),
    chunk: (stem, length, note, type) => {
      // the shared slots are f32: a section's spec leaves vec4 staging off
      if (type && type !== 'f32') throw new Error(`internal: section ${g}: ${stem} asks for ${type} scratch`);
      return kb.sharedWorkgroup(`chunk${k++}`, 'scratch', length, `section ${g}: ${stem}${note ? ` (${note})` : ''}`);
    },
  };
}

/** Workgroup memory (f32s) of the sections as one kernel: what the scheduler keeps under the adapter's limit. */
export function sectionsFloats(sections: readonly Section[]): number {
  const kb = new KernelBuilder(64, []);
  sections.forEach((s, g) => declareArrays(analyseChunk({ ...s.spec, overlap: false }), kb, sectionArrays(kb, g)));
  return kb.workgroupFloats();
}
