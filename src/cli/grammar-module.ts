// grammar/linattn.ohm is the language's single source; the frontend parses with a copy of its text held in a
// generated module (src/frontend/grammar-text.ts), so that parsing needs no file system (a page has none).
// `npm run grammar` rewrites that module after the grammar changes; test/grammar-module.test.ts fails while
// the two differ.
import { readFileSync, writeFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const GRAMMAR_FILE = fileURLToPath(new URL('../../grammar/linattn.ohm', import.meta.url));
export const GRAMMAR_MODULE = fileURLToPath(new URL('../frontend/grammar-text.ts', import.meta.url));

/** The module's text for a grammar: its source, verbatim inside a template literal. */
export function grammarModule(grammar: string): string {
  const literal = grammar.replace(/\\/g, '\\\\').replace(/`/g, '\\`').replace(/\$\{/g, '\\${');
  return (
    '// Generated from grammar/linattn.ohm by `npm run grammar` (src/cli/grammar-module.ts): edit the grammar, not this.\n' +
    `export const GRAMMAR_SOURCE = \`${literal}\`;\n`
  );
}

/** Whether the generated module holds the grammar as it is now. */
export function grammarModuleIsCurrent(): boolean {
  return readFileSync(GRAMMAR_MODULE, 'utf8') === grammarModule(readFileSync(GRAMMAR_FILE, 'utf8'));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(GRAMMAR_MODULE, grammarModule(readFileSync(GRAMMAR_FILE, 'utf8')));
  process.stdout.write(`wrote ${relative(process.cwd(), GRAMMAR_MODULE)}\n`);
}
