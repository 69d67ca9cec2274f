// `linattn ir FILE.la --print-after=plan`: the chunked plan's decision on a modelled adapter, after the last pass —
// the plan kind with the three estimates, and every feature node with where it is computed and both figures. The
// figures must be the ones the model ranks by (fusion-model.ts), not a second computation. No device.
import { describe, expect, it } from 'vitest';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';
import { PREFETCH_MARK } from '../backends/wgsl/chunked.ts';
import { lowerChunked } from '../backends/wgsl/lower.ts';
import { featureNodes } from '../backends/wgsl/feature-nodes.ts';
import { chooseFusion } from '../backends/wgsl/fusion-model.ts';
import { hardwareModel } from '../backends/wgsl/schedule-model.ts';
import { axisSizes } from '../src/inputs.ts';
import { main } from '../src/cli/main.ts';
import { compileFile } from '../src/runtime/compiler.ts';

async function linattn(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (s) => void (out += s), stderr: (s) => void (err += s) });
  return { code, out, err };
}

const H200_AT = ['--axis', 'h=16', '--axis', 'd=64', '--axis', 'e=64', '--b', '4', '--t', '4096'];

describe('linattn ir --print-after=plan', () => {
  // performer and hedgehog fused with feature maps in a prologue (hedgehog's φ and ψ; performer's φ and ψ at 32×32×512,
  // which call 66 timed at 1.740 ms against the segmented plan's 1.987 with φ inline); llama_linearized unfused (its prologue plan ran 12.2 ms on the
  // H200, its unfused one 5.38), its feature nodes shown as the prologue plan decides them (inline: norms per row).
  it.each([
    ['paper/llama_linearized', 'unfused'],
    ['paper/performer', 'fused with a prologue'],
    ['variants/hedgehog', 'fused with a prologue'],
  ])('%s on the H200 model: %s, each feature node with its two estimates', async (name, kind) => {
    const r = await linattn('ir', `examples/${name}.la`, '--print-after=plan', ...H200_AT);
    expect(r.code, r.err).toBe(0);
    const c = compileFile(`examples/${name}.la`);
    const sizes = axisSizes(c.source, { h: 16, d: 64, e: 64 });
    const LIMITS = { maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024 };
    const want = chooseFusion(hardwareModel(132, 49152), c.program, sizes, { fused: candidateSchedules(LIMITS, c.program, sizes), unfused: candidateSchedules(LIMITS, c.program, sizes, true).filter((s) => !s.segment) }, 4, 4096)!;
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\/\/ ---- plan \(not a pass: .*NVIDIA H200 \(model: 132 units, 49152 bytes .* at b 4, t 4096/);
    expect(lines[1]).toMatch(new RegExp(`^plan ${kind} \\(chunk \\d+, cols \\d+, threads \\d+`));
    expect(want.fuse).toBe(kind !== 'unfused');
    expect(lines[1]).toContain(`fused with a prologue of ${want.hybrid!.prologue.size} feature kernel(s) ${(want.hybrid!.us / 1e3).toFixed(3)} ms`);
    const nodes = featureNodes(c.program);
    const rows = lines.filter((l) => /^ {2}%\d+ = /.test(l));
    expect(rows.map((l) => Number(/%(\d+)/.exec(l)![1])).sort()).toEqual([...nodes].sort());
    for (const d of want.hybrid!.decisions) {
      const row = rows.find((l) => l.startsWith(`  %${d.id} = `))!;
      expect(row).toContain(`${d.prologue ? 'prologue' : 'inline'}  `);
      expect(row).toContain(`inline ${d.inlineUs.toFixed(1)} µs ${d.prologue ? '>' : '≤'} prologue ${d.prologueUs.toFixed(1)} µs`);
    }
    expect(rows.some((l) => /\(φ of |\(.*φ of /.test(l))).toBe(true);
    if (name === 'variants/hedgehog') expect(rows.some((l) => /prologue {2}inline/.test(l) && /\(φ of /.test(l))).toBe(true);
    expect(lines.at(-1)).toMatch(/^decode step: \d+ workgroups at b 4 \(16 head slices × \d+ column blocks × b\) of \d+ columns × \d+ slices/);
    // The split is chosen for b 4: the widest column blocks that still fill 2 × 132 units (batch 1's gave 4× as many).
    const launched = Number(/^decode step: (\d+) workgroups/.exec(lines.at(-1)!)![1]);
    expect(launched).toBeGreaterThanOrEqual(264);
    expect(launched).toBeLessThan(2 * 264);
  });

  // The staging line reads the kernels lowering writes: elu_dwconv's plan runs over spans (chunked/span-default.ts;
  // the line before says so), its state launch prefetching 7 loads a thread and its output launch 11; llama_linearized's
  // unfused chunk kernels at 32×32×512, its pick since its group term's halo shrank to the 32 rows a chunk of 32 can
  // reach (call 119: 3.118 ms, against 3.689 at call 116's pick, 16×32×1024, with the mask's 63-row halo), all three;
  // performer's prologue
  // plan at b 4 (φ and ψ read from the prologue: 10 loads), and at b 1, segmented with both in the prologue (since call
  // 112; with φ inline only its state launch did), in both launches; a variant's kernel built with prefetch off carries
  // no mark.
  it.each([
    ['paper/elu_dwconv', H200_AT, /^staging: the next chunk's rows loaded while this one computes in 2 of 2 chunk kernels \(7, 11 global loads a thread held\)$/],
    ['paper/llama_linearized', H200_AT, /^staging: the next chunk's rows loaded while this one computes in 3 of 3 chunk kernels \(16, 10, 3 global loads a thread held\)$/],
    ['paper/performer', H200_AT, /^staging: the next chunk's rows loaded while this one computes in 1 of 1 chunk kernel \(10 global loads a thread held\)$/],
    ['paper/performer', [...H200_AT.slice(0, -4), '--b', '1', '--t', '4096'], /^staging: the next chunk's rows loaded while this one computes in 2 of 2 chunk kernels \(\d+, \d+ global loads a thread held\)$/],
  ])('%s: says whether its chunk kernels load the next chunk ahead', async (name, at, want) => {
    const r = await linattn('ir', `examples/${name}.la`, '--print-after=plan', ...at);
    expect(r.code, r.err).toBe(0);
    expect(r.out.split('\n').find((l) => l.startsWith('staging: '))).toMatch(want);
    if (name === 'paper/elu_dwconv') expect(r.out).toMatch(/^over spans \(chunked\/span-default\.ts\): chunk 16, cols 64, threads 512, segments of 16, blocks of 2 columns in spans of 8 segments, est\. [\d.]+ ms < the fused pick: the plan runs this$/m);
    const c = compileFile(`examples/${name}.la`);
    const sizes = axisSizes(c.source, { h: 16, d: 64, e: 64 });
    const off = lowerChunked(c.program, sizes, { fuse: true, schedule: { chunk: 32, cols: 32, threads: 512 }, prefetch: false });
    expect(off.kernels.some((k) => k.code.includes(PREFETCH_MARK))).toBe(false);
  });

  it('says softmax attention has no feature maps to place', async () => {
    const plan = await linattn('ir', 'examples/variants/softmax.la', '--print-after=plan');
    expect(plan.code).toBe(0);
    expect(plan.out).toMatch(/^\/\/ ---- plan .*\nplan softmax: the register-tiled flash kernel \(64 query rows, 32 threads, 2 logit columns a thread\) \(no feature maps to place\)\n$/);
  });

  it('refuses the plan options without --print-after=plan, and an unknown stage names plan among the choices', async () => {
    const r = await linattn('ir', 'examples/paper/elu.la', '--adapter', 'NVIDIA H100');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--adapter is for --print-after=plan/);
    const bad = await linattn('ir', 'examples/paper/elu.la', '--print-after=plans');
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/or plan/);
  });
});
