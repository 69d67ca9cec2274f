// The variant files under examples/, for tests that sweep every variant.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

export const VARIANT_FILES: readonly string[] = ['examples/paper', 'examples/variants'].flatMap((dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.la'))
    .sort()
    .map((f) => join(dir, f)),
);

export const LEAKY = 'examples/paper/leaky_dwconv.la';
export const DECODABLE = VARIANT_FILES.filter((f) => f !== LEAKY);

/** Two prefix terms, neither decayed: one fused kernel (a segmented plan's condition), or two kernels of the unfused plan. */
export const TWO_PREFIX = `variant two_prefix
input q[h, d], k[h, d], v[h, e]
let fq = elu(q) + 1
let fk = elu(k) + 1
term lin : causal score dot(fq[i], fk[j], d) value v
term raw : causal score dot(q[i], k[j], d) value v
output normalize(lin, 1e-6) + raw
`;
