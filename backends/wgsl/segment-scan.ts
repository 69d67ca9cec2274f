// The middle launch of a segmented chunk plan (chunked.ts, ChunkSchedule.segment): an exclusive prefix sum
// over segments of every segment's own state, in place, so that segment g then starts from
//   S_in(g) = Σ_{g' < g} S_own(g')            (and likewise z)
// One invocation per state element of one (batch, head slice); it walks the segments in order.
import { segBuffer } from './chunked.ts';
import { bindingDecls, DIMS_WGSL, FLAT_INDEX, grid, wgslName, type Kernel } from './plan.ts';

const WG = 64;

export function segmentScanKernel(name: string, states: readonly { k: number; F: number }[], NS: number, NR: number, chunk: number, segment: number): Kernel {
  const per = states.reduce((n, q) => n + q.F * NR + q.F, 0);
  const bindings = states.flatMap((q) => [{ buffer: segBuffer('S', q.k), write: true }, { buffer: segBuffer('z', q.k), write: true }]);
  const branches: string[] = [];
  let base = 0;
  for (const q of states) {
    for (const [what, n] of [['S', q.F * NR], ['z', q.F]] as const) {
      const buf = wgslName(segBuffer(what, q.k));
      branches.push(`  if (e >= ${base}u && e < ${base + n}u) { // ${what}${q.k}
    let x = e - ${base}u;
    var run: f32 = 0.0;
    for (var g: u32 = 0u; g < nseg; g++) {
      let at = ((b * ${NS}u + s) * nseg + g) * ${n}u + x;
      let own = ${buf}[at];
      ${buf}[at] = run;
      run = run + own;
    }
  }`);
      base += n;
    }
  }
  const code = `// exclusive scan over segments of ${name}'s segment states (chunk ${chunk}, ${segment} chunks per segment)
${DIMS_WGSL}
${bindingDecls(bindings)}
const WG = ${WG}u;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
  ${FLAT_INDEX}
  if (flat >= dims.b * ${NS * per}u) { return; }
  let nseg = (((dims.t + ${chunk - 1}u) / ${chunk}u) + ${segment - 1}u) / ${segment}u;
  let e = flat % ${per}u;
  let s = (flat / ${per}u) % ${NS}u;
  let b = flat / ${NS * per}u;
${branches.join('\n')}
}
`;
  return { label: `${name}.segment-scan`, code, bindings, workgroups: (b) => grid(b * NS * per, WG) };
}
