// The frontend's entry points: source text (or a .la file) → verified IR.
import { readFileSync } from 'node:fs';
import { verify } from '../ir/verify.ts';
import type { Program } from '../ir/types.ts';
import { parseVariant } from './parse.ts';
import { toIr, type CompileOptions } from './to-ir.ts';

export type { CompileOptions };

export function compileSource(source: string, file = '<input>', options: CompileOptions = {}): Program {
  const program = toIr(parseVariant(source, file), options);
  verify(program);
  return program;
}

export function loadVariant(path: string, options: CompileOptions = {}): Program {
  let source: string;
  try {
    source = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read variant ${path}: ${(e as Error).message}`);
  }
  return compileSource(source, path, options);
}
