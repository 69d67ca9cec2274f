// The IR: an SSA dataflow graph over named axes, plus the terms that sum into the output.
//
// Every value has a *side* that says where it lives:
//   const  – a number;                    param – a learned tensor (same for every token);
//   token  – one tensor per position t;   query / key – a token value read at position i / j;
//   pair   – a value of the pair (i, j): a score, a lag, a decay.
// Scores are pair-side; values are token-side and read at j.
import type { Span } from './span.ts';

export type Id = number;
export type Side = 'const' | 'param' | 'token' | 'query' | 'key' | 'pair';

export interface Type {
  readonly side: Side;
  readonly axes: readonly string[];
}

export const UNARY_FNS = ['neg', 'exp', 'log', 'elu', 'relu', 'sigmoid', 'silu', 'cos', 'sin', 'sqrt', 'abs', 'tanh', 'recip', 'step'] as const;
// `step` (Heaviside: 1 for x > 0, else 0) is not in the DSL; autodiff emits it as the derivative of relu, abs, max, min.
export type UnaryFn = (typeof UNARY_FNS)[number];
export const BINARY_FNS = ['add', 'sub', 'mul', 'div', 'pow', 'max', 'min'] as const;
export type BinaryFn = (typeof BINARY_FNS)[number];

/** How rope(…) rescales its frequencies (src/ir/rope.ts): Hugging Face rope_scaling's linear and llama3 types. */
export type RopeScaling =
  | { readonly kind: 'none' }
  /** ω/factor (Hugging Face rope_scaling {"rope_type": "linear", "factor": F}; positions divided by F). */
  | { readonly kind: 'linear'; readonly factor: number }
  /** Llama 3.1's frequency-dependent rescaling (rope_scaling {"rope_type": "llama3", …}). */
  | { readonly kind: 'llama3'; readonly factor: number; readonly lowFreqFactor: number; readonly highFreqFactor: number; readonly originalMaxPositions: number };

export type Op =
  | { op: 'input'; name: string }
  | { op: 'param'; name: string }
  | { op: 'const'; value: number }
  | { op: 'position'; which: 'i' | 'j' } // query-side i or key-side j, as a number
  | { op: 'unary'; fn: UnaryFn; x: Id }
  | { op: 'binary'; fn: BinaryFn; a: Id; b: Id }
  | { op: 'sum'; x: Id; axis: string } // Σ over axis
  | { op: 'norm'; x: Id; axis: string } // L2 norm over axis (the axis is removed)
  | { op: 'softmax'; x: Id; axis: string } // softmax along axis (the axis is kept)
  | { op: 'matmul'; a: Id; b: Id; axis: string } // Σ_axis a·b; b's other axes are appended
  | { op: 'concat'; xs: Id[]; parts: (string | null)[]; axis: string } // x_k's axis parts[k] (or a size-1 slot) → axis
  | { op: 'outer'; x: Id; from: string; axis: string } // x[…, from] → x⊗x flattened on axis (|axis| = |from|²)
  | { op: 'at'; x: Id; which: 'i' | 'j' } // token value read at the query (i) or key (j) position
  | { op: 'select'; x: Id; axis: string; index: Id } // param x with `axis` fixed to an integer pair expression
  | { op: 'decay'; x: Id } // pair: Π_{l=j+1..i} x_l for a token x; x^(i−j) for a param x
  // token: x rotated pairwise along `axis` by the angles sign·p·ω_f of the token's own absolute position p (src/ir/rope.ts)
  | { op: 'rope'; x: Id; axis: string; theta: number; scaling: RopeScaling; sign: 1 | -1 };

export type OpName = Op['op'];

export type Node = Op & { readonly id: Id; readonly type: Type; readonly span?: Span };

export type MaskAtom =
  | { kind: 'causal' } // j ≤ i
  | { kind: 'window'; size: number } // 0 ≤ i − j < size
  | { kind: 'group'; size: number } // ⌊i/size⌋ = ⌊j/size⌋ and j ≤ i
  | { kind: 'past_groups'; size: number } // ⌊j/size⌋ < ⌊i/size⌋
  | { kind: 'centered'; size: number }; // −(size−1−⌊size/2⌋) ≤ i − j ≤ ⌊size/2⌋ (noncausal only)

