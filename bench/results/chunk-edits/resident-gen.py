# Hand-written "register-resident state" chunk kernel for elu_dwconv (lin: normalize(elu+1 prefix) + conv window K=4),
# parameterised for a trial: D features (= 4 * SG), C rows a chunk, R columns a workgroup, WG invocations, H heads.
import sys
D, C, R, SG, WG, H = [int(x) for x in sys.argv[1:7]]
FLAGS = set(sys.argv[7:])
PF = 'pf' in FLAGS
SPLIT = 'split' in FLAGS  # scores: each (i, j) over two lanes, half the features each
SKIP = {f[5:] for f in FLAGS if f.startswith('skip-')}  # ablations: skip-scores, skip-phis, skip-fold
FL = D // SG            # features a lane: 4 or 2
assert FL in (2, 4) and FL * SG == D
FV = 'vec4<f32>' if FL == 4 else 'vec2<f32>'
def lanevec(arr, rowexpr):
    # the lane's FL features of a row of a [row][F/4] vec4 array
    if FL == 4:
        return f'{arr}[{rowexpr} + lane]'
    return f'select({arr}[{rowexpr} + lane / 2u].xy, {arr}[{rowexpr} + lane / 2u].zw, (lane & 1u) == 1u)'
W = WG // SG            # subgroups a workgroup
Cw = R // W             # columns a subgroup
assert Cw * W == R and Cw in (1, 2, 4)
RB = SG // Cw           # rows a block (one per lane group after the halving)
assert C % RB == 0
NB = C // RB
F4 = D // 4
PS = F4 + 1             # psi row stride (vec4), padded
AS = C // 4 + 1         # A row stride (vec4), padded
RV = R // 4             # vs row in vec4
HALO = 3
assert C % 4 == 0 and R % 4 == 0
vecC = {1: 'f32', 2: 'vec2<f32>', 4: 'vec4<f32>'}[Cw]
comp = 'xyzw'
L = []
p = L.append
p('enable subgroups;')
p('// register-resident state: lane l of a subgroup holds S[4l..4l+3][its subgroup\'s columns] and z[4l..4l+3]')
p(f'// elu_dwconv, D {D}, chunk {C}, {R} columns a workgroup, {WG} invocations, subgroups of {SG}, {Cw} columns a subgroup')
p('struct Dims { b: u32, t: u32, pos0: u32, pad: u32 }')
p('@group(0) @binding(0) var<uniform> dims: Dims;')
p('@group(0) @binding(1) var<storage, read> in_q: array<f32>;')
p('@group(0) @binding(2) var<storage, read> in_k: array<f32>;')
p('@group(0) @binding(3) var<storage, read> in_v: array<f32>;')
p('@group(0) @binding(4) var<storage, read> param_w: array<f32>;')
p('@group(0) @binding(5) var<storage, read_write> out_o: array<f32>;')
p(f'var<workgroup> phi: array<vec4<f32>, {C * F4}>;')
p(f'var<workgroup> psi: array<vec4<f32>, {C * PS}>;')
p(f'var<workgroup> vs: array<vec4<f32>, {(C + HALO) * RV}>;')
p(f'var<workgroup> A: array<vec4<f32>, {C * AS}>;')
p(f'@compute @workgroup_size({WG})')
p('fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {')
NT = D // R
p(f'  let s = wid.x / {NT}u;')
p(f'  let tile = wid.x % {NT}u;')
p('  let b = wid.y;')
p(f'  let hh = s % {H}u;')
p(f'  let sg = lid / {SG}u;')
p(f'  let cw0 = sg * {Cw}u;            // the subgroup\'s first column in the tile')
p(f'  let lr = lane / {Cw}u;            // after the reduction: the lane\'s row in a block')
p(f'  let lc = lane % {Cw}u;            // and its column')
p(f'  let col = tile * {R}u + cw0 + lc;  // its column of the head')
for l in range(4):
    p(f'  let tap{l} = param_w[(hh * {D}u + col) * 4u + {l}u];')
for c in range(Cw):
    p(f'  var S{c}: {FV} = {FV}(0.0);')
