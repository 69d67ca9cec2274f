// Prompt lookup as one chain (lookup-chain.ts) and its chained GPU form (chainLookupWgsl through runChain):
// the reference proposal follows its definition on hand-made sequences; on the GPU, runs of R chain steps per
// submit — drafted from the token history kept on the GPU — emit plain greedy decoding's tokens (float64) and
// accept, step for step, exactly what unchained steps with the host's proposals accept (the same trees), with one
// readback per run. The model is speculative-chain.test.ts's (a random model scaled so its greedy text repeats
// itself: tokens a lookup can find), without heads.
import { afterAll, describe, expect, it } from 'vitest';
import { BufferUsage, MapMode } from '../src/runtime/device.ts';
import { compileKernel } from '../src/runtime/pipeline-cache.ts';
import { rng } from '../src/tensor.ts';
import { chainLookupWgsl } from '../backends/wgsl/chain-lookup.ts';
import { speculativeGenerate } from '../src/speculative/generate.ts';
import { GpuTreeVerifier } from '../src/speculative/gpu-verifier.ts';
import { LookupChainDraft, lookupChain } from '../src/speculative/lookup-chain.ts';
import { parseTreeSpec } from '../src/speculative/tree-spec.ts';
import { gpu } from './helpers/gpu.ts';
import { gpuVerifierOf, makeModel, MODEL_SPECS, plainGreedy, repeatingModel } from './helpers/speculative.ts';

const cleanup: (() => Promise<void>)[] = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('lookupChain (the reference proposal)', () => {
  it('copies what followed the most recent occurrence of the longest suffix', () => {
    // Suffix "1 2" occurs ending at 2 (followed by 7) and at 6 (followed by 9): the later wins.
    expect(lookupChain([1, 2, 7, 5, 1, 2, 9, 4, 1, 2], 3, 2, 4)).toEqual([9, 4, 1]);
    // The longer suffix "3 1 2" (ending at 3, followed by 8) beats the more recent "1 2".
    expect(lookupChain([3, 1, 2, 8, 6, 1, 2, 9, 3, 1, 2], 2, 2, 4)).toEqual([8, 6]);
    // maxN caps the match: with maxN 2 both are "1 2" matches and the later one wins.
    expect(lookupChain([3, 1, 2, 8, 6, 1, 2, 9, 3, 1, 2], 2, 2, 2)).toEqual([9, 3]);
  });

  it('runs into its own proposal when the period is shorter than the chain', () => {
    expect(lookupChain([5, 6, 5, 6], 5, 2, 8)).toEqual([5, 6, 5, 6, 5]);
    expect(lookupChain([4, 4, 4], 4, 1, 8)).toEqual([4, 4, 4, 4]);
  });

  it('proposes nothing below minN', () => {
    expect(lookupChain([1, 2, 3, 4], 3, 1, 4)).toEqual([]);
    expect(lookupChain([1, 9, 2, 9], 3, 2, 4)).toEqual([]);
    expect(lookupChain([1, 9, 2, 9], 3, 1, 4)).toEqual([2, 9, 2]);
  });
});

