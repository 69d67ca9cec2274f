// A variant's .la file → verified IR: the frontend on a file's text, with the file's path in every span.
// Node-only (it reads the file system); a page calls compileSource on its own text.
import { readFileSync } from 'node:fs';
import { compileSource, type CompileOptions } from '../frontend/compile.ts';
import type { Program } from '../ir/types.ts';

/** The text of a .la file; a file that cannot be read is an error naming it. */
export function readVariantFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read variant ${path}: ${(e as Error).message}`);
  }
}

export function loadVariant(path: string, options: CompileOptions = {}): Program {
  return compileSource(readVariantFile(path), path, options);
}
