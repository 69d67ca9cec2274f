// The code's layers, bottom first, read from the imports themselves (DEVELOPERS.md, "Architecture"):
//
//   ir ← frontend, passes ← backends, io ← runtime ← model ← speculative ← cli
//
// A file may import its own layer and any layer of a lower tier, never one beside or above it; type-only
// imports count (a type pulled from above is a dependency all the same). No file-level import cycles. The
// browser-safe core (ir, frontend, passes, backends and the plan executor with what it imports) uses no Node
// module, no Dawn, and no Node global; test/browser-bundle.test.ts bundles it for a browser.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { formatCycle, importCycles, importsOf, isNodeBuiltin, type ImportEdge } from './helpers/import-graph.ts';

interface Layer {
  readonly name: string;
  /** Imports go from a higher tier to a lower one; layers of one tier do not import each other. */
  readonly tier: number;
  /** Folders (ending in '/') or single files. */
  readonly paths: readonly string[];
}

const LAYERS: readonly Layer[] = [
  // The IR, and plain data over it: tensors and seeded inputs for a program.
  { name: 'ir', tier: 0, paths: ['src/ir/', 'src/tensor.ts', 'src/inputs.ts'] },
  { name: 'frontend', tier: 1, paths: ['src/frontend/'] },
  { name: 'passes', tier: 1, paths: ['passes/'] },
  // Code generation: returns plans and kernel sources as data, never touches a GPU object.
  { name: 'backends', tier: 2, paths: ['backends/'] },
  // Node-only file formats (.la files, safetensors): above the frontend, outside the browser-safe core.
  { name: 'io', tier: 2, paths: ['src/io/'] },
  { name: 'runtime', tier: 3, paths: ['src/runtime/'] },
  { name: 'model', tier: 4, paths: ['src/model/'] },
  { name: 'speculative', tier: 5, paths: ['src/speculative/'] },
  { name: 'cli', tier: 6, paths: ['src/cli/'] },
];

const ROOTS = ['src', 'passes', 'backends'];
const CORE = new Set(['ir', 'frontend', 'passes', 'backends']);
/** The browser-safe part of the runtime: the executor and everything it imports. */
const EXECUTOR = 'src/runtime/executor.ts';
const NODE_GLOBALS = new Set(['process', 'Buffer', 'require', '__dirname', '__filename']);

// No cycle is allowed; the list stays so that a reviewed exception has one place to live.
const ALLOWED_CYCLES: readonly (readonly [string, string])[] = [];

function layerOf(file: string, layers: readonly Layer[] = LAYERS): Layer | undefined {
  return layers.find((l) => l.paths.some((p) => (p.endsWith('/') ? file.startsWith(p) : file === p)));
}

/** 'file:line:col: LAYER imports LAYER (spec) …' for every import that does not go down. */
function layerViolations(edges: readonly ImportEdge[], layers: readonly Layer[] = LAYERS): string[] {
  const out: string[] = [];
  for (const e of edges) {
    if (e.to === undefined) continue;
    const a = layerOf(e.from, layers);
    const b = layerOf(e.to, layers);
    if (!a || !b || a === b || b.tier < a.tier) continue;
    const why = b.tier === a.tier ? 'a layer beside it' : 'a layer above it';
    out.push(`${e.from}:${e.line}:${e.col}: ${a.name} imports ${b.name}${e.typeOnly ? ' (type-only)' : ''} ('${e.spec}'), ${why}`);
  }
  return out;
}

function sourceFiles(): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.ts')) out.push(relative('.', p).split('\\').join('/'));
    }
  };
  for (const r of ROOTS) walk(r);
  return out.sort();
}

const FILES = sourceFiles();
const TEXT = new Map(FILES.map((f) => [f, readFileSync(f, 'utf8')]));
const EDGES = FILES.flatMap((f) => importsOf(f, TEXT.get(f)!));

/** The executor and the project files it reaches. */
function executorClosure(): string[] {
  const seen = new Set([EXECUTOR]);
  const todo = [EXECUTOR];
  while (todo.length) {
    const f = todo.pop()!;
    for (const e of EDGES) if (e.from === f && e.to !== undefined && !seen.has(e.to)) seen.add(e.to), todo.push(e.to);
  }
  return [...seen].sort();
}