export type Decay =
  | { kind: 'constant'; gamma: Id } // score · γ^(i−j), γ a param
  | { kind: 'gate'; alpha: Id }; // score · Π_{l=j+1..i} α_l, α a token value (scalar or per feature)

/** How a term is executed; `general` until passes/separability.ts has classified it. */
export type TermForm =
  | { kind: 'general' }
  /** s(i,j) = Σ_f φ_i[f] ψ_j[f] (· decay): a causal prefix sum over the state S = Σ_j ψ_j v_jᵀ. */
  | { kind: 'prefix'; phi: Id; psi: Id; feature: string | null; decay: Decay | null }
  /** s(i,j) depends only on the lag inside a bounded window: a causal (depthwise) convolution. */
  | { kind: 'toeplitz'; lags: readonly [number, number] }
  /** s(i,j) is evaluated pair by pair inside a bounded mask (group or window). */
  | { kind: 'quadratic' }
  /**
   * s(i,j) = exp(logit(i,j)) under the causal mask, alone in a normalize(…, 0): softmax attention. Run with a
   * running max (the normalisation cancels it); its decoding state is every key and value so far, growing with t.
   */
  | { kind: 'softmax'; logit: Id };

export interface Term {
  readonly name: string;
  readonly span?: Span;
  readonly noncausal: boolean;
  readonly mask: readonly MaskAtom[];
  readonly score: Id;
  readonly value: Id; // token-side; read at j
  readonly form: TermForm;
}

export type OutputItem = { kind: 'term'; term: string } | { kind: 'norm'; terms: readonly string[]; eps: number };

export type AxisDef =
  | { kind: 'free' } // bound from the shapes of the inputs
  | { kind: 'size'; value: number } // a compile-time size (size K = 4)
  | { kind: 'concat'; parts: readonly (string | null)[] } // Σ |part| (null counts 1)
  | { kind: 'outer'; of: string }; // |of|²

export interface TensorDecl {
  readonly name: string;
  readonly axes: readonly string[];
  readonly id: Id;
  readonly span?: Span;
}

export interface Program {
  readonly name: string;
  readonly file: string;
  readonly sizes: Readonly<Record<string, number>>;
  readonly axes: Readonly<Record<string, AxisDef>>;
  readonly inputs: readonly TensorDecl[];
  readonly params: readonly TensorDecl[];
  readonly nodes: readonly Node[];
  readonly lets: Readonly<Record<string, Id>>;
  readonly terms: readonly Term[];
  readonly output: readonly OutputItem[];
  /** Axes of the output o (the values' axes). */
  readonly outAxes: readonly string[];
}

export function assertNever(x: never, what = 'value'): never {
  throw new Error(`unhandled ${what}: ${JSON.stringify(x)}`);
}

/** The ids a node reads. */
export function operands(n: Op): Id[] {
  switch (n.op) {
    case 'input':
    case 'param':
    case 'const':
    case 'position':
      return [];
    case 'unary':
    case 'sum':
    case 'norm':
    case 'softmax':
    case 'outer':
    case 'at':
    case 'decay':
    case 'rope':
      return [n.x];
    case 'binary':
    case 'matmul':
      return [n.a, n.b];
    case 'concat':
      return [...n.xs];
    case 'select':
      return [n.x, n.index];
    default:
      return assertNever(n, 'op');
  }
}

/** The same op with its operands renamed by f. */
export function mapOperands<T extends Op>(n: T, f: (id: Id) => Id): T {
  const o = n as Op;
  switch (o.op) {
    case 'input':
    case 'param':
    case 'const':
    case 'position':
      return n;
    case 'unary':
    case 'sum':
    case 'norm':
    case 'softmax':
    case 'outer':
    case 'at':
    case 'decay':
    case 'rope':
      return { ...n, x: f(o.x) };
    case 'binary':
    case 'matmul':
      return { ...n, a: f(o.a), b: f(o.b) };
    case 'concat':
      return { ...n, xs: o.xs.map(f) };
    case 'select':
      return { ...n, x: f(o.x), index: f(o.index) };
    default:
      return assertNever(o, 'op');
  }
}

export function isDecodable(p: Program): boolean {
  return p.terms.every((t) => !t.noncausal);
}
