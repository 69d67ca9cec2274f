// bench/dump-wgsl.ts's command line: `--help` prints usage and an unknown option is refused, where both were once
// taken for the output folder (a folder literally named `--help` appeared).
import { describe, expect, it } from 'vitest';
import { parseDumpArgs } from '../bench/dump-wgsl.ts';

describe('bench/dump-wgsl.ts arguments', () => {
  it('--help and -h ask for usage, not a folder named after them', () => {
    expect(parseDumpArgs(['--help'])).toEqual({ kind: 'help' });
    expect(parseDumpArgs(['-h'])).toEqual({ kind: 'help' });
  });
  it('one folder dumps; --compare takes two', () => {
    expect(parseDumpArgs(['out/wgsl'])).toEqual({ kind: 'dump', dir: 'out/wgsl' });
    expect(parseDumpArgs(['--compare', 'a', 'b'])).toEqual({ kind: 'compare', old: 'a', new: 'b' });
  });
  it('refuses an unknown option and a wrong count of folders, with the usage', () => {
    expect(() => parseDumpArgs(['--hlep'])).toThrow(/Unknown option '--hlep'[\s\S]*usage:/);
    expect(() => parseDumpArgs([])).toThrow(/one output folder[\s\S]*usage:/);
    expect(() => parseDumpArgs(['--compare', 'a'])).toThrow(/two folders/);
  });
});
