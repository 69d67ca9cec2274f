// chunked kernel elu_dwconv.chunked for elu_dwconv: terms lin (prefix), conv (toeplitz)
// chunk 32, 32 value columns per workgroup, halo 3, head axes [h], column axes [e]
struct Dims { b: u32, t: u32, pos0: u32, pad: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> in_q: array<f32>;
@group(0) @binding(2) var<storage, read> in_k: array<f32>;
@group(0) @binding(3) var<storage, read> in_v: array<f32>;
@group(0) @binding(4) var<storage, read> param_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_o: array<f32>;
const WG = 512u;
var<workgroup> phi0: array<vec4<f32>, 512>; // [row][f / 4], four features a vec4
var<workgroup> psi0: array<vec4<f32>, 544>; // [row][f / 4], rows padded to 17 vec4
var<workgroup> S0: array<f32, 2048>;
var<workgroup> z0: array<vec4<f32>, 16>; // [f / 4]
var<workgroup> qf11: array<f32, 32>;
var<workgroup> kf12: array<f32, 35>;
var<workgroup> vs: array<f32, 1120>; // values of rows c0-3 … c0+31, this workgroup's columns
var<workgroup> phiSw: array<vec4<f32>, 256>; // [ti][cl]: φ·S_prev of rows ti + m·8, by the fold half in the score phase
var<workgroup> phiZw: array<f32, 32>; // [row]: φ·z_prev
var<workgroup> A1: array<vec4<f32>, 288>; // [key column][row ti]: rows ti + m·8 a vec4 (row quads), columns padded to 9

@compute @workgroup_size(512)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x / 2u;
  let tile = wid.x % 2u;
  let b = wid.y;
  let hx_h = (s / 1u) % 16u;
  for (var x: u32 = lid; x < 2048u; x += WG) {
    if (x < 2048u) { S0[x] = 0.0; }
    if (x < 16u) { z0[x] = vec4<f32>(0.0); }
  }
  workgroupBarrier();
  let nchunks = (dims.t + 31u) / 32u;
  // convolution tap weights, once: they depend on the lag and the column only
  let tap_cl = lid % 32u;
  let tc0_e = (min(tile * 32u + tap_cl + 0u, 63u) / 1u) % 64u;
  var tap_conv_0_0: f32 = 0.0;
  {
    let x11 = f32(0u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 64u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_0 = x14;
  }
  var tap_conv_0_1: f32 = 0.0;
  {
    let x11 = f32(1u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 64u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_1 = x14;
  }
  var tap_conv_0_2: f32 = 0.0;
  {
    let x11 = f32(2u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 64u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_2 = x14;
  }
  var tap_conv_0_3: f32 = 0.0;
  {
    let x11 = f32(3u); // %11 position
    let x12 = f32(0u); // %12 position
    let x13 = x11 - x12; // %13 binary
    let x3 = param_w[((hx_h) * 64u + tc0_e) * 4u + u32(round(x13))]; // %3 param
    let x14 = x3; // %14 select
    tap_conv_0_3 = x14;
  }
  // the fold team's new S, held from its update until the next chunk's start (chunked/teams.ts)
  var held0_0_0: vec4<f32> = vec4<f32>(0.0);
  var held0_1_0: vec4<f32> = vec4<f32>(0.0);
  var heldz0: vec4<f32> = vec4<f32>(0.0);
  // prefetched staging: 11 global loads per invocation held in registers, issued a chunk ahead
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
  if (0u < nchunks) {
    let c0_next = (0u) * 32u;
    let n_next = min(32u, dims.t - c0_next);
    let x = (lid + 0u);
    let row = i32(x / 16u);
    let ok = row < i32(n_next);
    let tpos = select(0u, u32(i32(c0_next) + row), ok);
    let x_1 = (lid + 0u);
    let row_1 = i32(x_1 / 16u);
    let ok_1 = row_1 < i32(n_next);
    let tpos_1 = select(0u, u32(i32(c0_next) + row_1), ok_1);
    let x_2 = (lid + 0u);
    let col = tile * 32u + x_2 % 32u;
    let row_2 = i32(x_2 / 32u) - 3;
    let tposi = i32(c0_next) + row_2;
    let ok_2 = tposi >= 0 && u32(tposi) < dims.t && col < 64u;
    let tpos_2 = select(0u, u32(tposi), ok_2);
    let vc_e = (col / 1u) % 64u;
    let x_3 = (lid + 512u);
    let col_1 = tile * 32u + x_3 % 32u;
    let row_3 = i32(x_3 / 32u) - 3;
    let tposi_1 = i32(c0_next) + row_3;
    let ok_3 = tposi_1 >= 0 && u32(tposi_1) < dims.t && col_1 < 64u;
    let tpos_3 = select(0u, u32(tposi_1), ok_3);
    let vc_e_1 = (col_1 / 1u) % 64u;
    let x_4 = min((lid + 1024u), 1119u);
    let col_2 = tile * 32u + x_4 % 32u;
    let row_4 = i32(x_4 / 32u) - 3;
    let tposi_2 = i32(c0_next) + row_4;
    let ok_4 = tposi_2 >= 0 && u32(tposi_2) < dims.t && col_2 < 64u;
    let tpos_4 = select(0u, u32(tposi_2), ok_4);
    let vc_e_2 = (col_2 / 1u) % 64u;
    pf = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 0u)];
    pf_1 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 1u)];
    pf_2 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 2u)];
    pf_3 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 3u)];
    pf_4 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 0u)];
    pf_5 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 1u)];
    pf_6 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 2u)];
    pf_7 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 3u)];
    pf_8 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 64u + vc_e];
    pf_9 = in_v[((b * dims.t + tpos_3) * 16u + hx_h) * 64u + vc_e_1];
    if ((lid + 1024u) < 1120u) { pf_10 = in_v[((b * dims.t + tpos_4) * 16u + hx_h) * 64u + vc_e_2]; }
  }
  for (var c: u32 = 0u; c < nchunks; c++) {
    let c0 = c * 32u;
    let n = min(32u, dims.t - c0);
    if (c > 0u && lid >= 256u) {
      // the fold team's S from the chunk before, now that every output has read S_prev
      let u = lid - 256u;
      let x_0 = u + 0u;
      let x_1 = u + 256u;
      let cl = u % 32u;
      {
        let tf = x_0 / 32u;
        let f_0 = tf * 4u;
        S0[(f_0 + 0u) * 32u + cl] = held0_0_0.x;
        S0[(f_0 + 1u) * 32u + cl] = held0_0_0.y;
        S0[(f_0 + 2u) * 32u + cl] = held0_0_0.z;
        S0[(f_0 + 3u) * 32u + cl] = held0_0_0.w;
      }
      {
        let tf = x_1 / 32u;
        let f_0 = tf * 4u;
        S0[(f_0 + 0u) * 32u + cl] = held0_1_0.x;
        S0[(f_0 + 1u) * 32u + cl] = held0_1_0.y;
        S0[(f_0 + 2u) * 32u + cl] = held0_1_0.z;
        S0[(f_0 + 3u) * 32u + cl] = held0_1_0.w;
      }
      if (u < 16u) { z0[u] = heldz0; }
    }
    {
      let x = (lid + 0u);
      let row = i32(x / 16u);
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
      let row_1 = i32(x_1 / 16u);
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
      let x_2 = min((lid + 0u), 31u);
      let row_2 = i32(x_2 / 1u) - 0;
      let tposi = i32(c0) + row_2;
      let ok_2 = tposi >= 0 && u32(tposi) < dims.t;
      let tpos_2 = select(0u, u32(tposi), ok_2);
      var val_2: f32 = 0.0;
      if ((lid + 0u) < 32u) {
        let x11 = f32(tpos_2); // %11 position
        val_2 = select(0.0, x11, ok_2);
      }
      let x_3 = min((lid + 0u), 34u);
      let row_3 = i32(x_3 / 1u) - 3;
      let tposi_1 = i32(c0) + row_3;
      let ok_3 = tposi_1 >= 0 && u32(tposi_1) < dims.t;
      let tpos_3 = select(0u, u32(tposi_1), ok_3);
      var val_3: f32 = 0.0;
      if ((lid + 0u) < 35u) {
        let x12 = f32(tpos_3); // %12 position
        val_3 = select(0.0, x12, ok_3);
      }
      let x_4 = (lid + 0u);
      let col = tile * 32u + x_4 % 32u;
      let row_4 = i32(x_4 / 32u) - 3;
      let tposi_2 = i32(c0) + row_4;
      let ok_4 = tposi_2 >= 0 && u32(tposi_2) < dims.t && col < 64u;
      let tpos_4 = select(0u, u32(tposi_2), ok_4);
      let vc_e = (col / 1u) % 64u;
      var val_4: f32 = 0.0;
      {
        let x2 = pf_8; // %2 input
        val_4 = select(0.0, x2, ok_4);
      }
      let x_5 = (lid + 512u);
      let col_1 = tile * 32u + x_5 % 32u;
      let row_5 = i32(x_5 / 32u) - 3;
      let tposi_3 = i32(c0) + row_5;
      let ok_5 = tposi_3 >= 0 && u32(tposi_3) < dims.t && col_1 < 64u;
      let tpos_5 = select(0u, u32(tposi_3), ok_5);
      let vc_e_1 = (col_1 / 1u) % 64u;
      var val_5: f32 = 0.0;
      {
        let x2 = pf_9; // %2 input
        val_5 = select(0.0, x2, ok_5);
      }
      let x_6 = min((lid + 1024u), 1119u);
      let col_2 = tile * 32u + x_6 % 32u;
      let row_6 = i32(x_6 / 32u) - 3;
      let tposi_4 = i32(c0) + row_6;
      let ok_6 = tposi_4 >= 0 && u32(tposi_4) < dims.t && col_2 < 64u;
      let tpos_6 = select(0u, u32(tposi_4), ok_6);
      let vc_e_2 = (col_2 / 1u) % 64u;
      var val_6: f32 = 0.0;
      if ((lid + 1024u) < 1120u) {
        let x2 = pf_10; // %2 input
        val_6 = select(0.0, x2, ok_6);
      }
      phi0[x] = val;
      psi0[(x_1 / 16u) * 17u + x_1 % 16u] = val_1;
      if ((lid + 0u) < 32u) { qf11[x_2] = val_2; }
      if ((lid + 0u) < 35u) { kf12[x_3] = val_3; }
      vs[x_4] = val_4;
      vs[x_5] = val_5;
      if ((lid + 1024u) < 1120u) { vs[x_6] = val_6; }
    }
    workgroupBarrier();
    if (c + 1u < nchunks) {
      let c0_next = (c + 1u) * 32u;
      let n_next = min(32u, dims.t - c0_next);
      let x = (lid + 0u);
      let row = i32(x / 16u);
      let ok = row < i32(n_next);
      let tpos = select(0u, u32(i32(c0_next) + row), ok);
      let x_1 = (lid + 0u);
      let row_1 = i32(x_1 / 16u);
      let ok_1 = row_1 < i32(n_next);
      let tpos_1 = select(0u, u32(i32(c0_next) + row_1), ok_1);
      let x_2 = (lid + 0u);
      let col = tile * 32u + x_2 % 32u;
      let row_2 = i32(x_2 / 32u) - 3;
      let tposi = i32(c0_next) + row_2;
      let ok_2 = tposi >= 0 && u32(tposi) < dims.t && col < 64u;
      let tpos_2 = select(0u, u32(tposi), ok_2);
      let vc_e = (col / 1u) % 64u;
      let x_3 = (lid + 512u);
      let col_1 = tile * 32u + x_3 % 32u;
      let row_3 = i32(x_3 / 32u) - 3;
      let tposi_1 = i32(c0_next) + row_3;
      let ok_3 = tposi_1 >= 0 && u32(tposi_1) < dims.t && col_1 < 64u;
      let tpos_3 = select(0u, u32(tposi_1), ok_3);
      let vc_e_1 = (col_1 / 1u) % 64u;
      let x_4 = min((lid + 1024u), 1119u);
      let col_2 = tile * 32u + x_4 % 32u;
      let row_4 = i32(x_4 / 32u) - 3;
      let tposi_2 = i32(c0_next) + row_4;
      let ok_4 = tposi_2 >= 0 && u32(tposi_2) < dims.t && col_2 < 64u;
      let tpos_4 = select(0u, u32(tposi_2), ok_4);
      let vc_e_2 = (col_2 / 1u) % 64u;
      pf = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 0u)];
      pf_1 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 1u)];
      pf_2 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 2u)];
      pf_3 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 64u + ((x % 16u) * 4u + 3u)];
      pf_4 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 0u)];
      pf_5 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 1u)];
      pf_6 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 2u)];
      pf_7 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 64u + ((x_1 % 16u) * 4u + 3u)];
      pf_8 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 64u + vc_e];
      pf_9 = in_v[((b * dims.t + tpos_3) * 16u + hx_h) * 64u + vc_e_1];
      if ((lid + 1024u) < 1120u) { pf_10 = in_v[((b * dims.t + tpos_4) * 16u + hx_h) * 64u + vc_e_2]; }
    }
    for (var x: u32 = lid; x < 256u; x += WG) {
      let ti = x / 32u;
      let tj = x % 32u;
      var a1_0_0: f32 = 0.0;
      var a1_1_0: f32 = 0.0;
      var a1_2_0: f32 = 0.0;
      var a1_3_0: f32 = 0.0;
      {
        // term lin (prefix): φ_i·ψ_j over the tile
        var d_0_0: f32 = 0.0;
        var d_1_0: f32 = 0.0;
        var d_2_0: f32 = 0.0;
        var d_3_0: f32 = 0.0;
        let jl_0 = u32(clamp(i32(tj + 0u) - 0, 0, 31));
        for (var f4: u32 = 0u; f4 < 16u; f4++) {
          let f = f4 * 4u;
          let p_0 = phi0[((ti + 0u)) * 16u + f4];
          let p_1 = phi0[((ti + 8u)) * 16u + f4];
          let p_2 = phi0[((ti + 16u)) * 16u + f4];
          let p_3 = phi0[((ti + 24u)) * 16u + f4];
          let q_0 = psi0[(jl_0) * 17u + f4];
          d_0_0 = d_0_0 + dot(p_0, q_0);
          d_1_0 = d_1_0 + dot(p_1, q_0);
          d_2_0 = d_2_0 + dot(p_2, q_0);
          d_3_0 = d_3_0 + dot(p_3, q_0);
        }
        {
          let il = ti + 0u;
          let jj = tj + 0u;
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          if (il < n && jj >= 0u && jj < 32u && ja_i >= 0 && ((ja <= ia))) { a1_0_0 = a1_0_0 + d_0_0; }
        }
        {
          let il = ti + 8u;
          let jj = tj + 0u;
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          if (il < n && jj >= 0u && jj < 32u && ja_i >= 0 && ((ja <= ia))) { a1_1_0 = a1_1_0 + d_1_0; }
        }
        {
          let il = ti + 16u;
          let jj = tj + 0u;
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          if (il < n && jj >= 0u && jj < 32u && ja_i >= 0 && ((ja <= ia))) { a1_2_0 = a1_2_0 + d_2_0; }
        }
        {
          let il = ti + 24u;
          let jj = tj + 0u;
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          if (il < n && jj >= 0u && jj < 32u && ja_i >= 0 && ((ja <= ia))) { a1_3_0 = a1_3_0 + d_3_0; }
        }
      }
      {
        let il = ti + 0u;
        let jj = tj + 0u;
        if (jj < 32u) {
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          let valid = il < n && ja_i >= 0;
        }
      }
      {
        let il = ti + 8u;
        let jj = tj + 0u;
        if (jj < 32u) {
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          let valid = il < n && ja_i >= 0;
        }
      }
      {
        let il = ti + 16u;
        let jj = tj + 0u;
        if (jj < 32u) {
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          let valid = il < n && ja_i >= 0;
        }
      }
      {
        let il = ti + 24u;
        let jj = tj + 0u;
        if (jj < 32u) {
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          let valid = il < n && ja_i >= 0;
        }
      }
      A1[tj * 9u + ti] = vec4<f32>(a1_0_0, a1_1_0, a1_2_0, a1_3_0);
    }
    if (lid >= 256u) {
      // the fold half, idle in the score phase: φ·S_prev and φ·z_prev of the output items, from S, z as they are now
      let u = lid - 256u;
      let ti = u / 32u;
      let cl = u % 32u;
      var n0: f32 = 0.0;
      var n1: f32 = 0.0;
      var n2: f32 = 0.0;
      var n3: f32 = 0.0;
      for (var f4: u32 = 0u; f4 < 16u; f4++) {
        let f = f4 * 4u;
        let sv = vec4<f32>(S0[(f + 0u) * 32u + cl], S0[(f + 1u) * 32u + cl], S0[(f + 2u) * 32u + cl], S0[(f + 3u) * 32u + cl]);
        n0 = n0 + dot(phi0[(ti + 0u) * 16u + f4], sv);
        n1 = n1 + dot(phi0[(ti + 8u) * 16u + f4], sv);
        n2 = n2 + dot(phi0[(ti + 16u) * 16u + f4], sv);
        n3 = n3 + dot(phi0[(ti + 24u) * 16u + f4], sv);
      }
      phiSw[u] = vec4<f32>(n0, n1, n2, n3);
      if (u < 32u) {
        var zz: f32 = 0.0;
        for (var f4: u32 = 0u; f4 < 16u; f4++) { zz = zz + dot(phi0[u * 16u + f4], z0[f4]); }
        phiZw[u] = zz;
      }
    }
    workgroupBarrier();
    if (lid < 256u) {
      for (var x: u32 = lid; x < 256u; x += 256u) {
        let ti = x / 32u;
        let cl = x % 32u;
        let col = tile * 32u + cl;
        if (col < 64u) {
          let oc_e = (col / 1u) % 64u;
          var o_0: f32 = 0.0;
          var o_1: f32 = 0.0;
          var o_2: f32 = 0.0;
          var o_3: f32 = 0.0;
          {
            // output group 0: conv
            var num_0: f32 = 0.0;
            var den_0: f32 = 0.0;
            var num_1: f32 = 0.0;
            var den_1: f32 = 0.0;
            var num_2: f32 = 0.0;
            var den_2: f32 = 0.0;
            var num_3: f32 = 0.0;
            var den_3: f32 = 0.0;
            {
              // hoisted taps of conv: weights computed before the chunk loop
              let il = ti + 0u;
              let ia = c0 + il;
              if (il < n && i32(ia) - 0 >= 0 && i32(ia) - 0 < i32(dims.t) && ((u32(i32(ia) - 0) <= ia && (i32(ia) - i32(u32(i32(ia) - 0))) < 4))) {
                num_0 = num_0 + tap_conv_0_0 * vs[(u32(i32(il) - 0 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 1 >= 0 && i32(ia) - 1 < i32(dims.t) && ((u32(i32(ia) - 1) <= ia && (i32(ia) - i32(u32(i32(ia) - 1))) < 4))) {
                num_0 = num_0 + tap_conv_0_1 * vs[(u32(i32(il) - 1 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 2 >= 0 && i32(ia) - 2 < i32(dims.t) && ((u32(i32(ia) - 2) <= ia && (i32(ia) - i32(u32(i32(ia) - 2))) < 4))) {
                num_0 = num_0 + tap_conv_0_2 * vs[(u32(i32(il) - 2 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 3 >= 0 && i32(ia) - 3 < i32(dims.t) && ((u32(i32(ia) - 3) <= ia && (i32(ia) - i32(u32(i32(ia) - 3))) < 4))) {
                num_0 = num_0 + tap_conv_0_3 * vs[(u32(i32(il) - 3 + 3)) * 32u + cl];
              }
            }
            {
              // hoisted taps of conv: weights computed before the chunk loop
              let il = ti + 8u;
              let ia = c0 + il;
              if (il < n && i32(ia) - 0 >= 0 && i32(ia) - 0 < i32(dims.t) && ((u32(i32(ia) - 0) <= ia && (i32(ia) - i32(u32(i32(ia) - 0))) < 4))) {
                num_1 = num_1 + tap_conv_0_0 * vs[(u32(i32(il) - 0 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 1 >= 0 && i32(ia) - 1 < i32(dims.t) && ((u32(i32(ia) - 1) <= ia && (i32(ia) - i32(u32(i32(ia) - 1))) < 4))) {
                num_1 = num_1 + tap_conv_0_1 * vs[(u32(i32(il) - 1 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 2 >= 0 && i32(ia) - 2 < i32(dims.t) && ((u32(i32(ia) - 2) <= ia && (i32(ia) - i32(u32(i32(ia) - 2))) < 4))) {
                num_1 = num_1 + tap_conv_0_2 * vs[(u32(i32(il) - 2 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 3 >= 0 && i32(ia) - 3 < i32(dims.t) && ((u32(i32(ia) - 3) <= ia && (i32(ia) - i32(u32(i32(ia) - 3))) < 4))) {
                num_1 = num_1 + tap_conv_0_3 * vs[(u32(i32(il) - 3 + 3)) * 32u + cl];
              }
            }
            {
              // hoisted taps of conv: weights computed before the chunk loop
              let il = ti + 16u;
              let ia = c0 + il;
              if (il < n && i32(ia) - 0 >= 0 && i32(ia) - 0 < i32(dims.t) && ((u32(i32(ia) - 0) <= ia && (i32(ia) - i32(u32(i32(ia) - 0))) < 4))) {
                num_2 = num_2 + tap_conv_0_0 * vs[(u32(i32(il) - 0 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 1 >= 0 && i32(ia) - 1 < i32(dims.t) && ((u32(i32(ia) - 1) <= ia && (i32(ia) - i32(u32(i32(ia) - 1))) < 4))) {
                num_2 = num_2 + tap_conv_0_1 * vs[(u32(i32(il) - 1 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 2 >= 0 && i32(ia) - 2 < i32(dims.t) && ((u32(i32(ia) - 2) <= ia && (i32(ia) - i32(u32(i32(ia) - 2))) < 4))) {
                num_2 = num_2 + tap_conv_0_2 * vs[(u32(i32(il) - 2 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 3 >= 0 && i32(ia) - 3 < i32(dims.t) && ((u32(i32(ia) - 3) <= ia && (i32(ia) - i32(u32(i32(ia) - 3))) < 4))) {
                num_2 = num_2 + tap_conv_0_3 * vs[(u32(i32(il) - 3 + 3)) * 32u + cl];
              }
            }
            {
              // hoisted taps of conv: weights computed before the chunk loop
              let il = ti + 24u;
              let ia = c0 + il;
              if (il < n && i32(ia) - 0 >= 0 && i32(ia) - 0 < i32(dims.t) && ((u32(i32(ia) - 0) <= ia && (i32(ia) - i32(u32(i32(ia) - 0))) < 4))) {
                num_3 = num_3 + tap_conv_0_0 * vs[(u32(i32(il) - 0 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 1 >= 0 && i32(ia) - 1 < i32(dims.t) && ((u32(i32(ia) - 1) <= ia && (i32(ia) - i32(u32(i32(ia) - 1))) < 4))) {
                num_3 = num_3 + tap_conv_0_1 * vs[(u32(i32(il) - 1 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 2 >= 0 && i32(ia) - 2 < i32(dims.t) && ((u32(i32(ia) - 2) <= ia && (i32(ia) - i32(u32(i32(ia) - 2))) < 4))) {
                num_3 = num_3 + tap_conv_0_2 * vs[(u32(i32(il) - 2 + 3)) * 32u + cl];
              }
              if (il < n && i32(ia) - 3 >= 0 && i32(ia) - 3 < i32(dims.t) && ((u32(i32(ia) - 3) <= ia && (i32(ia) - i32(u32(i32(ia) - 3))) < 4))) {
                num_3 = num_3 + tap_conv_0_3 * vs[(u32(i32(il) - 3 + 3)) * 32u + cl];
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
            {
              let il = ti + 16u;
              let ia = c0 + il;
              if (il < n) { o_2 = o_2 + num_2; }
            }
            {
              let il = ti + 24u;
              let ia = c0 + il;
              if (il < n) { o_3 = o_3 + num_3; }
            }
          }
          {
            // output group 1: normalize(lin)
            var num_0: f32 = 0.0;
            var den_0: f32 = 0.0;
            var num_1: f32 = 0.0;
            var den_1: f32 = 0.0;
            var num_2: f32 = 0.0;
            var den_2: f32 = 0.0;
            var num_3: f32 = 0.0;
            var den_3: f32 = 0.0;
            for (var jj: u32 = 0u; jj < 32u; jj++) {
              let vv = vs[(jj + 3u) * 32u + cl];
              let aq = A1[jj * 9u + ti];
              num_0 = num_0 + aq.x * vv;
              den_0 = den_0 + aq.x;
              num_1 = num_1 + aq.y * vv;
              den_1 = den_1 + aq.y;
              num_2 = num_2 + aq.z * vv;
              den_2 = den_2 + aq.z;
              num_3 = num_3 + aq.w * vv;
              den_3 = den_3 + aq.w;
            }
            {
              let ps = phiSw[ti * 32u + cl];
              num_0 = num_0 + ps.x;
              num_1 = num_1 + ps.y;
              num_2 = num_2 + ps.z;
              num_3 = num_3 + ps.w;
              den_0 = den_0 + phiZw[ti + 0u];
              den_1 = den_1 + phiZw[ti + 8u];
              den_2 = den_2 + phiZw[ti + 16u];
              den_3 = den_3 + phiZw[ti + 24u];
            }
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
            {
              let il = ti + 16u;
              let ia = c0 + il;
              if (il < n) { o_2 = o_2 + num_2 / (den_2 + 0.000001); }
            }
            {
              let il = ti + 24u;
              let ia = c0 + il;
              if (il < n) { o_3 = o_3 + num_3 / (den_3 + 0.000001); }
            }
          }
          {
            let ia = c0 + ti + 0u;
            if (ti + 0u < n) { out_o[(b * dims.t + ia) * 1024u + (hx_h) * 64u + oc_e] = o_0; }
          }
          {
            let ia = c0 + ti + 8u;
            if (ti + 8u < n) { out_o[(b * dims.t + ia) * 1024u + (hx_h) * 64u + oc_e] = o_1; }
          }
          {
            let ia = c0 + ti + 16u;
            if (ti + 16u < n) { out_o[(b * dims.t + ia) * 1024u + (hx_h) * 64u + oc_e] = o_2; }
          }
          {
            let ia = c0 + ti + 24u;
            if (ti + 24u < n) { out_o[(b * dims.t + ia) * 1024u + (hx_h) * 64u + oc_e] = o_3; }
          }
        }
      }
    } else {
      let u = lid - 256u;
      {
        let x_0 = u + 0u;
        let x_1 = u + 256u;
        // S0 ← decay ⊙ S0 + Σ_j ψ_j ⊗ v_j, 2 trip(s) of the fold team, held until the next chunk's start
        let cl = u % 32u;
        let tf_0 = x_0 / 32u;
        let f_0_0 = tf_0 * 4u;
        var acc_0: vec4<f32> = vec4<f32>(S0[(f_0_0 + 0u) * 32u + cl], S0[(f_0_0 + 1u) * 32u + cl], S0[(f_0_0 + 2u) * 32u + cl], S0[(f_0_0 + 3u) * 32u + cl]);
        let tf_1 = x_1 / 32u;
        let f_1_0 = tf_1 * 4u;
        var acc_1: vec4<f32> = vec4<f32>(S0[(f_1_0 + 0u) * 32u + cl], S0[(f_1_0 + 1u) * 32u + cl], S0[(f_1_0 + 2u) * 32u + cl], S0[(f_1_0 + 3u) * 32u + cl]);
        for (var j: u32 = 0u; j < n; j++) {
          let vv = vs[(j + 3u) * 32u + cl];
          let ps = psi0[(j) * 17u + tf_0];
          acc_0 = acc_0 + ps * vv;
          let ps_1 = psi0[(j) * 17u + tf_1];
          acc_1 = acc_1 + ps_1 * vv;
        }
        held0_0_0 = acc_0;
        held0_1_0 = acc_1;
      }
      if (u < 16u) {
        let f_0 = u * 4u;
        var acc: vec4<f32> = z0[u];
        for (var j: u32 = 0u; j < n; j++) { acc = acc + psi0[(j) * 17u + u]; }
        heldz0 = acc;
      }
    }
    workgroupBarrier();
  }
}
