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
