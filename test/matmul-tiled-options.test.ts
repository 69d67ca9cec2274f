// The tiled matmul's inner-structure options (matmul-tiled.ts's MatmulTile: doubleBuffer, unrollK, vec4Loads) against the
// float64 formulas at sizes that divide no tile, with every fusion the prefill uses and the training layouts
// (Aᵀ, split K); and, options off, the very WGSL today's tiles generate.
import { describe, expect, it } from 'vitest';
import { matmulReference, TILE_128_SWIGLU, TILE_64_PAIRED, type MatmulProblem } from '../backends/wgsl/matmul.ts';
import { TILE_128, TILE_64, tiledMatmulWgsl, tiledWorkgroupBytes, type MatmulTile, type TiledMatmulVariant } from '../backends/wgsl/matmul-tiled.ts';
import type { MatmulFusion } from '../backends/wgsl/matmul-fusion.ts';
import { downloadTensor } from '../src/runtime/gpu-tensor.ts';
import { BufferUsage, type Gpu } from '../src/runtime/device.ts';
import { planMatmul } from '../src/runtime/matmul.ts';
import { encodeDispatch } from '../src/runtime/model-kernels.ts';
import { bindMatmulRanges } from '../src/runtime/train-kernels.ts';
import { randn } from '../src/tensor.ts';
import { checkFusedMatmul, EPS } from './helpers/fused-matmul.ts';
import { expectRelClose, gpu } from './helpers/gpu.ts';

const QKV: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: { split: 3 } };
const GATE_UP: MatmulFusion = { rmsnorm: { eps: EPS }, epilogue: 'swiglu' };
const RESIDUAL: MatmulFusion = { epilogue: 'accumulate' };
const FUSIONS: readonly (MatmulFusion | undefined)[] = [undefined, QKV, GATE_UP, RESIDUAL, { rmsnorm: { eps: EPS } }, { epilogue: 'swiglu' }];

type Options = Pick<MatmulTile, 'doubleBuffer' | 'unrollK' | 'vec4Loads'>;
const OPTIONS: readonly Options[] = [
  { doubleBuffer: true }, { unrollK: true }, { doubleBuffer: true, unrollK: true }, { vec4Loads: true }, { vec4Loads: true, doubleBuffer: true, unrollK: true },
];
/** vec4 loads need K a multiple of 4: the next one up (still no multiple of the tile's BK). */
const kFor = (o: Options, K: number) => (o.vec4Loads ? 4 * Math.ceil(K / 4) : K);
// Small tiles that pair columns (4×8 per thread), so that a few rows span several tiles, and K several K steps.
const SMALL: MatmulTile = { BM: 32, BN: 32, BK: 16, TM: 4, TN: 8 };
const SMALL_BK8: MatmulTile = { BM: 32, BN: 32, BK: 8, TM: 4, TN: 8 };
const describeOptions = (o: object) => Object.keys(o).join(' + ');

describe('the tiled matmul with its options off generates today\'s code', () => {
  it('every default tile, fusion, layout and bounds check: fields set false equal fields absent, and on differ', () => {
    let compared = 0;
    for (const tile of [TILE_64, TILE_128, TILE_64_PAIRED, TILE_128_SWIGLU]) {
      for (const fusion of FUSIONS) {
        for (const [transposeA, splitK] of [[false, false], [true, false], [false, true]]) {
          for (const transposeB of [true, false]) {
            for (const check of [false, true]) {
              const v: TiledMatmulVariant = { tile, transposeB, checkM: check, checkN: !check, checkK: check, ...(fusion && { fusion }), ...(transposeA && { transposeA }), ...(splitK && { splitK }) };
              let plain: string;
              try {
                plain = tiledMatmulWgsl(v);
              } catch {
                continue; // a fusion this layout or tile refuses
              }
              expect(tiledMatmulWgsl({ ...v, tile: { ...tile, doubleBuffer: false, unrollK: false, vec4Loads: false } })).toBe(plain);
              for (const o of OPTIONS) {
                if (o.vec4Loads && (!transposeB || transposeA)) continue;
                expect(tiledMatmulWgsl({ ...v, tile: { ...tile, ...o } }), describeOptions(o)).not.toBe(plain);
              }
              compared++;
            }
          }
        }
      }
    }
    expect(compared).toBeGreaterThan(100);
  });

  it('double buffering doubles the tiles\' workgroup memory, not the row scales', () => {
    expect(tiledWorkgroupBytes({ ...TILE_128, doubleBuffer: false }, QKV)).toBe(tiledWorkgroupBytes(TILE_128, QKV));
    expect(tiledWorkgroupBytes({ ...TILE_128, doubleBuffer: true }, QKV)).toBe(2 * tiledWorkgroupBytes(TILE_128) + 128 * 4);
  });

  it('double buffering has one barrier per K step, unrolling no k loop', () => {
    const v: TiledMatmulVariant = { tile: TILE_64, transposeB: true, checkM: false, checkN: false, checkK: false };
    const loopOf = (code: string) => code.slice(code.indexOf('for (var t = 0u'), code.indexOf('// Write back'));
    const barriers = (code: string) => loopOf(code).split('workgroupBarrier()').length - 1;
    expect(barriers(tiledMatmulWgsl(v))).toBe(2);
    expect(barriers(tiledMatmulWgsl({ ...v, tile: { ...TILE_64, doubleBuffer: true } }))).toBe(1);
    expect(tiledMatmulWgsl({ ...v, tile: { ...TILE_64, unrollK: true } })).not.toContain('for (var k = 0u');
  });
});

