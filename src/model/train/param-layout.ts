// Where every trainable tensor lives in the trainer's flat buffers. Parameters, gradients and AdamW's two
// moments are each one f32 array of `totalFloats`, with the same layout, so the optimiser updates all of
// them in one dispatch and the global gradient norm is one reduction. On the GPU a layout over one storage
// binding is cut into groups (groupLayout), a buffer each: one dispatch per group, the same flat offsets. Each tensor starts at a multiple of
// `alignFloats` (256 bytes: WebGPU's storage-binding offset alignment), so a kernel can bind any tensor as
// its own range; the gaps between tensors stay zero in all four buffers.
//
// Weight decay (AdamW's decoupled λ·p) applies to the model's matrices: the embedding, the q/k/v/o and
// gate/up/down projections and the LM head. It does not apply to the RMSNorm gains, nor to the attention
// variant's own parameters (per-head convolution taps, decay rates, biases), which act like gains and biases.
// Medusa heads are not trained with the model: linattn train-medusa trains them alone (medusaLayout), on a frozen
// base, and decays both of their matrices.
import type { ModelConfig } from '../config.ts';
import { expectedTensors, type AttentionParamSpec, type TensorSpec } from '../weights.ts';

export interface ParamSlot {
  /** The checkpoint tensor name (model.layers.0.self_attn.q_proj.weight). */
  readonly name: string;
  readonly shape: readonly number[];
  /** First float of the tensor in the flat buffers; a multiple of alignFloats. */
  readonly offset: number;
  /** Floats of the tensor (the product of its shape). */
  readonly size: number;
  readonly decay: boolean;
  /** The flat group (one GPU buffer each) holding the tensor whole; 0 unless groupLayout split the layout. */
  readonly group: number;
  /** First float of the tensor in its group's buffer: offset − the group's start. */
  readonly groupOffset: number;
}

/** A run of whole tensors that the GPU keeps in one buffer: floats [start, start + floats) of the flat layout. */
export interface ParamGroup {
  readonly start: number;
  readonly floats: number;
}

export interface ParamLayout {
  readonly slots: readonly ParamSlot[];
  /** Floats of each flat buffer (the last tensor's end, rounded up to alignFloats). */
  readonly totalFloats: number;
  readonly alignFloats: number;
  /** The slot of each tensor name. */
  readonly byName: ReadonlyMap<string, ParamSlot>;
  /** Consecutive ranges covering [0, totalFloats); one unless groupLayout split the layout. */
  readonly groups: readonly ParamGroup[];
}

/** Default alignment: 256 bytes, WebGPU's minStorageBufferOffsetAlignment on every adapter we know. */
export const PARAM_ALIGN_BYTES = 256;

const DECAYED = /(^model\.embed_tokens\.weight$)|(^lm_head\.weight$)|(\.(q|k|v|o)_proj\.weight$)|(\.mlp\.(gate|up|down)_proj\.weight$)/;

/** The layout of `config`'s trainable tensors in checkpoint order; `alignBytes` must be a multiple of 4. */
export function paramLayout(config: ModelConfig, attentionParams: readonly AttentionParamSpec[], alignBytes = PARAM_ALIGN_BYTES): ParamLayout {
  const specs = expectedTensors(config, attentionParams).filter((s) => !s.name.startsWith('medusa.'));
  return layoutOf(specs, alignBytes, (name) => DECAYED.test(name));
}

/** The layout of `config`'s Medusa heads alone (linattn train-medusa: the base stays frozen); both matrices decay. */
export function medusaLayout(config: ModelConfig, alignBytes = PARAM_ALIGN_BYTES): ParamLayout {
  if (!config.medusa) throw new Error(`${config.file} has no Medusa heads ("medusa": {"num_heads": M})`);
  return layoutOf(expectedTensors(config, []).filter((s) => s.name.startsWith('medusa.')), alignBytes, () => true);
}

