// The browser-safe core — src/ir, src/frontend, passes/, backends/ and the plan executor, reached through
// src/runtime/browser.ts — bundled by esbuild for a browser: it must build, hold no Node built-in (a browser
// build cannot resolve one, so esbuild fails on it) and pull in neither Dawn nor the Node-only files.
import { readdirSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { build, type Message, type Metafile } from 'esbuild';
import { beforeAll, describe, expect, it } from 'vitest';

const CORE_DIRS = ['src/ir', 'src/frontend', 'passes', 'backends'];
const ENTRY = 'src/runtime/browser.ts';

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? tsFiles(p) : n.endsWith('.ts') ? [p] : [];
  });
}

// Every core file is an entry of its own, so that a file the browser entry does not reach is checked too.
const entries = [ENTRY, 'src/tensor.ts', 'src/inputs.ts', ...CORE_DIRS.flatMap(tsFiles)];
let errors: Message[] = [];
let metafile: Metafile | undefined;
let code = '';

beforeAll(async () => {
  try {
    const r = await build({
      entryPoints: entries,
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      outdir: 'browser-bundle',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    metafile = r.metafile;
    code = r.outputFiles.map((f) => f.text).join('\n');
  } catch (e) {
    errors = (e as { errors?: Message[] }).errors ?? [{ text: String(e) } as Message];
  }
});

describe('the browser bundle of the core', () => {
  it('builds for platform browser (a Node built-in anywhere in it would fail the build)', () => {
    expect(errors.map((m) => `${m.location ? `${m.location.file}:${m.location.line}: ` : ''}${m.text}`)).toEqual([]);
    expect(Object.keys(metafile!.inputs)).toEqual(expect.arrayContaining(['src/runtime/executor.ts', 'src/frontend/parse.ts', 'backends/wgsl/chunked.ts']));
  });

  it('pulls in neither Dawn (webgpu) nor the Node-only files', () => {
    const inputs = Object.keys(metafile?.inputs ?? {});
    expect(inputs.filter((f) => /node_modules\/webgpu\/|^src\/(io|cli|model|speculative)\/|^src\/runtime\/(dawn|autotune-cache)\.ts$/.test(f))).toEqual([]);
  });

  it('holds no import or require of a Node built-in', () => {
    const names = builtinModules.filter((m) => !m.startsWith('_')).map((m) => m.replace(/[/]/g, '\\/')).join('|');
    const pattern = new RegExp(`(?:from|import|require)\\s*\\(?\\s*["'](?:node:[\\w/]+|(?:${names}))["']`, 'g');
    expect(code.match(pattern) ?? []).toEqual([]);
  });
});
