// The frontend's entry point: source text → verified IR. (Reading a .la file: src/io/variant-file.ts.)
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