function layoutOf(specs: readonly TensorSpec[], alignBytes: number, decay: (name: string) => boolean): ParamLayout {
  if (!(Number.isInteger(alignBytes) && alignBytes >= 4 && alignBytes % 4 === 0)) throw new Error(`paramLayout: alignment ${alignBytes} is not a positive multiple of 4 bytes`);
  const alignFloats = alignBytes / 4;
  const roundUp = (n: number) => Math.ceil(n / alignFloats) * alignFloats;
  const slots: ParamSlot[] = [];
  let at = 0;
  for (const { name, shape } of specs) {
    const size = shape.reduce((a, b) => a * b, 1);
    slots.push({ name, shape, offset: at, size, decay: decay(name), group: 0, groupOffset: at });
    at = roundUp(at + size);
  }
  return { slots, totalFloats: at, alignFloats, byName: new Map(slots.map((s) => [s.name, s])), groups: [{ start: 0, floats: at }] };
}

/**
 * The same layout (offsets, totalFloats: the host's flat arrays and checkpoints do not change) cut into groups of
 * at most `maxBytes` each, greedily in layout order, every tensor whole inside one: a GPU binds one group's buffer
 * per tensor, and a layout over one storage binding (a 7B model's Medusa heads, ≈ 3 GB) still trains. Group
 * starts are tensor offsets, so they stay aligned. Throws naming a tensor that alone exceeds `maxBytes`.
 */
export function groupLayout(layout: ParamLayout, maxBytes: number): ParamLayout {
  const limit = Math.floor(maxBytes / 4);
  const roundUp = (n: number) => Math.ceil(n / layout.alignFloats) * layout.alignFloats;
  const starts: number[] = [];
  const slots = layout.slots.map((s) => {
    if (roundUp(s.size) > limit) throw new Error(`parameter '${s.name}' (${s.size} floats, ${(s.size * 4 / 2 ** 20).toFixed(1)} MiB) exceeds one storage binding (${maxBytes} bytes)`);
    if (starts.length === 0 || roundUp(s.offset + s.size) - starts[starts.length - 1] > limit) starts.push(s.offset);
    const group = starts.length - 1;
    return { ...s, group, groupOffset: s.offset - starts[group] };
  });
  if (starts.length === 0) starts.push(0);
  const groups = starts.map((start, g) => ({ start, floats: (g + 1 < starts.length ? starts[g + 1] : layout.totalFloats) - start }));
  return { ...layout, slots, byName: new Map(slots.map((s) => [s.name, s])), groups };
}

/** The slot of `name`; throws naming the tensor when the layout has none. */
export function slotOf(layout: ParamLayout, name: string): ParamSlot {
  const s = layout.byName.get(name);
  if (!s) throw new Error(`parameter layout: no tensor '${name}'`);
  return s;
}

/** Packs name → data into one flat array of the layout (gaps zero); every slot must be given, with its size. */
export function packFlat(layout: ParamLayout, tensors: ReadonlyMap<string, { readonly data: ArrayLike<number> }>): Float32Array<ArrayBuffer>;
export function packFlat<A extends Float32Array | Float64Array>(layout: ParamLayout, tensors: ReadonlyMap<string, { readonly data: ArrayLike<number> }>, out: A): A;
export function packFlat(layout: ParamLayout, tensors: ReadonlyMap<string, { readonly data: ArrayLike<number> }>, out: Float32Array | Float64Array = new Float32Array(layout.totalFloats)): Float32Array | Float64Array {
  if (out.length !== layout.totalFloats) throw new Error(`packing parameters: ${out.length} floats for a layout of ${layout.totalFloats}`);
  for (const s of layout.slots) {
    const t = tensors.get(s.name);
    if (!t) throw new Error(`packing parameters: tensor '${s.name}' is missing`);
    if (t.data.length !== s.size) throw new Error(`packing parameters: tensor '${s.name}' has ${t.data.length} elements, the layout ${s.size}`);
    for (let i = 0; i < s.size; i++) out[s.offset + i] = t.data[i];
  }
  return out;
}

/** The tensors of a flat array, as float32 copies by name. */
export function unpackFlat(layout: ParamLayout, flat: Float32Array): Map<string, { shape: readonly number[]; data: Float32Array }> {
  if (flat.length < layout.totalFloats) throw new Error(`unpacking parameters: ${flat.length} floats for a layout of ${layout.totalFloats}`);
  return new Map(layout.slots.map((s) => [s.name, { shape: s.shape, data: flat.slice(s.offset, s.offset + s.size) }]));
}