/** Uses of Node's globals as values: `process.env`, `Buffer.from`, `require(…)`. */
function nodeGlobals(file: string, text: string): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isIdentifier(n) && NODE_GLOBALS.has(n.text)) {
      const p = n.parent;
      if ((ts.isPropertyAccessExpression(p) && p.expression === n) || (ts.isCallExpression(p) && p.expression === n)) {
        const { line, character } = sf.getLineAndCharacterOfPosition(n.getStart(sf));
        found.push(`${file}:${line + 1}:${character + 1}: uses Node's ${n.text}`);
      }
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return found;
}

describe('layers', () => {
  it('every source file belongs to a layer', () => {
    expect(FILES.filter((f) => !layerOf(f))).toEqual([]);
  });

  it('imports only go down the layers, type-only imports included', () => {
    expect(layerViolations(EDGES)).toEqual([]);
  });

  it('every relative import names an existing file', () => {
    expect(EDGES.filter((e) => e.to !== undefined && !TEXT.has(e.to)).map((e) => `${e.from}:${e.line}: '${e.spec}' is not a source file`)).toEqual([]);
  });

  it('no file-level import cycles, type-only imports included', () => {
    const allowed = (c: readonly ImportEdge[]) =>
      c.length === 2 && ALLOWED_CYCLES.some(([x, y]) => (c[0].from === x && c[1].from === y) || (c[0].from === y && c[1].from === x));
    expect(importCycles(FILES, EDGES).filter((c) => !allowed(c)).map(formatCycle)).toEqual([]);
  });

  it('the browser-safe core (ir, frontend, passes, backends, the plan executor) uses no Node module, no Dawn and no Node global', () => {
    const core = [...new Set([...FILES.filter((f) => CORE.has(layerOf(f)?.name ?? '')), ...executorClosure()])];
    expect(executorClosure().length).toBeGreaterThan(1);
    const bad = EDGES.filter((e) => core.includes(e.from) && (isNodeBuiltin(e.spec) || e.spec === 'webgpu' || (e.to !== undefined && layerOf(e.to)?.name === 'io')));
    expect([
      ...bad.map((e) => `${e.from}:${e.line}:${e.col}: imports '${e.spec}'`),
      ...core.flatMap((f) => nodeGlobals(f, TEXT.get(f)!)),
    ]).toEqual([]);
  });
});

describe('the import checker', () => {
  const layers: Layer[] = [
    { name: 'low', tier: 0, paths: ['low/'] },
    { name: 'left', tier: 1, paths: ['left/'] },
    { name: 'right', tier: 1, paths: ['right/'] },
    { name: 'high', tier: 2, paths: ['high/'] },
  ];
  const files: Record<string, string> = {
    'low/a.ts': "import type { H } from '../high/h.ts';\nexport type A = H;\n",
    'left/l.ts': "export { R } from '../right/r.ts';\nimport { a } from '../low/a.ts';\n",
    'right/r.ts': "export type R = import('../left/l.ts').L;\n",
    'high/h.ts': "import { a } from '../low/a.ts';\nconst m = await import('../left/l.ts');\nimport fs = require('node:fs');\n",
  };
  const edges = Object.entries(files).flatMap(([f, text]) => importsOf(f, text));

  it('sees type-only imports, export-from, import() types, dynamic imports and import-require', () => {
    expect(edges.map((e) => `${e.from}:${e.line} ${e.spec}${e.typeOnly ? ' type' : ''}`)).toEqual([
      'low/a.ts:1 ../high/h.ts type',
      'left/l.ts:1 ../right/r.ts',
      'left/l.ts:2 ../low/a.ts',
      'right/r.ts:1 ../left/l.ts type',
      'high/h.ts:1 ../low/a.ts',
      'high/h.ts:2 ../left/l.ts',
      'high/h.ts:3 node:fs',
    ]);
  });

  it('names the file, line and column and both layers of an import that goes up or sideways', () => {
    expect(layerViolations(edges, layers)).toEqual([
      "low/a.ts:1:24: low imports high (type-only) ('../high/h.ts'), a layer above it",
      "left/l.ts:1:19: left imports right ('../right/r.ts'), a layer beside it",
      "right/r.ts:1:24: right imports left (type-only) ('../left/l.ts'), a layer beside it",
    ]);
  });

  it('finds each cycle with the line of every import in it', () => {
    expect(importCycles(Object.keys(files), edges).map(formatCycle).sort()).toEqual([
      'high/h.ts:1 → low/a.ts:1 → high/h.ts',
      'left/l.ts:1 → right/r.ts:1 → left/l.ts',
    ]);
  });
});
