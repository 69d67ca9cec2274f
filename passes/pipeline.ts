// The pass pipeline, in order. Each pass is a pure Program → Program function with its own test;
// `--print-after=NAME` prints the IR after the named pass.
import { verify } from '../src/ir/verify.ts';
import type { Program } from '../src/ir/types.ts';
import { separability } from './separability.ts';
import { simplify } from './simplify.ts';

export interface Pass {
  readonly name: string;
  readonly run: (p: Program) => Program;
}

export const PASSES: readonly Pass[] = [
  { name: 'simplify', run: simplify },
  { name: 'separability', run: separability },
  { name: 'simplify-after-separability', run: simplify },
];

export function runPasses(p: Program, onPass?: (name: string, p: Program) => void): Program {
  let cur = p;
  for (const pass of PASSES) {
    cur = pass.run(cur);
    verify(cur);
    onPass?.(pass.name, cur);
  }
  return cur;
}
