// Variant files for benchmarks (every decodable variant under examples/).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

export const DECODABLE_VARIANTS: readonly string[] = ['examples/paper', 'examples/variants']
  .flatMap((dir) => readdirSync(dir).filter((f) => f.endsWith('.la')).sort().map((f) => join(dir, f)))
  .filter((f) => !f.endsWith('leaky_dwconv.la'));
