// The playground as an in-memory site: the page's script and the compiler's browser entry bundled by esbuild
// (ES modules sharing chunks), the static page, and the shipped variants (examples/**/*.la) as JSON.
//
//   /app.js       page/app.ts, the playground
//   /linattn.js   src/runtime/browser.ts, the browser-safe compiler (tests import it in the page)
//   /variants.json  [{ path, text }] of every .la file under examples/, sorted by path
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

export const PLAYGROUND_DIR = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = join(PLAYGROUND_DIR, '..', '..');

export interface Asset {
  readonly type: string;
  readonly body: Uint8Array;
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

function laFiles(dir: string): string[] {
  return readdirSync(dir)
    .flatMap((n) => {
      const p = join(dir, n);
      return statSync(p).isDirectory() ? laFiles(p) : n.endsWith('.la') ? [p] : [];
    })
    .sort();
}

/** Every shipped variant, path relative to the repository (as the CLI prints it in diagnostics). */
export function shippedVariants(): { path: string; text: string }[] {
  return laFiles(join(REPO_ROOT, 'examples')).map((p) => ({ path: relative(REPO_ROOT, p).split('\\').join('/'), text: readFileSync(p, 'utf8') }));
}

/** Builds the site; keys are URL paths ('/app.js'). Throws esbuild's errors (file:line) when the page does not build. */
export async function buildSite(): Promise<Map<string, Asset>> {
  const r = await build({
    entryPoints: { app: join(PLAYGROUND_DIR, 'page/app.ts'), linattn: join(REPO_ROOT, 'src/runtime/browser.ts') },
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    sourcemap: 'linked',
    outdir: join(PLAYGROUND_DIR, 'dist'), // never written: write is false
    write: false,
    logLevel: 'silent',
  });
  const site = new Map<string, Asset>();
  const add = (path: string, body: Uint8Array | string) => {
    site.set(path, { type: TYPES[extname(path)] ?? 'application/octet-stream', body: typeof body === 'string' ? new TextEncoder().encode(body) : body });
  };
  for (const f of r.outputFiles) add(`/${relative(join(PLAYGROUND_DIR, 'dist'), f.path).split('\\').join('/')}`, f.contents);
  for (const f of ['index.html', 'style.css']) add(`/${f}`, readFileSync(join(PLAYGROUND_DIR, f)));
  site.set('/', site.get('/index.html')!);
  add('/variants.json', JSON.stringify(shippedVariants()));
  return site;
}
