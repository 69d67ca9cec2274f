enable subgroups;
// register-resident state: lane l of a subgroup holds S[4l..4l+3][its subgroup's columns] and z[4l..4l+3]
// elu_dwconv, D 128, chunk 16, 32 columns a workgroup, 256 invocations, subgroups of 32, 4 columns a subgroup
struct Dims { b: u32, t: u32, pos0: u32, pad: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> in_q: array<f32>;
@group(0) @binding(2) var<storage, read> in_k: array<f32>;
@group(0) @binding(3) var<storage, read> in_v: array<f32>;
@group(0) @binding(4) var<storage, read> param_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_o: array<f32>;
var<workgroup> phi: array<vec4<f32>, 512>;
var<workgroup> psi: array<vec4<f32>, 528>;
var<workgroup> vs: array<vec4<f32>, 152>;
var<workgroup> A: array<vec4<f32>, 80>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let s = wid.x / 4u;
  let tile = wid.x % 4u;
  let b = wid.y;
  let hh = s % 16u;
  let sg = lid / 32u;
  let cw0 = sg * 4u;            // the subgroup's first column in the tile
  let lr = lane / 4u;            // after the reduction: the lane's row in a block
  let lc = lane % 4u;            // and its column
  let col = tile * 32u + cw0 + lc;  // its column of the head
  let tap0 = param_w[(hh * 128u + col) * 4u + 0u];
  let tap1 = param_w[(hh * 128u + col) * 4u + 1u];
  let tap2 = param_w[(hh * 128u + col) * 4u + 2u];
  let tap3 = param_w[(hh * 128u + col) * 4u + 3u];
  var S0: vec4<f32> = vec4<f32>(0.0);
  var S1: vec4<f32> = vec4<f32>(0.0);
  var S2: vec4<f32> = vec4<f32>(0.0);
  var S3: vec4<f32> = vec4<f32>(0.0);
  var Z: vec4<f32> = vec4<f32>(0.0);
  let nchunks = (dims.t + 15u) / 16u;
  var pf_q0: vec4<f32>;
  var pf_k0: vec4<f32>;
  var pf_q1: vec4<f32>;
  var pf_k1: vec4<f32>;
  var pf_v0: vec4<f32>;
  if (nchunks > 0u) {
    { let x = lid + 0u; let row = x / 32u; let f4 = x % 32u; let ok = row < min(16u, dims.t - (0u)) && x < 512u;
      let base = ((b * dims.t + select(0u, 0u + row, ok)) * 16u + hh) * 128u + f4 * 4u;
      pf_q0 = select(vec4<f32>(0.0), vec4<f32>(in_q[base], in_q[base + 1u], in_q[base + 2u], in_q[base + 3u]), ok);
      pf_k0 = select(vec4<f32>(0.0), vec4<f32>(in_k[base], in_k[base + 1u], in_k[base + 2u], in_k[base + 3u]), ok); }
    { let x = lid + 256u; let row = x / 32u; let f4 = x % 32u; let ok = row < min(16u, dims.t - (0u)) && x < 512u;
      let base = ((b * dims.t + select(0u, 0u + row, ok)) * 16u + hh) * 128u + f4 * 4u;
      pf_q1 = select(vec4<f32>(0.0), vec4<f32>(in_q[base], in_q[base + 1u], in_q[base + 2u], in_q[base + 3u]), ok);
      pf_k1 = select(vec4<f32>(0.0), vec4<f32>(in_k[base], in_k[base + 1u], in_k[base + 2u], in_k[base + 3u]), ok); }
    { let x = lid + 0u; let row = i32(x / 8u) - 3; let c4 = x % 8u; let tpos = i32(0u) + row;
      let ok = tpos >= 0 && row < i32(min(16u, dims.t - (0u))) && x < 152u;
      let base = ((b * dims.t + select(0u, u32(tpos), ok)) * 16u + hh) * 128u + tile * 32u + c4 * 4u;
      pf_v0 = select(vec4<f32>(0.0), vec4<f32>(in_v[base], in_v[base + 1u], in_v[base + 2u], in_v[base + 3u]), ok); }
  }
  for (var c: u32 = 0u; c < nchunks; c++) {
    let c0 = c * 16u;
    let n = min(16u, dims.t - c0);
    { let x = lid + 0u; if (x < 512u) { let row = x / 32u; let f4 = x % 32u;
      let q = pf_q0; let k = pf_k0; let ok = row < n;
      let fq = select(exp(q) - 1.0, q, q > vec4<f32>(0.0)) + 1.0;
      let fk = select(exp(k) - 1.0, k, k > vec4<f32>(0.0)) + 1.0;
      phi[row * 32u + f4] = select(vec4<f32>(0.0), fq, ok);
      psi[row * 33u + f4] = select(vec4<f32>(0.0), fk, ok); } }
    { let x = lid + 256u; if (x < 512u) { let row = x / 32u; let f4 = x % 32u;
      let q = pf_q1; let k = pf_k1; let ok = row < n;
      let fq = select(exp(q) - 1.0, q, q > vec4<f32>(0.0)) + 1.0;
      let fk = select(exp(k) - 1.0, k, k > vec4<f32>(0.0)) + 1.0;
      phi[row * 32u + f4] = select(vec4<f32>(0.0), fq, ok);
      psi[row * 33u + f4] = select(vec4<f32>(0.0), fk, ok); } }
    { let x = lid + 0u; if (x < 152u) { vs[x] = pf_v0; } }
    workgroupBarrier();
    if (c + 1u < nchunks) {
    { let x = lid + 0u; let row = x / 32u; let f4 = x % 32u; let ok = row < min(16u, dims.t - ((c + 1u) * 16u)) && x < 512u;
      let base = ((b * dims.t + select(0u, (c + 1u) * 16u + row, ok)) * 16u + hh) * 128u + f4 * 4u;
      pf_q0 = select(vec4<f32>(0.0), vec4<f32>(in_q[base], in_q[base + 1u], in_q[base + 2u], in_q[base + 3u]), ok);
      pf_k0 = select(vec4<f32>(0.0), vec4<f32>(in_k[base], in_k[base + 1u], in_k[base + 2u], in_k[base + 3u]), ok); }
    { let x = lid + 256u; let row = x / 32u; let f4 = x % 32u; let ok = row < min(16u, dims.t - ((c + 1u) * 16u)) && x < 512u;
      let base = ((b * dims.t + select(0u, (c + 1u) * 16u + row, ok)) * 16u + hh) * 128u + f4 * 4u;
      pf_q1 = select(vec4<f32>(0.0), vec4<f32>(in_q[base], in_q[base + 1u], in_q[base + 2u], in_q[base + 3u]), ok);
      pf_k1 = select(vec4<f32>(0.0), vec4<f32>(in_k[base], in_k[base + 1u], in_k[base + 2u], in_k[base + 3u]), ok); }
    { let x = lid + 0u; let row = i32(x / 8u) - 3; let c4 = x % 8u; let tpos = i32((c + 1u) * 16u) + row;
      let ok = tpos >= 0 && row < i32(min(16u, dims.t - ((c + 1u) * 16u))) && x < 152u;
      let base = ((b * dims.t + select(0u, u32(tpos), ok)) * 16u + hh) * 128u + tile * 32u + c4 * 4u;
      pf_v0 = select(vec4<f32>(0.0), vec4<f32>(in_v[base], in_v[base + 1u], in_v[base + 2u], in_v[base + 3u]), ok); }
    }
    // scores: A[i][j] = φ_i·ψ_j for j ≤ i, 1 an invocation
    for (var x: u32 = lid; x < 256u; x += 256u) {
      let i = x / 16u;
      let j = x % 16u;
      var d: f32 = 0.0;
      for (var f4: u32 = 0u; f4 < 32u; f4++) { d = d + dot(phi[i * 32u + f4], psi[j * 33u + f4]); }
      A[i * 5u + j / 4u][j % 4u] = select(0.0, d, j <= i && i < n);
    }
    workgroupBarrier();
    for (var blk: u32 = 0u; blk < 2u; blk++) {
      let p0 = phi[(blk * 8u + 0u) * 32u + lane];
      var a0: vec4<f32> = vec4<f32>(dot(p0, S0), dot(p0, S1), dot(p0, S2), dot(p0, S3));
      var z0: f32 = dot(p0, Z);
      let p1 = phi[(blk * 8u + 1u) * 32u + lane];
      var a1: vec4<f32> = vec4<f32>(dot(p1, S0), dot(p1, S1), dot(p1, S2), dot(p1, S3));
      var z1: f32 = dot(p1, Z);
      let p2 = phi[(blk * 8u + 2u) * 32u + lane];
      var a2: vec4<f32> = vec4<f32>(dot(p2, S0), dot(p2, S1), dot(p2, S2), dot(p2, S3));
      var z2: f32 = dot(p2, Z);
      let p3 = phi[(blk * 8u + 3u) * 32u + lane];
      var a3: vec4<f32> = vec4<f32>(dot(p3, S0), dot(p3, S1), dot(p3, S2), dot(p3, S3));
      var z3: f32 = dot(p3, Z);
      let p4 = phi[(blk * 8u + 4u) * 32u + lane];
      var a4: vec4<f32> = vec4<f32>(dot(p4, S0), dot(p4, S1), dot(p4, S2), dot(p4, S3));
      var z4: f32 = dot(p4, Z);
      let p5 = phi[(blk * 8u + 5u) * 32u + lane];
      var a5: vec4<f32> = vec4<f32>(dot(p5, S0), dot(p5, S1), dot(p5, S2), dot(p5, S3));
      var z5: f32 = dot(p5, Z);
      let p6 = phi[(blk * 8u + 6u) * 32u + lane];
      var a6: vec4<f32> = vec4<f32>(dot(p6, S0), dot(p6, S1), dot(p6, S2), dot(p6, S3));
      var z6: f32 = dot(p6, Z);
      let p7 = phi[(blk * 8u + 7u) * 32u + lane];
      var a7: vec4<f32> = vec4<f32>(dot(p7, S0), dot(p7, S1), dot(p7, S2), dot(p7, S3));
      var z7: f32 = dot(p7, Z);
      let h0 = (lane & 16u) != 0u;
      let a0_0 = select(a0, a4, h0) + subgroupShuffleXor(select(a4, a0, h0), 16u);
      let z0_0 = select(z0, z4, h0) + subgroupShuffleXor(select(z4, z0, h0), 16u);
      let a0_1 = select(a1, a5, h0) + subgroupShuffleXor(select(a5, a1, h0), 16u);
      let z0_1 = select(z1, z5, h0) + subgroupShuffleXor(select(z5, z1, h0), 16u);
      let a0_2 = select(a2, a6, h0) + subgroupShuffleXor(select(a6, a2, h0), 16u);
      let z0_2 = select(z2, z6, h0) + subgroupShuffleXor(select(z6, z2, h0), 16u);
      let a0_3 = select(a3, a7, h0) + subgroupShuffleXor(select(a7, a3, h0), 16u);
      let z0_3 = select(z3, z7, h0) + subgroupShuffleXor(select(z7, z3, h0), 16u);
      let h1 = (lane & 8u) != 0u;
      let a1_0 = select(a0_0, a0_2, h1) + subgroupShuffleXor(select(a0_2, a0_0, h1), 8u);
      let z1_0 = select(z0_0, z0_2, h1) + subgroupShuffleXor(select(z0_2, z0_0, h1), 8u);
      let a1_1 = select(a0_1, a0_3, h1) + subgroupShuffleXor(select(a0_3, a0_1, h1), 8u);
      let z1_1 = select(z0_1, z0_3, h1) + subgroupShuffleXor(select(z0_3, z0_1, h1), 8u);
      let h2 = (lane & 4u) != 0u;
      let a2_0 = select(a1_0, a1_1, h2) + subgroupShuffleXor(select(a1_1, a1_0, h2), 4u);
      let z2_0 = select(z1_0, z1_1, h2) + subgroupShuffleXor(select(z1_1, z1_0, h2), 4u);
      let a2_0_2 = a2_0 + subgroupShuffleXor(a2_0, 2u);
      let z2_0_2 = z2_0 + subgroupShuffleXor(z2_0, 2u);
      let a2_0_2_1 = a2_0_2 + subgroupShuffleXor(a2_0_2, 1u);
      let z2_0_2_1 = z2_0_2 + subgroupShuffleXor(z2_0_2, 1u);
      let phS = a2_0_2_1[lc];
      let phz = z2_0_2_1;
      let i = blk * 8u + lr;
      var num: f32 = phS;
      var den: f32 = phz;
      for (var j4: u32 = 0u; j4 < 4u; j4++) {
        let a = A[i * 5u + j4];
        let v0 = vs[(j4 * 4u + 3u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u];
        let v1 = vs[(j4 * 4u + 4u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u];
        let v2 = vs[(j4 * 4u + 5u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u];
        let v3 = vs[(j4 * 4u + 6u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u];
        num = num + a.x * v0 + a.y * v1 + a.z * v2 + a.w * v3;
        den = den + a.x + a.y + a.z + a.w;
      }
      var cv: f32 = 0.0;
      if (c0 + i >= 0u) { cv = cv + tap0 * vs[(i + 3u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u]; }
      if (c0 + i >= 1u) { cv = cv + tap1 * vs[(i + 2u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u]; }
      if (c0 + i >= 2u) { cv = cv + tap2 * vs[(i + 1u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u]; }
      if (c0 + i >= 3u) { cv = cv + tap3 * vs[(i + 0u) * 8u + (cw0 + lc) / 4u][(cw0 + lc) % 4u]; }
      if (i < n) {
        out_o[(b * dims.t + c0 + i) * 2048u + hh * 128u + col] = cv + num / (den + 0.000001);
      }
    }
    for (var j: u32 = 0u; j < n; j++) {
      let ps = psi[j * 33u + lane];
      let vv = vs[(j + 3u) * 8u + sg];
      S0 = S0 + ps * vv.x;
      S1 = S1 + ps * vv.y;
      S2 = S2 + ps * vv.z;
      S3 = S3 + ps * vv.w;
      Z = Z + ps;
    }
    workgroupBarrier();
  }
}