p(f'  var Z: {FV} = {FV}(0.0);')
p(f'  let nchunks = (dims.t + {C - 1}u) / {C}u;')
QJ = -(-C * F4 // WG)          # q (and k) vec4 an invocation
VJ = -(-(C + HALO) * RV // WG)  # v vec4 an invocation
def loads(pre, c0expr):
    # the global loads of chunk c0expr into registers pre_q{i}, pre_k{i}, pre_v{i}
    for i in range(QJ):
        p(f'    {{ let x = lid + {i * WG}u; let row = x / {F4}u; let f4 = x % {F4}u; let ok = row < min({C}u, dims.t - ({c0expr})) && x < {C * F4}u;')
        p(f'      let base = ((b * dims.t + select(0u, {c0expr} + row, ok)) * {H}u + hh) * {D}u + f4 * 4u;')
        p(f'      {pre}_q{i} = select(vec4<f32>(0.0), vec4<f32>(in_q[base], in_q[base + 1u], in_q[base + 2u], in_q[base + 3u]), ok);')
        p(f'      {pre}_k{i} = select(vec4<f32>(0.0), vec4<f32>(in_k[base], in_k[base + 1u], in_k[base + 2u], in_k[base + 3u]), ok); }}')
    for i in range(VJ):
        p(f'    {{ let x = lid + {i * WG}u; let row = i32(x / {RV}u) - {HALO}; let c4 = x % {RV}u; let tpos = i32({c0expr}) + row;')
        p(f'      let ok = tpos >= 0 && row < i32(min({C}u, dims.t - ({c0expr}))) && x < {(C + HALO) * RV}u;')
        p(f'      let base = ((b * dims.t + select(0u, u32(tpos), ok)) * {H}u + hh) * {D}u + tile * {R}u + c4 * 4u;')
        p(f'      {pre}_v{i} = select(vec4<f32>(0.0), vec4<f32>(in_v[base], in_v[base + 1u], in_v[base + 2u], in_v[base + 3u]), ok); }}')
if PF:
    for i in range(QJ):
        p(f'  var pf_q{i}: vec4<f32>;')
        p(f'  var pf_k{i}: vec4<f32>;')
    for i in range(VJ):
        p(f'  var pf_v{i}: vec4<f32>;')
    p('  if (nchunks > 0u) {')
    loads('pf', '0u')
    p('  }')
p('  for (var c: u32 = 0u; c < nchunks; c++) {')
p(f'    let c0 = c * {C}u;')
p(f'    let n = min({C}u, dims.t - c0);')
# staging phi, psi
if PF:
    for i in range(QJ):
        p(f'    {{ let x = lid + {i * WG}u; if (x < {C * F4}u) {{ let row = x / {F4}u; let f4 = x % {F4}u;')
        p(f'      let q = pf_q{i}; let k = pf_k{i}; let ok = row < n;')
        p('      let fq = select(exp(q) - 1.0, q, q > vec4<f32>(0.0)) + 1.0;')
        p('      let fk = select(exp(k) - 1.0, k, k > vec4<f32>(0.0)) + 1.0;')
        p(f'      phi[row * {F4}u + f4] = select(vec4<f32>(0.0), fq, ok);')
        p(f'      psi[row * {PS}u + f4] = select(vec4<f32>(0.0), fk, ok); }} }}')
    for i in range(VJ):
        p(f'    {{ let x = lid + {i * WG}u; if (x < {(C + HALO) * RV}u) {{ vs[x] = pf_v{i}; }} }}')
else:
    p(f'    for (var x: u32 = lid; x < {C * F4}u; x += {WG}u) {{')
    p(f'      let row = x / {F4}u;')
    p(f'      let f4 = x % {F4}u;')
    p('      let ok = row < n;')
    p(f'      let base = ((b * dims.t + select(0u, c0 + row, ok)) * {H}u + hh) * {D}u + f4 * 4u;')
    p('      let q = vec4<f32>(in_q[base], in_q[base + 1u], in_q[base + 2u], in_q[base + 3u]);')
    p('      let k = vec4<f32>(in_k[base], in_k[base + 1u], in_k[base + 2u], in_k[base + 3u]);')
    p('      let fq = select(exp(q) - 1.0, q, q > vec4<f32>(0.0)) + 1.0;')
    p('      let fk = select(exp(k) - 1.0, k, k > vec4<f32>(0.0)) + 1.0;')
    p('      phi[row * %du + f4] = select(vec4<f32>(0.0), fq, ok);' % F4)
    p('      psi[row * %du + f4] = select(vec4<f32>(0.0), fk, ok);' % PS)
    p('    }')
    p(f'    for (var x: u32 = lid; x < {(C + HALO) * RV}u; x += {WG}u) {{')
    p(f'      let row = i32(x / {RV}u) - {HALO};')
    p(f'      let c4 = x % {RV}u;')
    p('      let tpos = i32(c0) + row;')
    p('      let ok = tpos >= 0 && row < i32(n);')
    p(f'      let base = ((b * dims.t + select(0u, u32(tpos), ok)) * {H}u + hh) * {D}u + tile * {R}u + c4 * 4u;')
    p('      let v = vec4<f32>(in_v[base], in_v[base + 1u], in_v[base + 2u], in_v[base + 3u]);')
    p('      vs[x] = select(vec4<f32>(0.0), v, ok);')
    p('    }')

p('    workgroupBarrier();')
if PF:
    p(f'    if (c + 1u < nchunks) {{')
    loads('pf', f'(c + 1u) * {C}u')
    p('    }')
# scores: C*C entries over WG invocations
E = C * C
if SPLIT and 2 * E <= WG and not 'scores' in SKIP:
    p(f'    // scores: A[i][j] = φ_i·ψ_j for j ≤ i, each over two neighbouring lanes (half the features each)')
    p(f'    {{')
    p(f'      let x = min(lid / 2u, {E - 1}u);')
    p(f'      let half = lid % 2u;')
    p(f'      let i = x / {C}u;')
    p(f'      let j = x % {C}u;')
    p('      var d0: f32 = 0.0;')
    p('      var d1: f32 = 0.0;')
    p(f'      for (var f4: u32 = half * {F4 // 2}u; f4 < (half + 1u) * {F4 // 2}u; f4 += 2u) {{')
    p(f'        d0 = d0 + dot(phi[i * {F4}u + f4], psi[j * {PS}u + f4]);')
    p(f'        d1 = d1 + dot(phi[i * {F4}u + f4 + 1u], psi[j * {PS}u + f4 + 1u]);')
    p('      }')
    p('      let d = d0 + d1 + subgroupShuffleXor(d0 + d1, 1u);')
    p(f'      if (half == 0u && lid / 2u < {E}u) {{ A[i * {AS}u + j / 4u][j % 4u] = select(0.0, d, j <= i && i < n); }}')
    p('    }')
    p('    workgroupBarrier();')
elif 'scores' in SKIP:
    p('    workgroupBarrier();')
else:
    per = max(1, E // WG)
    p(f'    // scores: A[i][j] = φ_i·ψ_j for j ≤ i, {per} an invocation')
    p(f'    for (var x: u32 = lid; x < {E}u; x += {WG}u) {{')
    p(f'      let i = x / {C}u;')
    p(f'      let j = x % {C}u;')
    p('      var d: f32 = 0.0;')
    p(f'      for (var f4: u32 = 0u; f4 < {F4}u; f4++) {{ d = d + dot(phi[i * {F4}u + f4], psi[j * {PS}u + f4]); }}')
    p(f'      A[i * {AS}u + j / 4u][j % 4u] = select(0.0, d, j <= i && i < n);')
    p('    }')
    p('    workgroupBarrier();')

# per block: partial φ·S and φ·z, reduce, A·V, output
p(f'    for (var blk: u32 = 0u; blk < {NB}u; blk++) {{')
rows = list(range(RB))
for r in rows:
    p(f'      let p{r} = ' + lanevec('phi', f'(blk * {RB}u + {r}u) * {F4}u') + ';' if 'phis' not in SKIP else f'      let p{r} = {FV}(f32(lane));')
    if Cw == 1:
        p(f'      var a{r}: f32 = dot(p{r}, S0);')
    else:
        p(f'      var a{r}: {vecC} = {vecC}(' + ', '.join(f'dot(p{r}, S{c})' for c in range(Cw)) + ');')
    p(f'      var z{r}: f32 = dot(p{r}, Z);')
# halving
cur = rows[:]
names = {r: (f'a{r}', f'z{r}') for r in rows}
off = SG // 2
step = 0
while len(cur) > 1:
    m = len(cur)
    hi = f'h{step}'
    p(f'      let {hi} = (lane & {off}u) != 0u;')
    new = []
    for k in range(m // 2):
        lo_r, hi_r = cur[k], cur[k + m // 2]
        (la, lz), (ha, hz) = names[lo_r], names[hi_r]
        na, nz = f'a{step}_{k}', f'z{step}_{k}'
        p(f'      let {na} = select({la}, {ha}, {hi}) + subgroupShuffleXor(select({ha}, {la}, {hi}), {off}u);')
        p(f'      let {nz} = select({lz}, {hz}, {hi}) + subgroupShuffleXor(select({hz}, {lz}, {hi}), {off}u);')
        names[('n', step, k)] = (na, nz)
        new.append(('n', step, k))
    cur = new
    off //= 2
    step += 1
fa, fz = names[cur[0]]
# xor-add over the Cw lanes of the group
o = Cw // 2
while o >= 1:
    p(f'      let {fa}_{o} = {fa} + subgroupShuffleXor({fa}, {o}u);')
    p(f'      let {fz}_{o} = {fz} + subgroupShuffleXor({fz}, {o}u);')
    fa, fz = f'{fa}_{o}', f'{fz}_{o}'
    o //= 2
if Cw == 1:
    p(f'      let phS = {fa};')
else:
    p(f'      let phS = {fa}[lc];')
p(f'      let phz = {fz};')
p(f'      let i = blk * {RB}u + lr;')
p('      var num: f32 = phS;')
p('      var den: f32 = phz;')
p(f'      for (var j4: u32 = 0u; j4 < {C // 4}u; j4++) {{')
p(f'        let a = A[i * {AS}u + j4];')
for k in range(4):
    p(f'        let v{k} = vs[(j4 * 4u + {k + HALO}u) * {RV}u + (cw0 + lc) / 4u][(cw0 + lc) % 4u];')
p('        num = num + a.x * v0 + a.y * v1 + a.z * v2 + a.w * v3;')
p('        den = den + a.x + a.y + a.z + a.w;')
p('      }')
p('      var cv: f32 = 0.0;')
for l in range(4):
    p(f'      if (c0 + i >= {l}u) {{ cv = cv + tap{l} * vs[(i + {HALO - l}u) * {RV}u + (cw0 + lc) / 4u][(cw0 + lc) % 4u]; }}')
p('      if (i < n) {')
p(f'        out_o[(b * dims.t + c0 + i) * {H * D}u + hh * {D}u + col] = cv + num / (den + 0.000001);')
p('      }')
p('    }')
# fold
p('    for (var j: u32 = 0u; j < select(n, 0u, %s); j++) {' % ('true' if 'fold' in SKIP else 'false'))
p(f'      let ps = ' + lanevec('psi', f'j * {PS}u') + ';')
if Cw == 4:
    p(f'      let vv = vs[(j + {HALO}u) * {RV}u + sg];')
    for c in range(4):
        p(f'      S{c} = S{c} + ps * vv.{comp[c]};')
else:
    for c in range(Cw):
        p(f'      let v{c} = vs[(j + {HALO}u) * {RV}u + (cw0 + {c}u) / 4u][(cw0 + {c}u) % 4u];')
        p(f'      S{c} = S{c} + ps * v{c};')
p('      Z = Z + ps;')
p('    }')
p('    workgroupBarrier();')
p('  }')
p('}')
print('\n'.join(L))
