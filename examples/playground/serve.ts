// `npm run playground [-- --port N]`: bundles the playground (build.ts) and serves it on 127.0.0.1, on port N
// or a free one, and prints the URL. 127.0.0.1 is a secure context, which WebGPU requires.
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { buildSite } from './build.ts';

const HELP = `npm run playground [-- --port N]

Bundles the compiler for the browser and serves the variant playground on http://127.0.0.1:N/ (default: a
free port). Open it in a browser with WebGPU: Chrome/Chromium 113+, or headless Chromium on a machine without
a GPU with --enable-unsafe-webgpu (its SwiftShader adapter runs the kernels).`;

function parsePort(argv: string[]): number | 'help' {
  const { values } = parseArgs({ args: argv, options: { port: { type: 'string', short: 'p' }, help: { type: 'boolean', short: 'h' } }, strict: true });
  if (values.help) return 'help';
  if (values.port === undefined) return 0;
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be an integer in 0..65535, got '${values.port}'`);
  return port;
}

async function main(): Promise<number> {
  let port: number | 'help';
  try {
    port = parsePort(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`playground: ${(e as Error).message}\n\n${HELP}\n`);
    return 2;
  }
  if (port === 'help') {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  const started = performance.now();
  const site = await buildSite();
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    const asset = req.method === 'GET' || req.method === 'HEAD' ? site.get(path) : undefined;
    if (!asset) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': asset.type, 'content-length': asset.body.length, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : asset.body);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  }).catch((e: NodeJS.ErrnoException) => {
    throw new Error(e.code === 'EADDRINUSE' ? `port ${port} is in use; pick another with --port, or leave it out for a free one` : e.message);
  });
  const address = server.address();
  const actual = typeof address === 'object' && address ? address.port : port;
  process.stdout.write(`linattn playground: http://127.0.0.1:${actual}/  (built in ${((performance.now() - started) / 1000).toFixed(1)} s; Ctrl-C stops it)\n`);
  return -1; // keep serving
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: Error) => {
    process.stderr.write(`playground: ${e.message}\n`);
    process.exit(1);
  },
);
