// The syntax tree of a variant, as written. Names are not resolved here; src/frontend/to-ir.ts does that.
import type { Span } from '../ir/span.ts';

export type Expr =
  | { kind: 'number'; value: number; span: Span }
  | { kind: 'name'; name: string; span: Span }
  | { kind: 'unary'; op: 'neg'; arg: Expr; span: Span }
  /** span is the operator (where an error about the operation points); extent is the whole expression. */
  | { kind: 'binary'; op: '+' | '-' | '*' | '/' | '**' | '@'; lhs: Expr; rhs: Expr; span: Span; extent: Span }
  | { kind: 'call'; fn: string; args: Expr[]; span: Span; fnSpan: Span }
  | { kind: 'index'; base: Expr; args: IndexArg[]; span: Span };

/** The whole of an expression's text (a binary's own span is its operator). */
export function extentOf(e: Expr): Span {
  return e.kind === 'binary' ? e.extent : e.span;
}

export type IndexArg =
  | { kind: 'position'; expr: Expr; span: Span }
  | { kind: 'named'; axis: string; expr: Expr; span: Span; axisSpan: Span };

export interface TensorDecl {
  name: string;
  axes: { name: string; span: Span }[];
  span: Span;
}

export interface MaskAtomAst {
  name: string;
  arg: Expr | null;
  span: Span;
}

export interface TermDecl {
  name: string;
  noncausal: boolean;
  mask: MaskAtomAst[];
  score: Expr;
  value: Expr;
  span: Span;
}

export type OutItem =
  | { kind: 'term'; name: string; span: Span }
  | { kind: 'norm'; terms: { name: string; span: Span }[]; eps: Expr; span: Span };

export type Decl =
  | { kind: 'size'; name: string; value: number; span: Span }
  | { kind: 'input'; tensors: TensorDecl[]; span: Span }
  | { kind: 'param'; tensors: TensorDecl[]; span: Span }
  | { kind: 'let'; name: string; expr: Expr; span: Span }
  | ({ kind: 'term' } & TermDecl)
  | { kind: 'output'; items: OutItem[]; span: Span };

export interface VariantAst {
  name: string;
  file: string;
  source: string;
  decls: Decl[];
  span: Span;
}
