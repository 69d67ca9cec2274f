// Phase 3 of a chunk: the row denominators of the normalised groups, once per row rather than per column —
//   den_g[il] = Σ_tiles denp_g[il, ·]   (the row sums of A_g plus φ·(decay ⊙ z), left by the score phase)
// — and, in the same invocations, the fold of the chunk into z (the φ·z above read the previous z).
import type { Block } from '../wgsl-block.ts';
import type { ChunkKernel } from './declarations.ts';
import { emitZUpdate, zJobs } from './state.ts';

export function emitDenominators(K: ChunkKernel, body: Block): void {
  const { a } = K;
  // a resident kernel's outputs sum their rows' denominators themselves (outputs.ts), its z is folded in registers;
  // so do an overlapped kernel's with outputDen, its z folded by the fold team (teams.ts)
  if (!a.denGroups.length || a.segmented === 'state' || a.resident || a.outputDen) return;
  const NTJ = a.tile.NTJ;
  const jobs = a.C + a.zEarly.reduce((n, q) => n + zJobs(q), 0);
  body.strided('x', `${jobs}u`, (b, x) => {
    let from = a.C;
    b.ifChain([
      [`${x} < ${a.C}u`, (r) => {
        const il = r.let('il', x);
        for (const g of a.denGroups) {
          const den = r.var(`den${g}`, '0.0');
          const denp = K.arrays.denp.get(g);
          if (denp) r.for('u', '0u', (u) => `${u} < ${NTJ}u`, (l, u) => l.line(`${den} = ${den} + ${denp.name}[${il} * ${NTJ}u + ${u}];`));
          r.line(`${K.arrays.rowden.get(g)!.name}[${il}] = ${den};`);
        }
      }],
      ...a.zEarly.map((q) => {
        const start = from;
        from += zJobs(q);
        return [`${x} < ${start + zJobs(q)}u`, (z: Block) => emitZUpdate(K, q, z, z.let('f', `${x} - ${start}u`))] as const;
      }),
    ]);
  });
  body.line('workgroupBarrier();');
}
