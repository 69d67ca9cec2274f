// Every test file gets its own empty cache directory (vitest.config.ts: setupFiles), so on a hardware GPU the tests
// neither read nor write the user's ~/.cache/linattn: no autotuned kernel picks and no `--tree auto` measurements
// kept from earlier runs (which made a fresh controller's exploration untestable there). A test that needs its own
// sets LINATTN_CACHE_DIR itself, as before.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const dir = mkdtempSync(join(tmpdir(), 'linattn-test-cache-'));
process.env.LINATTN_CACHE_DIR = dir;
afterAll(() => rmSync(dir, { recursive: true, force: true }));
