// RoPE in float64 on a tensor over named axes (the meaning of the IR's `rope` op, src/ir/rope.ts): the pairs
// (f, f + D/2) along `axis` rotated by sign·p·ω_f. The evaluator applies it at a token's position; the gradient
// oracle applies its inverse (sign −1) to an adjoint, since a rotation's adjoint is the opposite rotation.
import { ropeInvFreq, type RopeSpec } from '../../src/ir/rope.ts';
import { count, type Named, type Sizes } from './named.ts';

export function rotateF64(x: Named, axis: string, s: Sizes, position: number, spec: RopeSpec, sign: 1 | -1): Named {
  const k = x.axes.indexOf(axis);
  if (k < 0) throw new Error(`rope over ${axis}: the value has axes [${x.axes.join(', ')}]`);
  const D = s[axis];
  const half = D / 2;
  const w = ropeInvFreq(D, spec);
  const stride = count(x.axes.slice(k + 1), s);
  const out = new Float64Array(x.data.length);
  for (let o = 0; o < x.data.length; o++) {
    const c = Math.floor(o / stride) % D;
    const f = c % half;
    const a = sign * position * w[f];
    const partner = c < half ? x.data[o + half * stride] : x.data[o - half * stride];
    out[o] = x.data[o] * Math.cos(a) + (c < half ? -partner : partner) * Math.sin(a);
  }
  return { axes: x.axes, data: out };
}
