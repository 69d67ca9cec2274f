// chunked kernel elu_dwconv.chunked for elu_dwconv: terms lin (prefix), conv (toeplitz)
// chunk 8, 64 value columns per workgroup, halo 3, head axes [h], column axes [e]
struct Dims { b: u32, t: u32, pos0: u32, pad: u32 }
@group(0) @binding(0) var<uniform> dims: Dims;
@group(0) @binding(1) var<storage, read> in_q: array<f32>;
@group(0) @binding(2) var<storage, read> in_k: array<f32>;
@group(0) @binding(3) var<storage, read> in_v: array<f32>;
@group(0) @binding(4) var<storage, read> param_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> out_o: array<f32>;
const WG = 512u;
var<workgroup> phi0: array<vec4<f32>, 256>; // [row][f / 4], four features a vec4
var<workgroup> psi0: array<vec4<f32>, 264>; // [row][f / 4], rows padded to 33 vec4
var<workgroup> S0: array<f32, 8192>;
var<workgroup> z0: array<vec4<f32>, 32>; // [f / 4]
var<workgroup> qf11: array<f32, 8>;
var<workgroup> kf12: array<f32, 11>;
var<workgroup> vs: array<f32, 704>; // values of rows c0-3 … c0+7, this workgroup's columns
var<workgroup> A1: array<f32, 64>;
var<workgroup> rowden1: array<f32, 8>;
var<workgroup> denp1: array<f32, 64>;

