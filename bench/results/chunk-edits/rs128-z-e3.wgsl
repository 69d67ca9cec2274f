enable subgroups;
// chunked kernel elu_dwconv.chunked for elu_dwconv: terms lin (prefix), conv (toeplitz)
// chunk 16, 64 value columns per workgroup, halo 3, head axes [h], column axes [e]
// state in subgroup lanes' registers: subgroups of 32, 4 column(s) a subgroup
struct Dims { b: u32, t: u32, pos0: u32, pad: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> in_q: array<f32>;
@group(0) @binding(2) var<storage, read> in_k: array<f32>;
@group(0) @binding(3) var<storage, read> in_v: array<f32>;
@group(0) @binding(4) var<storage, read> param_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_o: array<f32>;
const WG = 512u;
var<workgroup> phi0: array<vec4<f32>, 512>; // [row][f / 4], four features a vec4
var<workgroup> psi0: array<vec4<f32>, 528>; // [row][f / 4], rows padded to 33 vec4
var<workgroup> phiS0: array<f32, 1088>; // [row][column], rows padded to 68: φ·S_prev, reduced from the lanes' registers
var<workgroup> phiZ0: array<f32, 16>; // [row]: φ·z_prev, likewise
var<workgroup> qf11: array<f32, 16>;
var<workgroup> kf12: array<f32, 19>;
var<workgroup> vs: array<vec4<f32>, 304>; // values of rows c0-3 … c0+15, this workgroup's columns, four a vec4
var<workgroup> zsh: array<vec4<f32>, 32>; // z_prev, subgroup 0's registers
var<workgroup> A1: array<f32, 256>;

@compute @workgroup_size(512)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let s = wid.x / 2u;
  let tile = wid.x % 2u;
  let b = wid.y;
  let hx_h = (s / 1u) % 16u;
  let sgi = lid / 32u; // this invocation's subgroup (lanes lane = lid % 32)
  let cw0 = sgi * 4u; // its 4 column(s) of the tile
  // the prefix terms' state in registers: S[FL·lane … FL·lane + FL − 1][cw0 + c], z[FL·lane … FL·lane + FL − 1], FL = F / 32
  var rS0_0: vec4<f32> = vec4<f32>(0.0);
  var rS0_1: vec4<f32> = vec4<f32>(0.0);
  var rS0_2: vec4<f32> = vec4<f32>(0.0);
  var rS0_3: vec4<f32> = vec4<f32>(0.0);
  var rz0: vec4<f32> = vec4<f32>(0.0);
  let nchunks = (dims.t + 15u) / 16u;
  if (lid < 32u) { zsh[lid] = vec4<f32>(0.0); }
  // convolution tap weights, once: they depend on the lag and the column only
  let tap_cl = lid % 64u;
  let tc0_e = (min(tile * 64u + tap_cl + 0u, 127u) / 1u) % 128u;
  var tap_conv_0_0: f32 = 0.0;
  {
    let x11 = f32(0u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 128u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_0 = x14;
  }
  var tap_conv_0_1: f32 = 0.0;
  {
    let x11 = f32(1u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 128u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_1 = x14;
  }
  var tap_conv_0_2: f32 = 0.0;
  {
    let x11 = f32(2u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 128u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_2 = x14;
  }
  var tap_conv_0_3: f32 = 0.0;
  {
    let x11 = f32(3u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 128u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_3 = x14;
  }
  // prefetched staging: 12 global loads per invocation held in registers, issued a chunk ahead
  var pf: f32 = 0.0;
  var pf_1: f32 = 0.0;
  var pf_2: f32 = 0.0;
  var pf_3: f32 = 0.0;
  var pf_4: f32 = 0.0;
  var pf_5: f32 = 0.0;
  var pf_6: f32 = 0.0;
  var pf_7: f32 = 0.0;
  var pf_8: f32 = 0.0;
  var pf_9: f32 = 0.0;
  var pf_10: f32 = 0.0;
  var pf_11: f32 = 0.0;
  if (0u < nchunks) {
    let c0_next = (0u) * 16u;
    let n_next = min(16u, dims.t - c0_next);
    let x = (lid + 0u);
    let row = i32(x / 32u);
    let ok = row < i32(n_next);
    let tpos = select(0u, u32(i32(c0_next) + row), ok);
    let x_1 = (lid + 0u);
    let row_1 = i32(x_1 / 32u);
    let ok_1 = row_1 < i32(n_next);
    let tpos_1 = select(0u, u32(i32(c0_next) + row_1), ok_1);
    let x_2 = min((lid + 0u), 303u);
    let row_2 = i32(x_2 / 16u) - 3;
    let tposi = i32(c0_next) + row_2;
    let ok_2 = tposi >= 0 && u32(tposi) < dims.t;
    let tpos_2 = select(0u, u32(tposi), ok_2);
    pf = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 0u)];
    pf_1 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 1u)];
    pf_2 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 2u)];
    pf_3 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 3u)];
    pf_4 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 0u)];
    pf_5 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 1u)];
    pf_6 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 2u)];
    pf_7 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 3u)];
    if ((lid + 0u) < 304u) {
      pf_8 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 0u), 127u) / 1u) % 128u)];
      pf_9 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 1u), 127u) / 1u) % 128u)];
      pf_10 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 2u), 127u) / 1u) % 128u)];
      pf_11 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 3u), 127u) / 1u) % 128u)];
    }
  }
  for (var c: u32 = 0u; c < nchunks; c++) {
    let c0 = c * 16u;
    let n = min(16u, dims.t - c0);
    {
      let x = (lid + 0u);
      let row = i32(x / 32u);
      let ok = row < i32(n);
      let tpos = select(0u, u32(i32(c0) + row), ok);
      var val: vec4<f32> = vec4<f32>(0.0);
      {
        {
          let x0 = pf; // %0 input
          let x4 = select(exp(x0) - 1.0, x0, x0 > 0.0); // %4 unary
          let x5 = 1.0; // %5 const
          let x6 = x4 + x5; // %6 binary
          let x9 = x6; // %9 at
          val.x = select(0.0, x9, ok);
        }
        {
          let x0 = pf_1; // %0 input
          let x4 = select(exp(x0) - 1.0, x0, x0 > 0.0); // %4 unary
          let x5 = 1.0; // %5 const
          let x6 = x4 + x5; // %6 binary
          let x9 = x6; // %9 at
          val.y = select(0.0, x9, ok);
        }
        {
          let x0 = pf_2; // %0 input
          let x4 = select(exp(x0) - 1.0, x0, x0 > 0.0); // %4 unary
          let x5 = 1.0; // %5 const
          let x6 = x4 + x5; // %6 binary
          let x9 = x6; // %9 at
          val.z = select(0.0, x9, ok);
        }
        {
          let x0 = pf_3; // %0 input
          let x4 = select(exp(x0) - 1.0, x0, x0 > 0.0); // %4 unary
          let x5 = 1.0; // %5 const
          let x6 = x4 + x5; // %6 binary
          let x9 = x6; // %9 at
          val.w = select(0.0, x9, ok);
        }
      }
      let x_1 = (lid + 0u);
      let row_1 = i32(x_1 / 32u);
      let ok_1 = row_1 < i32(n);
      let tpos_1 = select(0u, u32(i32(c0) + row_1), ok_1);
      var val_1: vec4<f32> = vec4<f32>(0.0);
      {
        {
          let x1 = pf_4; // %1 input
          let x7 = select(exp(x1) - 1.0, x1, x1 > 0.0); // %7 unary
          let x5 = 1.0; // %5 const
          let x8 = x7 + x5; // %8 binary
          let x10 = x8; // %10 at
          val_1.x = select(0.0, x10, ok_1);
        }
        {
          let x1 = pf_5; // %1 input
          let x7 = select(exp(x1) - 1.0, x1, x1 > 0.0); // %7 unary
          let x5 = 1.0; // %5 const
          let x8 = x7 + x5; // %8 binary
          let x10 = x8; // %10 at
          val_1.y = select(0.0, x10, ok_1);
        }
        {
          let x1 = pf_6; // %1 input
          let x7 = select(exp(x1) - 1.0, x1, x1 > 0.0); // %7 unary
          let x5 = 1.0; // %5 const
          let x8 = x7 + x5; // %8 binary
          let x10 = x8; // %10 at
          val_1.z = select(0.0, x10, ok_1);
        }
        {
          let x1 = pf_7; // %1 input
          let x7 = select(exp(x1) - 1.0, x1, x1 > 0.0); // %7 unary
          let x5 = 1.0; // %5 const
          let x8 = x7 + x5; // %8 binary
          let x10 = x8; // %10 at
          val_1.w = select(0.0, x10, ok_1);
        }
      }
      let x_2 = min((lid + 0u), 15u);
      let row_2 = i32(x_2 / 1u) - 0;
      let tposi = i32(c0) + row_2;
      let ok_2 = tposi >= 0 && u32(tposi) < dims.t;
      let tpos_2 = select(0u, u32(tposi), ok_2);
      var val_2: f32 = 0.0;
      if ((lid + 0u) < 16u) {
        let x11 = f32(tpos_2); // %11 position
        val_2 = select(0.0, x11, ok_2);
      }
      let x_3 = min((lid + 0u), 18u);
      let row_3 = i32(x_3 / 1u) - 3;
      let tposi_1 = i32(c0) + row_3;
      let ok_3 = tposi_1 >= 0 && u32(tposi_1) < dims.t;
      let tpos_3 = select(0u, u32(tposi_1), ok_3);
      var val_3: f32 = 0.0;
      if ((lid + 0u) < 19u) {
        let x12 = f32(tpos_3); // %12 position
        val_3 = select(0.0, x12, ok_3);
      }
      let x_4 = min((lid + 0u), 303u);
      let row_4 = i32(x_4 / 16u) - 3;
      let tposi_2 = i32(c0) + row_4;
      let ok_4 = tposi_2 >= 0 && u32(tposi_2) < dims.t;
      let tpos_4 = select(0u, u32(tposi_2), ok_4);
      var val_4: vec4<f32> = vec4<f32>(0.0);
      if ((lid + 0u) < 304u) {
        {
          let x2 = pf_8; // %2 input
          val_4.x = select(0.0, x2, (ok_4 && (tile * 64u + (x_4 % 16u) * 4u + 0u) < 128u));
        }
        {
          let x2 = pf_9; // %2 input
          val_4.y = select(0.0, x2, (ok_4 && (tile * 64u + (x_4 % 16u) * 4u + 1u) < 128u));
        }
        {
          let x2 = pf_10; // %2 input
          val_4.z = select(0.0, x2, (ok_4 && (tile * 64u + (x_4 % 16u) * 4u + 2u) < 128u));
        }
        {
          let x2 = pf_11; // %2 input
          val_4.w = select(0.0, x2, (ok_4 && (tile * 64u + (x_4 % 16u) * 4u + 3u) < 128u));
        }
      }
      phi0[x] = val;
      psi0[(x_1 / 32u) * 33u + x_1 % 32u] = val_1;
      if ((lid + 0u) < 16u) { qf11[x_2] = val_2; }
      if ((lid + 0u) < 19u) { kf12[x_3] = val_3; }
      if ((lid + 0u) < 304u) { vs[x_4] = val_4; }
    }
    workgroupBarrier();
    if (c + 1u < nchunks) {
      let c0_next = (c + 1u) * 16u;
      let n_next = min(16u, dims.t - c0_next);
      let x = (lid + 0u);
      let row = i32(x / 32u);
      let ok = row < i32(n_next);
      let tpos = select(0u, u32(i32(c0_next) + row), ok);
      let x_1 = (lid + 0u);
      let row_1 = i32(x_1 / 32u);
      let ok_1 = row_1 < i32(n_next);
      let tpos_1 = select(0u, u32(i32(c0_next) + row_1), ok_1);
      let x_2 = min((lid + 0u), 303u);
      let row_2 = i32(x_2 / 16u) - 3;
      let tposi = i32(c0_next) + row_2;
      let ok_2 = tposi >= 0 && u32(tposi) < dims.t;
      let tpos_2 = select(0u, u32(tposi), ok_2);
      pf = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 0u)];
      pf_1 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 1u)];
      pf_2 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 2u)];
      pf_3 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 3u)];
      pf_4 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 0u)];
      pf_5 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 1u)];
      pf_6 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 2u)];
      pf_7 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 3u)];
      if ((lid + 0u) < 304u) {
        pf_8 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 0u), 127u) / 1u) % 128u)];
        pf_9 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 1u), 127u) / 1u) % 128u)];
        pf_10 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 2u), 127u) / 1u) % 128u)];
        pf_11 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + ((min((tile * 64u + (x_2 % 16u) * 4u + 3u), 127u) / 1u) % 128u)];
      }
    }
    for (var blk: u32 = 0u; blk < 2u; blk++) {
      // term lin: φ·S_prev of rows 8·blk … 8·blk + 7, each lane's 4 feature(s) first
      let p_0 = phi0[(blk * 8u + 0u) * 32u + lane];
      let ps_0 = vec4<f32>(dot(p_0, rS0_0), dot(p_0, rS0_1), dot(p_0, rS0_2), dot(p_0, rS0_3));
      let p_1 = phi0[(blk * 8u + 1u) * 32u + lane];
      let ps_1 = vec4<f32>(dot(p_1, rS0_0), dot(p_1, rS0_1), dot(p_1, rS0_2), dot(p_1, rS0_3));
      let p_2 = phi0[(blk * 8u + 2u) * 32u + lane];
      let ps_2 = vec4<f32>(dot(p_2, rS0_0), dot(p_2, rS0_1), dot(p_2, rS0_2), dot(p_2, rS0_3));
      let p_3 = phi0[(blk * 8u + 3u) * 32u + lane];
      let ps_3 = vec4<f32>(dot(p_3, rS0_0), dot(p_3, rS0_1), dot(p_3, rS0_2), dot(p_3, rS0_3));
      let p_4 = phi0[(blk * 8u + 4u) * 32u + lane];
      let ps_4 = vec4<f32>(dot(p_4, rS0_0), dot(p_4, rS0_1), dot(p_4, rS0_2), dot(p_4, rS0_3));
      let p_5 = phi0[(blk * 8u + 5u) * 32u + lane];
      let ps_5 = vec4<f32>(dot(p_5, rS0_0), dot(p_5, rS0_1), dot(p_5, rS0_2), dot(p_5, rS0_3));
      let p_6 = phi0[(blk * 8u + 6u) * 32u + lane];
      let ps_6 = vec4<f32>(dot(p_6, rS0_0), dot(p_6, rS0_1), dot(p_6, rS0_2), dot(p_6, rS0_3));
      let p_7 = phi0[(blk * 8u + 7u) * 32u + lane];
      let ps_7 = vec4<f32>(dot(p_7, rS0_0), dot(p_7, rS0_1), dot(p_7, rS0_2), dot(p_7, rS0_3));
      let up = (lane & 16u) != 0u;
      let hs = select(ps_0, ps_4, up) + subgroupShuffleXor(select(ps_4, ps_0, up), 16u);
      let hs_1 = select(ps_1, ps_5, up) + subgroupShuffleXor(select(ps_5, ps_1, up), 16u);
      let hs_2 = select(ps_2, ps_6, up) + subgroupShuffleXor(select(ps_6, ps_2, up), 16u);
      let hs_3 = select(ps_3, ps_7, up) + subgroupShuffleXor(select(ps_7, ps_3, up), 16u);
      let up_1 = (lane & 8u) != 0u;
      let hs_4 = select(hs, hs_2, up_1) + subgroupShuffleXor(select(hs_2, hs, up_1), 8u);
      let hs_5 = select(hs_1, hs_3, up_1) + subgroupShuffleXor(select(hs_3, hs_1, up_1), 8u);
      let up_2 = (lane & 4u) != 0u;
      let hs_6 = select(hs_4, hs_5, up_2) + subgroupShuffleXor(select(hs_5, hs_4, up_2), 4u);
      let up_3 = (lane & 2u) != 0u;
      let hs_7 = select(hs_6.xy, hs_6.zw, up_3) + subgroupShuffleXor(select(hs_6.zw, hs_6.xy, up_3), 2u);
      let up_4 = (lane & 1u) != 0u;
      let hs_8 = select(hs_7.x, hs_7.y, up_4) + subgroupShuffleXor(select(hs_7.y, hs_7.x, up_4), 1u);
      let i = blk * 8u + lane / 4u;
      phiS0[i * 68u + cw0 + lane % 4u] = hs_8;
    }
    for (var zr: u32 = 0u; zr < 1u; zr++) {
      // term lin: φ·z_prev of row sgi + 16·zr, this subgroup's
      let zi = sgi + zr * 16u;
      let zrow = min(zi, 15u);
      let pzl = phi0[(zrow) * 32u + lane];
      let zt = subgroupAdd(dot(pzl, zsh[lane]));
      if (zi < 16u && lane == 0u) { phiZ0[zi] = zt; }
    }
    for (var x: u32 = lid; x < 256u; x += WG) {
      let ti = x / 16u;
      let tj = x % 16u;
      var a1_0_0: f32 = 0.0;
      {
        // term lin (prefix): φ_i·ψ_j over the tile
        var d_0_0: f32 = 0.0;
        let jl_0 = u32(clamp(i32(tj + 0u) - 0, 0, 15));
        var dc1_0_0: f32 = 0.0;
        var dc2_0_0: f32 = 0.0;
        var dc3_0_0: f32 = 0.0;
        for (var f4b: u32 = 0u; f4b < 32u; f4b += 4u) {
          {
            let f4 = f4b + 0u;
            let f = f4 * 4u;
            let p_0 = phi0[((ti + 0u)) * 32u + f4];
            let q_0 = psi0[(jl_0) * 33u + f4];
            d_0_0 = d_0_0 + dot(p_0, q_0);
          }
          {
            let f4 = f4b + 1u;
            let f = f4 * 4u;
            let p_0 = phi0[((ti + 0u)) * 32u + f4];
            let q_0 = psi0[(jl_0) * 33u + f4];
            dc1_0_0 = dc1_0_0 + dot(p_0, q_0);
          }
          {
            let f4 = f4b + 2u;
            let f = f4 * 4u;
            let p_0 = phi0[((ti + 0u)) * 32u + f4];
            let q_0 = psi0[(jl_0) * 33u + f4];
            dc2_0_0 = dc2_0_0 + dot(p_0, q_0);
          }
          {
            let f4 = f4b + 3u;
            let f = f4 * 4u;
            let p_0 = phi0[((ti + 0u)) * 32u + f4];
            let q_0 = psi0[(jl_0) * 33u + f4];
            dc3_0_0 = dc3_0_0 + dot(p_0, q_0);
          }
        }
        d_0_0 = d_0_0 + dc1_0_0 + dc2_0_0 + dc3_0_0;
        {
          let il = ti + 0u;
          let jj = tj + 0u;
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          if (il < n && jj >= 0u && jj < 16u && ja_i >= 0 && ((ja <= ia))) { a1_0_0 = a1_0_0 + d_0_0; }
        }
      }
      {
        let il = ti + 0u;
        let jj = tj + 0u;
        if (jj < 16u) {
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          let valid = il < n && ja_i >= 0;
          A1[il * 16u + jj] = a1_0_0;
        }
      }
    }
    workgroupBarrier();
    for (var x: u32 = lid; x < 512u; x += WG) {
      let ti = x / 64u;
      let cl = x % 64u;
      let col = tile * 64u + cl;
      if (col < 128u) {
        let oc_e = (col / 1u) % 128u;
        var o_0: f32 = 0.0;
        var o_1: f32 = 0.0;
        {
          // output group 0: conv
          var num_0: f32 = 0.0;
          var den_0: f32 = 0.0;
          var num_1: f32 = 0.0;
          var den_1: f32 = 0.0;
          {
            // hoisted taps of conv: weights computed before the chunk loop
            let il = ti + 0u;
            let ia = c0 + il;
            if (il < n && i32(ia) - 0 >= 0 && i32(ia) - 0 < i32(dims.t) && ((u32(i32(ia) - 0) <= ia && (i32(ia) - i32(u32(i32(ia) - 0))) < 4))) {
              num_0 = num_0 + tap_conv_0_0 * vs[((u32(i32(il) - 0 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 0 + 3)) * 64u + cl) % 4u];
            }
            if (il < n && i32(ia) - 1 >= 0 && i32(ia) - 1 < i32(dims.t) && ((u32(i32(ia) - 1) <= ia && (i32(ia) - i32(u32(i32(ia) - 1))) < 4))) {
              num_0 = num_0 + tap_conv_0_1 * vs[((u32(i32(il) - 1 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 1 + 3)) * 64u + cl) % 4u];
            }
            if (il < n && i32(ia) - 2 >= 0 && i32(ia) - 2 < i32(dims.t) && ((u32(i32(ia) - 2) <= ia && (i32(ia) - i32(u32(i32(ia) - 2))) < 4))) {
              num_0 = num_0 + tap_conv_0_2 * vs[((u32(i32(il) - 2 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 2 + 3)) * 64u + cl) % 4u];
            }
            if (il < n && i32(ia) - 3 >= 0 && i32(ia) - 3 < i32(dims.t) && ((u32(i32(ia) - 3) <= ia && (i32(ia) - i32(u32(i32(ia) - 3))) < 4))) {
              num_0 = num_0 + tap_conv_0_3 * vs[((u32(i32(il) - 3 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 3 + 3)) * 64u + cl) % 4u];
            }
          }
          {
            // hoisted taps of conv: weights computed before the chunk loop
            let il = ti + 8u;
            let ia = c0 + il;
            if (il < n && i32(ia) - 0 >= 0 && i32(ia) - 0 < i32(dims.t) && ((u32(i32(ia) - 0) <= ia && (i32(ia) - i32(u32(i32(ia) - 0))) < 4))) {
              num_1 = num_1 + tap_conv_0_0 * vs[((u32(i32(il) - 0 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 0 + 3)) * 64u + cl) % 4u];
            }
            if (il < n && i32(ia) - 1 >= 0 && i32(ia) - 1 < i32(dims.t) && ((u32(i32(ia) - 1) <= ia && (i32(ia) - i32(u32(i32(ia) - 1))) < 4))) {
              num_1 = num_1 + tap_conv_0_1 * vs[((u32(i32(il) - 1 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 1 + 3)) * 64u + cl) % 4u];
            }
            if (il < n && i32(ia) - 2 >= 0 && i32(ia) - 2 < i32(dims.t) && ((u32(i32(ia) - 2) <= ia && (i32(ia) - i32(u32(i32(ia) - 2))) < 4))) {
              num_1 = num_1 + tap_conv_0_2 * vs[((u32(i32(il) - 2 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 2 + 3)) * 64u + cl) % 4u];
            }
            if (il < n && i32(ia) - 3 >= 0 && i32(ia) - 3 < i32(dims.t) && ((u32(i32(ia) - 3) <= ia && (i32(ia) - i32(u32(i32(ia) - 3))) < 4))) {
              num_1 = num_1 + tap_conv_0_3 * vs[((u32(i32(il) - 3 + 3)) * 64u + cl) / 4u][((u32(i32(il) - 3 + 3)) * 64u + cl) % 4u];
            }
          }
          {
            let il = ti + 0u;
            let ia = c0 + il;
            if (il < n) { o_0 = o_0 + num_0; }
          }
          {
            let il = ti + 8u;
            let ia = c0 + il;
            if (il < n) { o_1 = o_1 + num_1; }
          }
        }
        {
          // output group 1: normalize(lin)
          var num_0: f32 = 0.0;
          var den_0: f32 = phiZ0[ti + 0u];
          var num_1: f32 = 0.0;
          var den_1: f32 = phiZ0[ti + 8u];
          for (var jj: u32 = 0u; jj < 16u; jj++) {
            let vv = vs[((jj + 3u) * 64u + cl) / 4u][((jj + 3u) * 64u + cl) % 4u];
            let av = A1[(ti + 0u) * 16u + jj];
            num_0 = num_0 + av * vv;
            den_0 = den_0 + av;
            let av_1 = A1[(ti + 8u) * 16u + jj];
            num_1 = num_1 + av_1 * vv;
            den_1 = den_1 + av_1;
          }
          num_0 = num_0 + phiS0[(ti + 0u) * 68u + cl];
          num_1 = num_1 + phiS0[(ti + 8u) * 68u + cl];
          {
            let il = ti + 0u;
            let ia = c0 + il;
            if (il < n) { o_0 = o_0 + num_0 / (den_0 + 0.000001); }
          }
          {
            let il = ti + 8u;
            let ia = c0 + il;
            if (il < n) { o_1 = o_1 + num_1 / (den_1 + 0.000001); }
          }
        }
        {
          let ia = c0 + ti + 0u;
          if (ti + 0u < n) { out_o[(b * dims.t + ia) * 2048u + (hx_h) * 128u + oc_e] = o_0; }
        }
        {
          let ia = c0 + ti + 8u;
          if (ti + 8u < n) { out_o[(b * dims.t + ia) * 2048u + (hx_h) * 128u + oc_e] = o_1; }
        }
      }
    }
    {
      // fold the chunk into term lin's registers
      for (var j: u32 = 0u; j < 16u; j++) {
        let ps = psi0[(j) * 33u + lane];
        let vv = vs[(j + 3u) * 16u + sgi];
        rS0_0 = rS0_0 + ps * vv.x;
        rS0_1 = rS0_1 + ps * vv.y;
        rS0_2 = rS0_2 + ps * vv.z;
        rS0_3 = rS0_3 + ps * vv.w;
      }
      if (sgi == 0u) {
        for (var j: u32 = 0u; j < 16u; j++) { rz0 = rz0 + psi0[(j) * 33u + lane]; }
        zsh[lane] = rz0;
      }
    }
    workgroupBarrier();
  }
}