describe('the tiled matmul\'s options equal the float64 formulas', () => {
  for (const o of OPTIONS) {
    it(`${describeOptions(o)}: M, N, K not multiples of the tile, with and without each fusion`, async () => {
      // Unrolled kernels compile slowly on lavapipe: those take the BK 8 tile alone (K still spans 5 to 11 steps).
      for (const base of o.unrollK ? [SMALL_BK8] : [SMALL, SMALL_BK8]) {
        const tile = { ...base, ...o };
        for (const M of [13, 70]) {
          for (const [N, K, fusion, seed] of [[3 * 21, 44, QKV, 100], [2 * 19, 37, GATE_UP, 200], [75, 40, { rmsnorm: { eps: EPS } }, 300], [2 * 23, 36, { epilogue: 'swiglu' }, 400], [29, 52, RESIDUAL, 500], [45, 83, undefined, 600]] as const) {
            const plan = await checkFusedMatmul(M, N, kFor(o, K), fusion, seed + M + base.BK, { path: 'tiled', tile });
            expect(plan.tuning.tile).toEqual(tile);
          }
        }
      }
    });

    it(`${describeOptions(o)}: tile multiples (no bounds checks), several tiles along each axis`, async () => {
      for (const [N, fusion, seed] of [[128, GATE_UP, 700], [96, QKV, 800], [64, RESIDUAL, 900], [64, undefined, 1000]] as const) {
        const plan = await checkFusedMatmul(64, N, 48, fusion, seed, { path: 'tiled', tile: { ...SMALL, ...o } });
        expect(plan.workgroups[0] * plan.workgroups[1], plan.kernel).toBeGreaterThan(3);
      }
    });

    it(`${describeOptions(o)}: the prefill's tiles, ragged (64×64 8×4, 64×64 4×8 and 128×128×8 with swiglu)`, async () => {
      for (const [tile, N, K, fusion, seed] of [[TILE_64, 3 * 21, 44, QKV, 1100], [TILE_64, 29, 52, RESIDUAL, 1200], [TILE_64_PAIRED, 2 * 40, 20, GATE_UP, 1300], [TILE_128_SWIGLU, 2 * 70, 44, GATE_UP, 1400]] as const) {
        await checkFusedMatmul(130, N, kFor(o, K), fusion, seed, { path: 'tiled', tile: { ...tile, ...o } });
      }
    });

    it(`${describeOptions(o)}: ${o.vec4Loads ? 'A·Wᵀ with K split in 3' : 'A·B, Aᵀ·B accumulated, and Aᵀ·B with K split in 3 (the training layouts)'}`, async () => {
      const g = await gpu();
      const tile = { ...SMALL, ...o };
      const plain: MatmulProblem = { M: 37, N: 45, K: 83, transposeB: false };
      const transposed: MatmulProblem = { ...plain, transposeA: true };
      const cases: readonly (readonly [MatmulProblem, MatmulFusion | undefined, number | undefined])[] = o.vec4Loads
        ? [[{ M: 37, N: 45, K: 84, transposeB: true }, undefined, 3]]
        : [[plain, undefined, undefined], [transposed, RESIDUAL, undefined], [transposed, undefined, 3]];
      for (const [p, fusion, splitK] of cases) {
        const seed = 1500 + (splitK ?? 0) + (fusion ? 10 : 0);
        const a = Float32Array.from(randn([p.M * p.K], seed).data);
        const b = Float32Array.from(randn([p.K * p.N], seed + 1).data); // B [K, N], or W [N, K]
        const before = Float32Array.from(randn([p.M * p.N], seed + 2).data);
        const plan = await planMatmul(g, { ...p, ...(fusion && { fusion }), ...(splitK && { splitK }) }, { tile });
        expect(plan.splits).toBe(splitK ?? 1);
        const c = buffer(g, 'c', plan.splits === 1 ? before : new Float32Array(plan.splits * p.M * p.N));
        const enc = g.device.createCommandEncoder();
        const pass = enc.beginComputePass();
        encodeDispatch(pass, bindMatmulRanges(g, plan, { a: buffer(g, 'a', a), w: buffer(g, 'b', b), c }));
        pass.end();
        g.device.queue.submit([enc.finish()]);
        const out = await downloadTensor(g, { name: 'c', shape: [plan.splits * p.M * p.N], bytes: c.size, buffer: c });
        const got = new Float64Array(p.M * p.N);
        for (let z = 0; z < plan.splits; z++) for (let i = 0; i < got.length; i++) got[i] += out[z * got.length + i];
        const want = matmulReference(a, b, p).map((x, i) => (fusion ? x + before[i] : x));
        expectRelClose(got, want, 2e-6, `${plan.kernel}, seed ${seed}`);
      }
    });
  }
});

function buffer(g: Gpu, label: string, data: Float32Array): GPUBuffer {
  const b = g.device.createBuffer({ label, size: data.length * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
  g.device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
  return b;
}

describe('the tiled matmul\'s vec4 loads', () => {
  it('are refused where K is no multiple of 4, B is not a weight [N, K], or A is transposed', async () => {
    const g = await gpu();
    const tile = { ...SMALL, vec4Loads: true };
    await expect(planMatmul(g, { M: 37, N: 45, K: 83, transposeB: true }, { path: 'tiled', tile })).rejects.toThrow(/multiple of 4/);
    await expect(planMatmul(g, { M: 37, N: 45, K: 84, transposeB: false }, { path: 'tiled', tile })).rejects.toThrow(/vec4 loads/);
    await expect(planMatmul(g, { M: 37, N: 45, K: 84, transposeB: true, transposeA: true }, { path: 'tiled', tile })).rejects.toThrow(/vec4 loads/);
  });
});