@compute @workgroup_size(512)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
  let s = wid.x / 2u;
  let tile = wid.x % 2u;
  let b = wid.y;
  let hx_h = (s / 1u) % 16u;
  for (var x: u32 = lid; x < 8192u; x += WG) {
    if (x < 8192u) { S0[x] = 0.0; }
    if (x < 32u) { z0[x] = vec4<f32>(0.0); }
  }
  workgroupBarrier();
  let nchunks = (dims.t + 7u) / 8u;
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
  // prefetched staging: 10 global loads per invocation held in registers, issued a chunk ahead
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
  if (0u < nchunks) {
    let c0_next = (0u) * 8u;
    let n_next = min(8u, dims.t - c0_next);
    let x = min((lid + 0u), 255u);
    let row = i32(x / 32u);
    let ok = row < i32(n_next);
    let tpos = select(0u, u32(i32(c0_next) + row), ok);
    let x_1 = min((lid + 0u), 255u);
    let row_1 = i32(x_1 / 32u);
    let ok_1 = row_1 < i32(n_next);
    let tpos_1 = select(0u, u32(i32(c0_next) + row_1), ok_1);
    let x_2 = (lid + 0u);
    let col = tile * 64u + x_2 % 64u;
    let row_2 = i32(x_2 / 64u) - 3;
    let tposi = i32(c0_next) + row_2;
    let ok_2 = tposi >= 0 && u32(tposi) < dims.t && col < 128u;
    let tpos_2 = select(0u, u32(tposi), ok_2);
    let vc_e = (col / 1u) % 128u;
    let x_3 = min((lid + 512u), 703u);
    let col_1 = tile * 64u + x_3 % 64u;
    let row_3 = i32(x_3 / 64u) - 3;
    let tposi_1 = i32(c0_next) + row_3;
    let ok_3 = tposi_1 >= 0 && u32(tposi_1) < dims.t && col_1 < 128u;
    let tpos_3 = select(0u, u32(tposi_1), ok_3);
    let vc_e_1 = (col_1 / 1u) % 128u;
    if ((lid + 0u) < 256u) {
      pf = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 0u)];
      pf_1 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 1u)];
      pf_2 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 2u)];
      pf_3 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 3u)];
    }
    if ((lid + 0u) < 256u) {
      pf_4 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 0u)];
      pf_5 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 1u)];
      pf_6 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 2u)];
      pf_7 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 3u)];
    }
    pf_8 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + vc_e];
    if ((lid + 512u) < 704u) { pf_9 = in_v[((b * dims.t + tpos_3) * 16u + hx_h) * 128u + vc_e_1]; }
  }
  // the fold half keeps the chunk's new S (8 trips × 4 features of one column) until the next chunk's start
  var held: array<vec4<f32>, 8>;
  for (var c: u32 = 0u; c < nchunks; c++) {
    if (lid >= 256u && c > 0u) {
      for (var r: u32 = 0u; r < 8u; r++) {
        let x = lid - 256u + r * 256u;
        let tf = x / 64u;
        let cl = x % 64u;
        let f_0 = tf * 4u;
        let h = held[r];
        S0[(f_0 + 0u) * 64u + cl] = h.x;
        S0[(f_0 + 1u) * 64u + cl] = h.y;
        S0[(f_0 + 2u) * 64u + cl] = h.z;
        S0[(f_0 + 3u) * 64u + cl] = h.w;
      }
    }
    let c0 = c * 8u;
    let n = min(8u, dims.t - c0);
    {
      let x = min((lid + 0u), 255u);
      let row = i32(x / 32u);
      let ok = row < i32(n);
      let tpos = select(0u, u32(i32(c0) + row), ok);
      var val: vec4<f32> = vec4<f32>(0.0);
      if ((lid + 0u) < 256u) {
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
      let x_1 = min((lid + 0u), 255u);
      let row_1 = i32(x_1 / 32u);
      let ok_1 = row_1 < i32(n);
      let tpos_1 = select(0u, u32(i32(c0) + row_1), ok_1);
      var val_1: vec4<f32> = vec4<f32>(0.0);
      if ((lid + 0u) < 256u) {
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
      let x_2 = min((lid + 0u), 7u);
      let row_2 = i32(x_2 / 1u) - 0;
      let tposi = i32(c0) + row_2;
      let ok_2 = tposi >= 0 && u32(tposi) < dims.t;
      let tpos_2 = select(0u, u32(tposi), ok_2);
      var val_2: f32 = 0.0;
      if ((lid + 0u) < 8u) {
        let x11 = f32(tpos_2); // %11 position
        val_2 = select(0.0, x11, ok_2);
      }
      let x_3 = min((lid + 0u), 10u);
      let row_3 = i32(x_3 / 1u) - 3;
      let tposi_1 = i32(c0) + row_3;
      let ok_3 = tposi_1 >= 0 && u32(tposi_1) < dims.t;
      let tpos_3 = select(0u, u32(tposi_1), ok_3);
      var val_3: f32 = 0.0;
      if ((lid + 0u) < 11u) {
        let x12 = f32(tpos_3); // %12 position
        val_3 = select(0.0, x12, ok_3);
      }
      let x_4 = (lid + 0u);
      let col = tile * 64u + x_4 % 64u;
      let row_4 = i32(x_4 / 64u) - 3;
      let tposi_2 = i32(c0) + row_4;
      let ok_4 = tposi_2 >= 0 && u32(tposi_2) < dims.t && col < 128u;
      let tpos_4 = select(0u, u32(tposi_2), ok_4);
      let vc_e = (col / 1u) % 128u;
      var val_4: f32 = 0.0;
      {
        let x2 = pf_8; // %2 input
        val_4 = select(0.0, x2, ok_4);
      }
      let x_5 = min((lid + 512u), 703u);
      let col_1 = tile * 64u + x_5 % 64u;
      let row_5 = i32(x_5 / 64u) - 3;
      let tposi_3 = i32(c0) + row_5;
      let ok_5 = tposi_3 >= 0 && u32(tposi_3) < dims.t && col_1 < 128u;
      let tpos_5 = select(0u, u32(tposi_3), ok_5);
      let vc_e_1 = (col_1 / 1u) % 128u;
      var val_5: f32 = 0.0;
      if ((lid + 512u) < 704u) {
        let x2 = pf_9; // %2 input
        val_5 = select(0.0, x2, ok_5);
      }
      if ((lid + 0u) < 256u) { phi0[x] = val; }
      if ((lid + 0u) < 256u) { psi0[(x_1 / 32u) * 33u + x_1 % 32u] = val_1; }
      if ((lid + 0u) < 8u) { qf11[x_2] = val_2; }
      if ((lid + 0u) < 11u) { kf12[x_3] = val_3; }
      vs[x_4] = val_4;
      if ((lid + 512u) < 704u) { vs[x_5] = val_5; }
    }
    workgroupBarrier();
    if (c + 1u < nchunks) {
      let c0_next = (c + 1u) * 8u;
      let n_next = min(8u, dims.t - c0_next);
      let x = min((lid + 0u), 255u);
      let row = i32(x / 32u);
      let ok = row < i32(n_next);
      let tpos = select(0u, u32(i32(c0_next) + row), ok);
      let x_1 = min((lid + 0u), 255u);
      let row_1 = i32(x_1 / 32u);
      let ok_1 = row_1 < i32(n_next);
      let tpos_1 = select(0u, u32(i32(c0_next) + row_1), ok_1);
      let x_2 = (lid + 0u);
      let col = tile * 64u + x_2 % 64u;
      let row_2 = i32(x_2 / 64u) - 3;
      let tposi = i32(c0_next) + row_2;
      let ok_2 = tposi >= 0 && u32(tposi) < dims.t && col < 128u;
      let tpos_2 = select(0u, u32(tposi), ok_2);
      let vc_e = (col / 1u) % 128u;
      let x_3 = min((lid + 512u), 703u);
      let col_1 = tile * 64u + x_3 % 64u;
      let row_3 = i32(x_3 / 64u) - 3;
      let tposi_1 = i32(c0_next) + row_3;
      let ok_3 = tposi_1 >= 0 && u32(tposi_1) < dims.t && col_1 < 128u;
      let tpos_3 = select(0u, u32(tposi_1), ok_3);
      let vc_e_1 = (col_1 / 1u) % 128u;
      if ((lid + 0u) < 256u) {
        pf = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 0u)];
        pf_1 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 1u)];
        pf_2 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 2u)];
        pf_3 = in_q[((b * dims.t + tpos) * 16u + hx_h) * 128u + ((x % 32u) * 4u + 3u)];
      }
      if ((lid + 0u) < 256u) {
        pf_4 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 0u)];
        pf_5 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 1u)];
        pf_6 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 2u)];
        pf_7 = in_k[((b * dims.t + tpos_1) * 16u + hx_h) * 128u + ((x_1 % 32u) * 4u + 3u)];
      }
      pf_8 = in_v[((b * dims.t + tpos_2) * 16u + hx_h) * 128u + vc_e];
      if ((lid + 512u) < 704u) { pf_9 = in_v[((b * dims.t + tpos_3) * 16u + hx_h) * 128u + vc_e_1]; }
    }
    for (var x: u32 = lid; x < 64u; x += WG) {
      let ti = x / 8u;
      let tj = x % 8u;
      var a1_0_0: f32 = 0.0;
      {
        // term lin (prefix): φ_i·ψ_j over the tile
        var d_0_0: f32 = 0.0;
        let jl_0 = u32(clamp(i32(tj + 0u) - 0, 0, 7));
        for (var f4: u32 = 0u; f4 < 32u; f4++) {
          let f = f4 * 4u;
          let p_0 = phi0[((ti + 0u)) * 32u + f4];
          let q_0 = psi0[(jl_0) * 33u + f4];
          d_0_0 = d_0_0 + dot(p_0, q_0);
        }
        {
          let il = ti + 0u;
          let jj = tj + 0u;
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          if (il < n && jj >= 0u && jj < 8u && ja_i >= 0 && ((ja <= ia))) { a1_0_0 = a1_0_0 + d_0_0; }
        }
      }
      {
        let il = ti + 0u;
        let jj = tj + 0u;
        if (jj < 8u) {
          let ia = c0 + il;
          let ja_i = i32(c0) + i32(jj) - 0;
          let ja = u32(max(ja_i, 0));
          let valid = il < n && ja_i >= 0;
          A1[il * 8u + jj] = a1_0_0;
        }
      }
      {
        let il = ti + 0u;
        var dp: f32 = a1_0_0;
        for (var f4: u32 = tj; f4 < 32u; f4 += 8u) {
          // φ·z for lin
          dp = dp + dot(phi0[(il) * 32u + f4], z0[f4]);
        }
        denp1[il * 8u + tj] = dp;
      }
    }
    workgroupBarrier();
    for (var x: u32 = lid; x < 40u; x += WG) {
      if (x < 8u) {
        let il = x;
        var den1: f32 = 0.0;
        for (var u: u32 = 0u; u < 8u; u++) { den1 = den1 + denp1[il * 8u + u]; }
        rowden1[il] = den1;
      } else if (x < 40u) {
        let f = x - 8u;
        let f_0 = f * 4u;
        var acc: vec4<f32> = z0[f];
        for (var j: u32 = 0u; j < n; j++) { acc = acc + psi0[(j) * 33u + f]; }
        z0[f] = acc;
      }
    }
    workgroupBarrier();
    if (lid < 256u) {
      let ti = lid / 64u;
      let cl = lid % 64u;
      let col = tile * 64u + cl;
      let oc_e = col % 128u;
      var cv: array<f32, 2>;
      for (var r: u32 = 0u; r < 2u; r++) {
        let il = ti + 4u * r;
        let ia = c0 + il;
        var acc: f32 = 0.0;
        if (il < n && i32(ia) - 0 >= 0) { acc = acc + tap_conv_0_0 * vs[(il + 3u) * 64u + cl]; }
        if (il < n && i32(ia) - 1 >= 0) { acc = acc + tap_conv_0_1 * vs[(il + 2u) * 64u + cl]; }
        if (il < n && i32(ia) - 2 >= 0) { acc = acc + tap_conv_0_2 * vs[(il + 1u) * 64u + cl]; }
        if (il < n && i32(ia) - 3 >= 0) { acc = acc + tap_conv_0_3 * vs[(il + 0u) * 64u + cl]; }
        cv[r] = acc;
      }
      var n0: f32 = 0.0;
      var n1: f32 = 0.0;
      for (var jj: u32 = 0u; jj < 8u; jj++) {
        let vv = vs[(jj + 3u) * 64u + cl];
        n0 = n0 + A1[(ti + 0u) * 8u + jj] * vv;
        n1 = n1 + A1[(ti + 4u) * 8u + jj] * vv;
      }
      for (var f4: u32 = 0u; f4 < 32u; f4++) {
        let f = f4 * 4u;
        let sv = vec4<f32>(S0[(f + 0u) * 64u + cl], S0[(f + 1u) * 64u + cl], S0[(f + 2u) * 64u + cl], S0[(f + 3u) * 64u + cl]);
        n0 = n0 + dot(phi0[(ti + 0u) * 32u + f4], sv);
        n1 = n1 + dot(phi0[(ti + 4u) * 32u + f4], sv);
      }
      let num = array<f32, 2>(n0, n1);
      for (var r: u32 = 0u; r < 2u; r++) {
        let il = ti + 4u * r;
        if (il < n) {
          let ia = c0 + il;
          out_o[(b * dims.t + ia) * 2048u + (hx_h) * 128u + oc_e] = cv[r] + num[r] / (rowden1[il] + 0.000001);
        }
      }
    } else {
      for (var r: u32 = 0u; r < 8u; r++) {
        let x = lid - 256u + r * 256u;
        let tf = x / 64u;
        let cl = x % 64u;
        let f_0 = tf * 4u;
        var acc: vec4<f32> = vec4<f32>(S0[(f_0 + 0u) * 64u + cl], S0[(f_0 + 1u) * 64u + cl], S0[(f_0 + 2u) * 64u + cl], S0[(f_0 + 3u) * 64u + cl]);
        for (var j: u32 = 0u; j < n; j++) {
          let vv = vs[(j + 3u) * 64u + cl];
          let ps = psi0[(j) * 33u + tf];
          acc = acc + ps * vv;
        }
        held[r] = acc;
      }
    }
    workgroupBarrier();
  }
}
