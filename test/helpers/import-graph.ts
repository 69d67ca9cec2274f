// The project's file-level import graph, read from the source text with TypeScript's parser: every
// `import … from`, `import type`, `export … from`, `import x = require()`, dynamic `import()` and type-level
// `import('…').T`. Relative specifiers are resolved to repository paths; anything else is a package.
// test/layers.test.ts checks the graph against the layers of DEVELOPERS.md.
import { builtinModules } from 'node:module';
import { posix } from 'node:path';
import ts from 'typescript';

export interface ImportEdge {
  /** Repository path of the importing file, e.g. 'src/runtime/executor.ts'. */
  readonly from: string;
  readonly line: number;
  readonly col: number;
  /** The specifier as written. */
  readonly spec: string;
  /** Repository path of a relative import; undefined for a package. */
  readonly to?: string;
  readonly typeOnly: boolean;
}

/** Every import of one file's text, in source order. */
export function importsOf(file: string, text: string): ImportEdge[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const out: ImportEdge[] = [];
  const add = (lit: ts.Expression | undefined, typeOnly: boolean) => {
    if (!lit || !ts.isStringLiteralLike(lit)) return;
    const { line, character } = sf.getLineAndCharacterOfPosition(lit.getStart(sf));
    const spec = lit.text;
    const to = spec.startsWith('.') ? posix.normalize(posix.join(posix.dirname(file), spec)) : undefined;
    out.push({ from: file, line: line + 1, col: character + 1, spec, ...(to !== undefined && { to }), typeOnly });
  };
  const visit = (n: ts.Node) => {
    if (ts.isImportDeclaration(n)) add(n.moduleSpecifier, n.importClause?.isTypeOnly ?? false);
    else if (ts.isExportDeclaration(n)) add(n.moduleSpecifier, n.isTypeOnly);
    else if (ts.isImportEqualsDeclaration(n) && ts.isExternalModuleReference(n.moduleReference)) add(n.moduleReference.expression, n.isTypeOnly);
    else if (ts.isImportTypeNode(n) && ts.isLiteralTypeNode(n.argument)) add(n.argument.literal, true);
    else if (ts.isCallExpression(n) && n.expression.kind === ts.SyntaxKind.ImportKeyword) add(n.arguments[0], false);
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

const NODE_BUILTINS = new Set(builtinModules);

/** A Node built-in module ('node:fs', 'fs', 'fs/promises'). */
export function isNodeBuiltin(spec: string): boolean {
  return spec.startsWith('node:') || NODE_BUILTINS.has(spec) || NODE_BUILTINS.has(spec.split('/')[0]);
}

/**
 * Import cycles, each as the list of edges that close it: within every strongly connected component of more
 * than one file (or a file importing itself), the shortest cycle through each of its files.
 */
export function importCycles(files: readonly string[], edges: readonly ImportEdge[]): ImportEdge[][] {
  const out = new Map<string, ImportEdge[]>();
  for (const f of files) out.set(f, []);
  for (const e of edges) if (e.to !== undefined && out.has(e.to)) out.get(e.from)?.push(e);
  // Tarjan's strongly connected components.
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const strong = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const e of out.get(v)!) {
      const w = e.to!;
      if (!index.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const c: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        c.push(w);
      } while (w !== v);
      components.push(c);
    }
  };
  for (const f of files) if (!index.has(f)) strong(f);
  // For every file of a component, the shortest cycle through it (breadth-first inside the component);
  // the same cycle found from another of its files is kept once.
  const cycles = new Map<string, ImportEdge[]>();
  for (const c of components) {
    const inside = new Set(c);
    if (c.length === 1 && !out.get(c[0])!.some((e) => e.to === c[0])) continue;
    for (const start of c) {
      const via = new Map<string, ImportEdge>();
      const queue = [start];
      let closing: ImportEdge | undefined;
      while (queue.length && !closing) {
        const v = queue.shift()!;
        for (const e of out.get(v)!) {
          if (!inside.has(e.to!)) continue;
          if (e.to === start) {
            closing = e;
            break;
          }
          if (!via.has(e.to!)) {
            via.set(e.to!, e);
            queue.push(e.to!);
          }
        }
      }
      const path = [closing!];
      for (let v = closing!.from; v !== start; v = via.get(v)!.from) path.unshift(via.get(v)!);
      // Rotated to start at its smallest file, so that each cycle has one key.
      const first = path.reduce((m, e, i) => (e.from < path[m].from ? i : m), 0);
      const rotated = [...path.slice(first), ...path.slice(0, first)];
      cycles.set(rotated.map((e) => `${e.from}:${e.line}`).join(' '), rotated);
    }
  }
  return [...cycles.values()];
}

/** 'a.ts:3 → b.ts:7 → a.ts': a cycle with the line of each import. */
export function formatCycle(cycle: readonly ImportEdge[]): string {
  return [...cycle.map((e) => `${e.from}:${e.line}`), cycle[0].from].join(' → ');
}