describe('chainLookupWgsl (one step\'s books and the next chain)', () => {
  it('accepts along the chain and proposes lookupChain of the extended history (up to its room), on random histories', async () => {
    const g = await gpu();
    const { device } = g;
    const pipeline = await compileKernel(g, { label: 'chain lookup (test)', code: chainLookupWgsl(), bindings: ['storage', 'storage', 'read-only-storage', 'storage', 'storage', 'storage', 'uniform'] });
    const made: GPUBuffer[] = [];
    const buffer = (data: Uint32Array<ArrayBuffer> | Float32Array<ArrayBuffer>, usage: number = BufferUsage.STORAGE) => {
      const b = device.createBuffer({ size: Math.max(16, data.byteLength), usage: usage | BufferUsage.COPY_DST | BufferUsage.COPY_SRC });
      device.queue.writeBuffer(b, 0, data);
      made.push(b);
      return b;
    };
    const read = async (b: GPUBuffer) => {
      const staging = device.createBuffer({ size: b.size, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(b, 0, staging, 0, b.size);
      device.queue.submit([enc.finish()]);
      await staging.mapAsync(MapMode.READ);
      const out = staging.getMappedRange().slice(0);
      staging.destroy();
      return out;
    };
    const RING = 20;
    const LENS = 11;
    for (let seed = 1; seed <= 24; seed++) {
      const r = rng(seed);
      const alphabet = 2 + Math.floor(r() * 3);
      const T = 1 + Math.floor(r() * 150);
      const history = Array.from({ length: T }, () => Math.floor(r() * alphabet));
      const K = 1 + Math.floor(r() * 7);
      const N = K + 1 + Math.floor(r() * 3); // padding rows beyond the chain
      const chainLen = seed % 5 === 0 ? 0 : K; // some trees are only the root
      const tokens = Uint32Array.from({ length: N }, (_, n) => (n === 0 ? history[T - 1] : Math.floor(r() * alphabet)));
      const parents = Float32Array.from({ length: N }, (_, n) => (n >= 1 && n <= chainLen ? n - 1 : -1));
      const picks = Uint32Array.from({ length: N }, () => Math.floor(r() * alphabet));
      // Make acceptance reach some depth: the picks follow the tree for a random stretch.
      const reach = Math.floor(r() * (chainLen + 1));
      for (let n = 0; n < reach; n++) picks[n] = tokens[n + 1];
      const minN = 1 + Math.floor(r() * 2);
      const maxN = minN + Math.floor(r() * 4);
      const st = new Uint32Array(RING + 64);
      st[8] = 100; st[9] = 3; st[10] = 2;
      // Some histories are full after one more token: the rest of the step's tokens are dropped, not its root.
      const cap = seed % 6 === 0 ? T + 1 : T + N + 4;
      const hist = new Uint32Array(1 + cap);
      hist[0] = T;
      hist.set(history, 1);
      const bufs = [buffer(tokens), buffer(parents), buffer(picks), buffer(new Float32Array(N)), buffer(st), buffer(hist), buffer(Uint32Array.of(N, K, RING, LENS, minN, maxN, cap, 0), BufferUsage.UNIFORM)];
      const enc = device.createCommandEncoder();
      const pass = enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: bufs.map((buffer, binding) => ({ binding, resource: { buffer } })) }));
      pass.dispatchWorkgroups(1);
      pass.end();
      device.queue.submit([enc.finish()]);
      const [gotTokens, gotParents, gotPath, gotSt, gotHist] = await Promise.all(bufs.slice(0, 6).filter((_, i) => i !== 2).map(read));

      // The host: the accepted chain, the bonus, the history extended, the proposal.
      let node = 0;
      while (node + 1 <= chainLen && tokens[node + 1] === picks[node]) node++;
      const L = node + 1;
      const bonus = picks[node];
      const emitted = [...tokens.slice(1, L), bonus];
      const ext = [...history, ...emitted].slice(0, cap);
      const proposal = lookupChain(ext, K, minN, maxN);
      const at = `seed ${seed} (T ${T}, K ${K}, N ${N}, n ${minN}..${maxN})`;
      expect(Array.from(new Float32Array(gotPath).slice(0, L)), at).toEqual(Array.from({ length: L }, (_, i) => i));
      const s = new Uint32Array(gotSt);
      expect(Array.from(s.slice(RING + 3, RING + 3 + L)), at).toEqual(emitted);
      expect([s[8], s[9], s[10], s[LENS + 2]], at).toEqual([100 + L, 3 + L, 3, L]);
      expect(Array.from(s.slice(0, 8)), at).toEqual([1, N, 100 + L, 0, 1, L, 100, N]);
      expect(Array.from(new Uint32Array(gotHist).slice(0, 1 + ext.length)), at).toEqual([ext.length, ...ext]);
      const wantTokens = [bonus, ...proposal, ...Array(N - 1 - proposal.length).fill(bonus)];
      const wantParents = [-1, ...proposal.map((_, i) => i), ...Array(N - 1 - proposal.length).fill(-1)];
      expect(Array.from(new Uint32Array(gotTokens).slice(0, N)), at).toEqual(wantTokens);
      expect(Array.from(new Float32Array(gotParents).slice(0, N)), at).toEqual(wantParents);
      for (const b of made.splice(0)) b.destroy();
    }
  });
});

describe('chained prompt lookup on the GPU', () => {
  const m = repeatingModel(makeModel(MODEL_SPECS[1], 202, 0));
  const PROMPT = [72, 101, 108, 108, 111, 32, 108, 108, 72, 101, 108, 108];
  const N = 40;

  let made: GpuTreeVerifier | undefined;
  const target = async () => (made ??= await gpuVerifierOf(m, { maxNodes: 8 }, cleanup));

  it('emits plain greedy decoding\'s tokens and accepts what the host\'s proposals accept, one readback per run', async () => {
    const verifier = await target();
    const want = plainGreedy(m, PROMPT, N);
    const eos = want[21];
    for (const K of [3, 7]) {
      const shape = parseTreeSpec(`chain:${K}`);
      const run = async (chainSteps: number, maxTokens: number, stop?: number) => {
        const before = verifier.mapCalls;
        const r = await speculativeGenerate(verifier, new LookupChainDraft({ length: K, minN: 1, maxN: 4 }), PROMPT, {
          maxTokens, shape, maxNodes: K, ...(stop !== undefined && { eos: stop }), ...(chainSteps > 0 && { chainSteps }),
        });
        return { ...r, maps: verifier.mapCalls - before };
      };
      const host = await run(0, N);
      expect(host.tokens, `chain:${K}`).toEqual(want);
      expect(host.meanAccepted, `chain:${K}`).toBeGreaterThan(1.3);
      for (const R of [1, 3, 4]) {
        const r = await run(R, N);
        const at = `chain:${K} R=${R}`;
        expect(r.tokens, at).toEqual(want);
        // The same proposals verify the same trees: the same tokens per step (the last step may differ, where
        // the host's tree stops at the tokens left and the GPU's chain does not).
        expect(r.acceptedPerStep.slice(0, -1), at).toEqual(host.acceptedPerStep.slice(0, r.acceptedPerStep.length - 1));
        expect(r.maps, at).toBeLessThanOrEqual(Math.ceil(r.steps / R) + 1);
        if (R > 1) expect(r.maps, at).toBeLessThan(host.maps);
        const e = await run(R, N, eos);
        expect(e.tokens, `${at} eos`).toEqual(want.slice(0, want.indexOf(eos) + 1));
        expect(e.stopReason).toBe('eos');
        const short = await run(R, 17);
        expect(short.tokens, `${at} max 17`).toEqual(want.slice(0, 17));
      }
    }
  }, 180_000);
});
