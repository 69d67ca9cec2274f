// The extra tensors of the paper's linearized LLaMA-2 checkpoints (LinearizedLLM/llama-2-7b-{local,grouped,aug}-linear,
// from GATECH-EIC/Linearized-LLM's experiments/medusa/model/modeling_llama_kv.py and experiments/fine-tune.py), per
// layer N under model.layers.N.self_attn:
//
//   dwconv.weight   [heads, 1, K', 1]  a depthwise Conv2d over time, K' = res_kernel_size = 63, padding ⌊K'/2⌋:
//                                      centred, and its taps ⌊K'/2⌋+1 … K'−1 (the future) zeroed by conv_mask
//                                      before every use. So tap ⌊K'/2⌋ − l reads position i − l, and our
//                                      window(K) convolution has K = ⌊K'/2⌋ + 1 = 32 taps, w[h, l] = weight[h, 0, ⌊K'/2⌋ − l, 0]
//   conv_mask       [1, 1, K', 1]      the registered buffer: ones up to ⌊K'/2⌋, zeros after (checked when present)
//   global_factor   [1]                the grouped (global) term's learned scale, which starts at 0 (GLOBAL_FACTOR=1)
//
// RoPE is applied to q and k before their L2 norm, groups are aligned blocks of GROUP_SIZE = 64 positions (their
// config.json's group_size when positive). A checkpoint whose extras do not have these shapes is refused by name.
import type { Tensor } from '../tensor.ts';
import { ModelFileError, shapeString } from './errors.ts';
import type { HfCheckpoint } from './hf-checkpoint.ts';

export const CONV_TENSOR = 'dwconv.weight';
export const CONV_MASK = 'conv_mask';
export const GLOBAL_FACTOR_TENSOR = 'global_factor';
/** The authors' GROUP_SIZE default, and the taps of their convolution's causal half (res_kernel_size 63). */
export const DEFAULT_GROUP = 64;
export const DEFAULT_TAPS = 32;

/** The variant sizes of a linearized checkpoint: C (group) and K (taps of the masked convolution). */
export function linearizedOptions(root: Record<string, unknown>, ckpt: HfCheckpoint, file: string): Record<string, number> {
  const group = root['group_size'];
  const C = typeof group === 'number' && group > 0 ? group : DEFAULT_GROUP;
  const conv = ckpt.info(`model.layers.0.self_attn.${CONV_TENSOR}`);
  if (!conv) return { C, K: DEFAULT_TAPS };
  const taps = conv.shape.length === 4 ? conv.shape[2] : NaN;
  if (!(conv.shape.length === 4 && conv.shape[1] === 1 && conv.shape[3] === 1 && taps % 2 === 1)) {
    throw new ModelFileError(conv.file, `model.layers.0.self_attn.${CONV_TENSOR}`, `expected [heads, 1, K', 1] with K' odd (a centred depthwise kernel over time), got ${shapeString(conv.shape)}`);
  }
  const declared = root['res_kernel_size'];
  if (typeof declared === 'number' && declared > 0 && declared !== taps) {
    throw new ModelFileError(file, 'res_kernel_size', `${declared}, but model.layers.0.self_attn.${CONV_TENSOR} has ${taps} taps`);
  }
  return { C, K: (taps - 1) / 2 + 1 };
}

/** How one of the variant's parameters is read from a linearized checkpoint: its tensor and the conversion. */
export interface ParamSource {
  readonly tensor: string;
  readonly shape: readonly number[];
  readonly convert: (data: Float32Array) => Float32Array;
}

/**
 * The checkpoint tensor of variant parameter `param` ([…] = `shape`) in layer `layer`: the linearized variants'
 * w [h, K] (the convolution's taps) and alpha [] (the grouped term's scale); undefined for other names.
 */
export function linearizedParamSource(layer: number, param: string, shape: readonly number[]): ParamSource | undefined {
  const at = `model.layers.${layer}.self_attn`;
  if (param === 'w' && shape.length === 2) {
    const [h, K] = shape;
    const taps = 2 * K - 1;
    const centre = K - 1;
    return {
      tensor: `${at}.${CONV_TENSOR}`,
      shape: [h, 1, taps, 1],
      convert: (x) => {
        const w = new Float32Array(h * K);
        for (let n = 0; n < h; n++) for (let l = 0; l < K; l++) w[n * K + l] = x[n * taps + centre - l];
        return w;
      },
    };
  }
  if (param === 'alpha' && shape.length === 0) return { tensor: `${at}.${GLOBAL_FACTOR_TENSOR}`, shape: [1], convert: (x) => x };
  return undefined;
}

/** Checks a conv_mask buffer: ones for the taps up to the centre, zeros for the future ones. */
export function checkConvMask(name: string, t: Tensor, file: string): void {
  const taps = t.data.length;
  const ok = t.shape.length === 4 && t.shape[2] === taps && taps % 2 === 1 && Array.from(t.data).every((v, k) => v === (k <= (taps - 1) / 2 ? 1 : 0));
  if (!ok) throw new ModelFileError(file, name, `expected the causal mask [1, 1, K', 1] (ones up to tap ⌊K'/2⌋, zeros after), got ${shapeString(t.shape)} = [${Array.from(t.data).slice(0, 8).join(', ')}${taps > 8 ? ', …' : ''}]`);
}
