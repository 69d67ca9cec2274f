// Dawn's flags (src/runtime/dawn-flags.ts): the speed toggles by adapter kind, LINATTN_SAFE, the caller's raw
// flags merged into Dawn's one enable / disable list each; and on the device the tests run on (software), that
// validation is still on while the codegen toggles are in effect.
import { describe, expect, it } from 'vitest';
import { dawnFlags, enabledToggles, safeMode } from '../src/runtime/dawn-flags.ts';
import { gpu } from './helpers/gpu.ts';

const flagsOf = (hardware: boolean, env: Record<string, string> = {}) => dawnFlags({ backend: 'vulkan', hardware, env });

describe('Dawn flags', () => {
  it('skip validation on hardware only, and drop robustness and workgroup zero-fill on both', () => {
    expect(flagsOf(true)).toEqual([
      'backend=vulkan',
      'enable-dawn-features=disable_robustness,disable_workgroup_init,skip_validation',
      'disable-dawn-features=timestamp_quantization',
    ]);
    expect(enabledToggles(flagsOf(false))).toEqual(['disable_robustness', 'disable_workgroup_init']);
  });

  it('keep every Dawn check under LINATTN_SAFE', () => {
    for (const v of ['1', 'true', 'yes']) {
      expect(safeMode({ LINATTN_SAFE: v })).toBe(true);
      expect(enabledToggles(flagsOf(true, { LINATTN_SAFE: v }))).toEqual([]);
    }
    for (const v of ['', '0', 'false', 'FALSE']) expect(safeMode({ LINATTN_SAFE: v })).toBe(false);
  });

  it("merge the caller's flags into one list each, a toggle the caller disables not enabled", () => {
    const f = flagsOf(true, { LINATTN_DAWN_FLAGS: 'enable-dawn-features=dump_shaders disable-dawn-features=skip_validation adapter=x' });
    expect(f).toEqual([
      'backend=vulkan',
      'adapter=x',
      'enable-dawn-features=disable_robustness,disable_workgroup_init,dump_shaders',
      'disable-dawn-features=timestamp_quantization,skip_validation',
    ]);
    expect(f.filter((x) => x.startsWith('enable-dawn-features=')).length).toBe(1);
  });

  it('open the test device with validation on and the codegen toggles named', async () => {
    const g = await gpu();
    if (!g.isSoftware || safeMode(process.env) || process.env.LINATTN_DAWN_FLAGS) return;
    expect(g.toggles).toEqual(['disable_robustness', 'disable_workgroup_init']);
    g.device.pushErrorScope('validation');
    g.device.createBuffer({ size: 16, usage: 0xffff });
    const error = await g.device.popErrorScope();
    expect(error?.message).toMatch(/usage/i);
  });
});
