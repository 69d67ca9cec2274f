// grammar/linattn.ohm is the single source of the language; the frontend parses with the copy that
// `npm run grammar` writes into src/frontend/grammar-text.ts (so that parsing needs no file system).
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GRAMMAR_FILE, grammarModule, grammarModuleIsCurrent } from '../src/cli/grammar-module.ts';
import { GRAMMAR_SOURCE } from '../src/frontend/grammar-text.ts';

describe('the generated grammar module', () => {
  it('holds grammar/linattn.ohm as it is now (after editing the grammar: npm run grammar)', () => {
    expect(grammarModuleIsCurrent(), 'src/frontend/grammar-text.ts is stale: run npm run grammar').toBe(true);
    expect(GRAMMAR_SOURCE).toBe(readFileSync(GRAMMAR_FILE, 'utf8'));
  });

  it('keeps backslashes, backquotes and ${ of a grammar verbatim', async () => {
    const text = 'G {\n  c = "#" (~"\\n" any)* "`" "${x}"\n}\n';
    const url = `data:text/javascript,${encodeURIComponent(grammarModule(text))}`;
    const mod = (await import(/* @vite-ignore */ url)) as { GRAMMAR_SOURCE: string };
    expect(mod.GRAMMAR_SOURCE).toBe(text);
  });
});
