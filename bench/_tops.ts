import { estimatePlan } from '../backends/wgsl/fusion-model.ts';
import { candidateSchedules } from '../backends/wgsl/chunk-schedules.ts';
import { adapterModel } from '../src/runtime/adapter-model.ts';
import { H200, rowProgram } from '../bench/model-fit.ts';
import { choosePlan } from '../src/runtime/plan-choice.ts';
const m = adapterModel(H200);
const vs = (process.argv[2] ?? 'llama_linearized,flash,hedgehog,performer,elu_dwconv,retnet,gla,cosformer').split(',');
const show = (s: any) => `${s.chunk}x${s.cols}x${s.threads}${s.segment ? 's' + s.segment : ''}${s.block ? 'b' + s.block : ''}`;
for (const b of [4, 8]) for (const v of vs) {
  const rp = rowProgram({ variant: v, b, h: 16, t: 4096, d: 64 } as any);
  if (!rp) { console.log(v, 'no program'); continue; }
  const { p, sizes } = rp;
  const pick = choosePlan(H200, p, sizes, {}, { b, t: 4096 });
  for (const fuse of [false, true]) {
    const c = candidateSchedules(H200.limits as any, p, sizes, !fuse);
    const est = c.map((s) => ({ s, e: estimatePlan(m, p, sizes, s, fuse, b, 4096)?.us })).filter((x) => x.e !== undefined).sort((a, b) => a.e! - b.e!);
    console.log(`b${b} ${v} ${fuse ? 'fused  ' : 'unfused'}: ` + est.slice(0, 6).map((x) => `${show(x.s)} ${(x.e! / 1e3).toFixed(3)}`).join(', '));
  }
  console.log(`   pick: ${pick.fuse ? 'fused' : 'unfused'} ${show(pick.schedule)} ${pick.prologue?.size ? 'prologue' : ''}`);
}
