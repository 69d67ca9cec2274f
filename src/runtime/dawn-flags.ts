// The flags a Dawn instance is created with (npm `webgpu`'s create()), as a pure function of the options, the
// environment and whether the adapter is a hardware GPU.
//
// Three of Dawn's safety toggles cost time on every step and buy nothing for kernels this compiler writes:
//   disable_robustness      Tint clamps every storage index unless it is on. Every kernel here guards its own
//                           bounds and is checked against float64 with the toggle on (the test suite runs with
//                           these defaults); on the H200 the blocked chunk kernel ran 1.98 → 1.48 ms with it.
//   disable_workgroup_init  WGSL zero-fills workgroup memory at the start of every workgroup unless it is on; the
//                           kernels write their workgroup arrays before reading them.
//   skip_validation         Dawn validates every setBindGroup / dispatch / submit on the host: half the host's
//                           cost of a step (H200 host, 64 trivial dispatches: 4.4 → 2.2 µs per dispatch; a 12-layer
//                           decode step's encode and submit 0.41 → 0.32 ms). Only on hardware adapters: on
//                           software ones (lavapipe: the tests, CI) validation stays, so that a binding mistake
//                           is an error that names the kernel, not garbage.
// LINATTN_SAFE=1 keeps all three as Dawn has them (validation, robustness, zero-initialised workgroup memory):
// the first thing to try when a hardware run gives garbage or loses its device. LINATTN_DAWN_FLAGS adds raw
// flags; its enable-/disable-dawn-features lists are merged with these (Dawn reads one of each).

/** Toggles enabled on every adapter unless LINATTN_SAFE=1. */
export const CODEGEN_TOGGLES = ['disable_robustness', 'disable_workgroup_init'] as const;
/** Enabled on hardware adapters only, unless LINATTN_SAFE=1. */
export const HOST_TOGGLES = ['skip_validation'] as const;

export interface DawnFlagsInput {
  readonly backend: string;
  readonly adapter?: string;
  /** Whether the adapter this instance is for is a hardware GPU (unknown on the first open: false). */
  readonly hardware: boolean;
  /** process.env, or a stand-in in tests. */
  readonly env: Readonly<Record<string, string | undefined>>;
}

/** Whether the environment asks for Dawn's own safety checks (LINATTN_SAFE set to anything but '', '0' or 'false'). */
export function safeMode(env: Readonly<Record<string, string | undefined>>): boolean {
  const v = env.LINATTN_SAFE;
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

export function dawnFlags(input: DawnFlagsInput): string[] {
  const flags = [`backend=${input.backend}`];
  if (input.adapter) flags.push(`adapter=${input.adapter}`);
  const enable: string[] = [];
  // Dawn rounds timestamps to 100 µs by default (a browser fingerprinting guard); kernels here take µs.
  const disable: string[] = ['timestamp_quantization'];
  if (!safeMode(input.env)) {
    enable.push(...CODEGEN_TOGGLES);
    if (input.hardware) enable.push(...HOST_TOGGLES);
  }
  // Extra Dawn flags for debugging, e.g. LINATTN_DAWN_FLAGS='enable-dawn-features=dump_shaders'.
  for (const flag of (input.env.LINATTN_DAWN_FLAGS ?? '').split(/\s+/).filter(Boolean)) {
    const m = /^(enable|disable)-dawn-features=(.*)$/.exec(flag);
    if (!m) flags.push(flag);
    else (m[1] === 'enable' ? enable : disable).push(...m[2].split(',').filter(Boolean));
  }
  const uniq = (xs: string[]) => [...new Set(xs)];
  // A toggle the caller disables is not also enabled by default (Dawn would get both).
  const enabled = uniq(enable).filter((t) => !disable.includes(t));
  if (enabled.length) flags.push(`enable-dawn-features=${enabled.join(',')}`);
  flags.push(`disable-dawn-features=${uniq(disable).join(',')}`);
  return flags;
}

/** The toggles a flag list enables (its enable-dawn-features list). */
export function enabledToggles(flags: readonly string[]): string[] {
  const f = flags.find((x) => x.startsWith('enable-dawn-features='));
  return f ? f.slice('enable-dawn-features='.length).split(',').filter(Boolean) : [];
}
