// Starts the playground the way `npm run playground -- --port 0` does (a free port) and reads its URL from the
// line it prints; stop() ends that one process.
import { spawn } from 'node:child_process';

export interface Playground {
  readonly url: string;
  stop(): void;
}

export function startPlayground(timeoutMs = 60_000): Promise<Playground> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/playground/serve.ts', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill();
      reject(new Error(`npm run playground: ${why}\nstdout: ${out}`));
    };
    const timer = setTimeout(() => fail(`printed no URL within ${timeoutMs / 1000} s`), timeoutMs);
    child.stderr.on('data', (d: Buffer) => void (out += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /linattn playground: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({ url: m[1], stop: () => void child.kill() });
    });
    child.on('exit', (code) => fail(`exited with code ${code} before printing its URL`));
  });
}
