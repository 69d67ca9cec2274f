// .ci/run adds bookworm-backports from the archive the machine's apt sources already name (a mirror, a proxy),
// never from a host of its own choosing: .ci/apt-sources.sh reads one-line and deb822 sources. Run here on
// sample /etc/apt trees; no apt is run.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = mkdtempSync(join(tmpdir(), 'linattn-apt-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let trees = 0;

/** A fresh /etc/apt tree holding `files` (paths relative to etc/apt); returns its root. */
function tree(files: Record<string, string>): string {
  const r = join(root, String(trees++));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(r, 'etc/apt', path)), { recursive: true });
    writeFileSync(join(r, 'etc/apt', path), text);
  }
  mkdirSync(join(r, 'etc/apt/sources.list.d'), { recursive: true });
  return r;
}

/** The URI .ci/run would take for `suite` under `r`, or null when it would stop. */
function uriFor(r: string, suite: string): string | null {
  const script = '. .ci/apt-sources.sh; mapfile -t f < <(apt_source_files "$1"); apt_uri_for_suite "$2" "${f[@]}"';
  const p = spawnSync('bash', ['-c', script, 'test', r, suite], { encoding: 'utf8' });
  expect(p.stderr).toBe('');
  return p.status === 0 ? p.stdout.trim() : null;
}

const DEB822 = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.net/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.net/debian-security
Suites: bookworm-security
Components: main
`;

describe('.ci/apt-sources.sh', () => {
  it('takes the archive of a deb822 .sources file (the bookworm paragraph, not -security)', () => {
    const r = tree({ 'sources.list.d/debian.sources': DEB822 });
    expect(uriFor(r, 'bookworm')).toBe('http://mirror.example.net/debian');
    expect(uriFor(r, 'bookworm-security')).toBe('http://mirror.example.net/debian-security');
    expect(uriFor(r, 'bookworm-backports')).toBeNull();
  });

  it('skips disabled paragraphs, deb-src, comments and multi-line fields', () => {
    const r = tree({
      'sources.list.d/a.sources':
        'Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n' +
        'Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n' +
        'Types: deb deb-src\nURIs: https://on.example/debian/ https://second.example/debian\nSuites: bookworm\n' +
        'Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n URIs: http://not-a-field.example\n -----END PGP PUBLIC KEY BLOCK-----\n',
    });
    expect(uriFor(r, 'bookworm')).toBe('https://on.example/debian/');
  });

  it('reads one-line entries in sources.list and sources.list.d/*.list, options in brackets included', () => {
    const r = tree({
      'sources.list':
        '# deb http://commented.example/debian bookworm main\n' +
        'deb-src http://src.example/debian bookworm main\n' +
        'deb http://proxy.example:3142/debian-security bookworm-security main\n' +
        'deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://proxy.example:3142/debian bookworm main # the archive\n',
      'sources.list.d/other.list': 'deb [ trusted=yes ] http://local.example/repo stable main\n',
    });
    expect(uriFor(r, 'bookworm')).toBe('http://proxy.example:3142/debian');
    expect(uriFor(r, 'stable')).toBe('http://local.example/repo');
  });

  it('ignores files apt ignores (other extensions) and fails when nothing serves the suite', () => {
    const r = tree({ 'sources.list.d/debian.sources.disabled': DEB822, 'sources.list.d/x.list.save': 'deb http://old.example/debian bookworm main\n' });
    expect(uriFor(r, 'bookworm')).toBeNull();
  });

  it('.ci/run writes the backports entry from that URI and names no host of its own', () => {
    const run = readFileSync('.ci/run', 'utf8');
    expect(run).toContain('echo "deb $archive bookworm-backports main"');
    expect(run.match(/https?:\/\/[^\s"'$]+/g) ?? []).toEqual([]);
  });
});
