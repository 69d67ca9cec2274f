// The position encoding fields of a config.json, as Hugging Face writes them, into the RoPE settings a variant's
// rope(…) is compiled with (src/ir/rope.ts):
//   transformers 4:  "rope_theta": 10000.0, "rope_scaling": null | {"rope_type" (or "type"): "linear" | "llama3" | "default", …}
//   transformers 5:  "rope_parameters": {"rope_type": …, "rope_theta": …, and the scaling's fields}
// linear: {"factor": F}; llama3: {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}.
// Other scalings (dynamic NTK, YaRN, LongRoPE) change with the sequence or rescale attention: refused by name.
import { checkRopeSpec, type RopeScaling, type RopeSpec } from '../ir/rope.ts';

type Fail = (field: string, detail: string) => never;

/** The RoPE settings of a config, or undefined when it has no rope field at all. */
export function parseRopeFields(root: Record<string, unknown>, fail: Fail): RopeSpec | undefined {
  const params = root['rope_parameters'];
  const hasParams = params !== undefined && params !== null;
  if (!hasParams && root['rope_theta'] === undefined && (root['rope_scaling'] === undefined || root['rope_scaling'] === null)) return undefined;
  const partial = root['partial_rotary_factor'];
  if (partial !== undefined && partial !== null && partial !== 1) fail('partial_rotary_factor', `only 1 (RoPE over the whole head) is supported, got ${JSON.stringify(partial)}`);
  let theta: unknown;
  let scaling: unknown;
  let where: string;
  if (hasParams) {
    if (typeof params !== 'object' || Array.isArray(params)) fail('rope_parameters', `expected an object, got ${JSON.stringify(params)}`);
    const p = params as Record<string, unknown>;
    theta = p['rope_theta'] ?? root['rope_theta'] ?? 10000;
    scaling = p;
    where = 'rope_parameters';
  } else {
    theta = root['rope_theta'] ?? 10000;
    scaling = root['rope_scaling'];
    where = 'rope_scaling';
  }
  if (typeof theta !== 'number' || !Number.isFinite(theta)) fail('rope_theta', `expected a number, got ${JSON.stringify(theta)}`);
  const spec: RopeSpec = { theta, scaling: parseScaling(scaling, where, fail) };
  try {
    checkRopeSpec(spec);
  } catch (e) {
    fail(where === 'rope_parameters' ? where : 'rope_theta', (e as Error).message);
  }
  return spec;
}

function parseScaling(s: unknown, where: string, fail: Fail): RopeScaling {
  if (s === undefined || s === null) return { kind: 'none' };
  if (typeof s !== 'object' || Array.isArray(s)) fail(where, `expected an object or null, got ${JSON.stringify(s)}`);
  const o = s as Record<string, unknown>;
  const type = o['rope_type'] ?? o['type'] ?? 'default';
  const num = (key: string): number => {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) fail(`${where}.${key}`, `expected a number, got ${JSON.stringify(v)}`);
    return v;
  };
  switch (type) {
    case 'default':
      return { kind: 'none' };
    case 'linear':
      return { kind: 'linear', factor: num('factor') };
    case 'llama3':
      return {
        kind: 'llama3',
        factor: num('factor'),
        lowFreqFactor: num('low_freq_factor'),
        highFreqFactor: num('high_freq_factor'),
        originalMaxPositions: num('original_max_position_embeddings'),
      };
    default:
      return fail(`${where}.rope_type`, `${JSON.stringify(type)} is not supported (supported: default, linear, llama3)`);
  }
}
