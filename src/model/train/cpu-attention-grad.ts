// The attention layer's vector–Jacobian product for the float64 CPU model gradient: the variant's own
// gradient oracle (backends/cpu/grad-oracle.ts, reverse mode over the parallel form), on the layer's q, k, v
// [b, t, h, d] and the layer's parameters. Given the cotangent do of o = variant(q, k, v; params):
//
//   dq[b,t,h,d] = Σ do · ∂o/∂q,   likewise dk, dv,   dparam[…] = Σ_{b,t} do · ∂o/∂param
import { gradientParallel } from '../../../backends/cpu/grad-oracle.ts';
import type { Program } from '../../ir/types.ts';
import type { Tensor, TensorData } from '../../tensor.ts';
import { cpuAttentionFromVariant } from '../cpu-attention.ts';
import type { CpuAttention } from '../cpu-forward.ts';

export interface CpuAttentionBackward {
  readonly dq: Float64Array;
  readonly dk: Float64Array;
  readonly dv: Float64Array;
  /** d(loss)/d(param) for each of the variant's parameters of this layer, shaped as the parameter. */
  readonly params: Readonly<Record<string, Float64Array>>;
}

/** An attention layer as the CPU model gradient needs it: the forward, and its VJP at the same inputs. */
export interface CpuAttentionGrad {
  readonly forward: CpuAttention;
  backward(layer: number, q: Tensor<Float64Array>, k: Tensor<Float64Array>, v: Tensor<Float64Array>, dout: Tensor<Float64Array>): CpuAttentionBackward;
}

/** The variant `program` (as written) with each layer's parameters, `layerParams[layer]` (read at every call). */
export function cpuAttentionGradFromVariant(program: Program, layerParams: readonly Readonly<Record<string, Tensor<TensorData>>>[]): CpuAttentionGrad {
  const forward = cpuAttentionFromVariant(program, layerParams);
  return {
    forward,
    backward(layer, q, k, v, dout) {
      const params = layerParams[layer];
      if (!params) throw new Error(`attention gradient: no parameters for layer ${layer} (have ${layerParams.length})`);
      const g = gradientParallel(program, { q, k, v, ...params }, dout);
      const out: Record<string, Float64Array> = {};
      for (const p of program.params) {
        const d = g[`d${p.name}`];
        if (!d) throw new Error(`attention gradient: the oracle returned no gradient for parameter ${p.name} of ${program.name}`);
        out[p.name] = d.data;
      }
      return { dq: g['dq'].data, dk: g['dk'].data, dv: g['dv'].data, params: out };
    },
  };
}
