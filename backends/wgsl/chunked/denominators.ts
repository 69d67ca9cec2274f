// Phase 3 of a chunk: the row denominators of the normalised groups, once per row rather than per column —
//   den_g[il] = Σ_tiles denp_g[il, ·]   (the row sums of A_g plus φ·(decay ⊙ z), left by the score phase)
// — in P parts a row (tiles.ts denParts): P invocations add NTJ / P partial sums each and leave the part in place of
// the first one they read (no other invocation reads their range); the output phase adds the P parts. (The fold of
// the chunk into z rides in the state update, state.ts foldTiled.)
import type { Block } from '../wgsl-block.ts';
import type { ChunkKernel } from './declarations.ts';
import { denParts } from './tiles.ts';

export function emitDenominators(K: ChunkKernel, body: Block): void {
  const { a } = K;
  const groups = a.denGroups.filter((g) => K.arrays.denp.has(g));
  if (!groups.length || a.segmented === 'state') return;
  const NTJ = a.tile.NTJ;
  const P = denParts(a.C, NTJ, a.WG);
  const per = NTJ / P;
  body.strided('x', `${a.C * P}u`, (r, x) => {
    const il = P > 1 ? r.let('il', `${x} / ${P}u`) : x;
    const u0 = P > 1 ? r.let('u0', `(${x} % ${P}u) * ${per}u`) : '0u';
    for (const g of groups) {
      const denp = K.arrays.denp.get(g)!.name;
      const den = r.var(`den${g}`, '0.0');
      r.for('u', u0, (u) => `${u} < ${P > 1 ? `${u0} + ${per}u` : `${NTJ}u`}`, (l, u) => l.line(`${den} = ${den} + ${denp}[${il} * ${NTJ}u + ${u}];`));
      r.line(`${denp}[${il} * ${NTJ}u + ${u0}] = ${den};`);
    }
  });
  body.line('workgroupBarrier();');
}

/** Row `row`'s denominator of group g (a WGSL f32 expression): the sum of its P parts, 0 for a group without scores. */
export function rowDenominator(K: ChunkKernel, g: number, row: string): string {
  const denp = K.arrays.denp.get(g);
  if (!denp) return '0.0';
  const NTJ = K.a.tile.NTJ;
  const P = denParts(K.a.C, NTJ, K.a.WG);
  const parts = [...Array(P).keys()].map((p) => `${denp.name}[(${row}) * ${NTJ}u + ${(p * NTJ) / P}u]`);
  return P === 1 ? parts[0] : `(${parts.join(' + ')})`;
}
