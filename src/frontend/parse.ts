// Source text → AST with spans. The grammar is grammar/linattn.ohm as-is (its text, through the generated
// grammar-text.ts, so that parsing reads no file); this file holds only the semantic action `toAst` and the
// translation of Ohm's failures into SourceErrors.
import * as ohm from 'ohm-js';
import { SourceError, type Span } from '../ir/span.ts';
import type { Decl, Expr, IndexArg, MaskAtomAst, OutItem, TensorDecl, VariantAst } from './ast.ts';
import { GRAMMAR_SOURCE } from './grammar-text.ts';

let cachedGrammar: ohm.Grammar | undefined;
let cachedSemantics: ohm.Semantics | undefined;

function grammar(): ohm.Grammar {
  cachedGrammar ??= ohm.grammar(GRAMMAR_SOURCE);
  return cachedGrammar;
}

/** Line and column (1-based) of a character offset. */
export function lineCol(source: string, offset: number): { line: number; col: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset && i < source.length; i++) {
    if (source[i] === '\n') {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, col: offset - lineStart + 1 };
}

function semantics(): ohm.Semantics {
  if (cachedSemantics) return cachedSemantics;
  const s = grammar().createSemantics();
  // `this.args.file` carries the file name down so every span can name it.
  const span = (node: ohm.Node, file: string): Span => {
    const src = node.source;
    const { line, col } = lineCol(src.sourceString, src.startIdx);
    return { file, line, col, length: Math.max(1, src.endIdx - src.startIdx) };
  };
  s.addOperation('toAst(file)', {
    Program(header, decls, _end) {
      const file = this.args.file as string;
      const name = header.toAst(file) as string;
      return {
        name,
        file,
        source: this.source.sourceString,
        decls: decls.children.map((d) => d.toAst(file)),
        span: span(header, file),
      } satisfies VariantAst;
    },
    Header(_kw, ident) {
      return ident.sourceString;
    },
    Decl(d) {
      return d.toAst(this.args.file);
    },
    SizeDecl(_kw, ident, _eq, num) {
      return { kind: 'size', name: ident.sourceString, value: Number(num.sourceString), span: span(ident, this.args.file) } satisfies Decl;
    },
    InputDecl(_kw, list) {
      return { kind: 'input', tensors: list.asIteration().children.map((c) => c.toAst(this.args.file)), span: span(this, this.args.file) } satisfies Decl;
    },
    ParamDecl(_kw, list) {
      return { kind: 'param', tensors: list.asIteration().children.map((c) => c.toAst(this.args.file)), span: span(this, this.args.file) } satisfies Decl;
    },
    TensorDecl(ident, _open, axes, _close) {
      const file = this.args.file;
      return {
        name: ident.sourceString,
        axes: axes.asIteration().children.map((a) => ({ name: a.sourceString, span: span(a, file) })),
        span: span(ident, file),
      } satisfies TensorDecl;
    },
    LetDecl(_kw, ident, _eq, expr) {
      return { kind: 'let', name: ident.sourceString, expr: expr.toAst(this.args.file), span: span(ident, this.args.file) } satisfies Decl;
    },
    TermDecl(_kw, ident, _colon, noncausal, mask, _score, score, _value, value) {
      const file = this.args.file;
      return {
        kind: 'term',
        name: ident.sourceString,
        noncausal: noncausal.children.length > 0,
        mask: mask.toAst(file),
        score: score.toAst(file),
        value: value.toAst(file),
        span: span(ident, file),
      } satisfies Decl;
    },
    OutputDecl(_kw, list) {
      return { kind: 'output', items: list.asIteration().children.map((c) => c.toAst(this.args.file)), span: span(this, this.args.file) } satisfies Decl;
    },
    Mask(list) {
      return list.asIteration().children.map((c) => c.toAst(this.args.file));
    },
    MaskAtom_sized(ident, _o, arg, _c) {
      return { name: ident.sourceString, arg: arg.toAst(this.args.file), span: span(this, this.args.file) } satisfies MaskAtomAst;
    },
    MaskAtom_bare(ident) {
      return { name: ident.sourceString, arg: null, span: span(this, this.args.file) } satisfies MaskAtomAst;
    },
    OutItem_norm(_kw, _o, terms, _comma, eps, _c) {
      const file = this.args.file;
      return {
        kind: 'norm',
        terms: terms.asIteration().children.map((t) => ({ name: t.sourceString, span: span(t, file) })),
        eps: eps.toAst(file),
        span: span(this, file),
      } satisfies OutItem;
    },
    OutItem_term(ident) {
      return { kind: 'term', name: ident.sourceString, span: span(ident, this.args.file) } satisfies OutItem;
    },
    AddExpr_add(a, op, b) {
      return binary(this, '+', a, op, b);
    },
    AddExpr_sub(a, op, b) {
      return binary(this, '-', a, op, b);
    },
    MulExpr_mul(a, op, b) {
      return binary(this, '*', a, op, b);
    },
    MulExpr_div(a, op, b) {
      return binary(this, '/', a, op, b);
    },
    MulExpr_matmul(a, op, b) {
      return binary(this, '@', a, op, b);
    },
    UnaryExpr_neg(_minus, e) {
      return { kind: 'unary', op: 'neg', arg: e.toAst(this.args.file), span: span(this, this.args.file) } satisfies Expr;
    },
    PowExpr_pow(a, op, b) {
      return binary(this, '**', a, op, b);
    },
    Postfix_index(base, _o, args, _c) {
      const file = this.args.file;
      return {
        kind: 'index',
        base: base.toAst(file),
        args: args.asIteration().children.map((a) => a.toAst(file)),
        span: span(this, file),
      } satisfies Expr;
    },
    IndexArg_named(ident, _eq, e) {
      const file = this.args.file;
      return { kind: 'named', axis: ident.sourceString, expr: e.toAst(file), span: span(this, file), axisSpan: span(ident, file) } satisfies IndexArg;
    },
    IndexArg_position(e) {
      return { kind: 'position', expr: e.toAst(this.args.file), span: span(this, this.args.file) } satisfies IndexArg;
    },
    Primary_call(ident, _o, args, _c) {
      const file = this.args.file;
      return {
        kind: 'call',
        fn: ident.sourceString,
        args: args.asIteration().children.map((a) => a.toAst(file)),
        span: span(this, file),
        fnSpan: span(ident, file),
      } satisfies Expr;
    },
    Primary_paren(_o, e, _c) {
      return e.toAst(this.args.file);
    },
    Primary_number(n) {
      return { kind: 'number', value: Number(n.sourceString), span: span(this, this.args.file) } satisfies Expr;
    },
    Primary_name(ident) {
      return { kind: 'name', name: ident.sourceString, span: span(this, this.args.file) } satisfies Expr;
    },
  });
  function binary(self: ohm.Node, op: '+' | '-' | '*' | '/' | '**' | '@', a: ohm.Node, opNode: ohm.Node, b: ohm.Node): Expr {
    const file = self.args.file as string;
    return { kind: 'binary', op, lhs: a.toAst(file), rhs: b.toAst(file), span: span(opNode, file), extent: span(self, file) };
  }
  cachedSemantics = s;
  return s;
}

/** The grammar's reserved words (its `keyword` rule). */
const KEYWORDS = ['variant', 'size', 'input', 'param', 'let', 'term', 'score', 'value', 'output', 'normalize', 'noncausal'];

/**
 * Parses a variant's source; a syntax error becomes a SourceError at the rightmost failure, with the
 * tokens the grammar expected there in `expected` (formatDiagnostic prints them).
 */
export function parseVariant(source: string, file = '<input>'): VariantAst {
  const match = grammar().match(source);
  if (match.failed()) {
    const offset = match.getRightmostFailurePosition();
    const { line, col } = lineCol(source, offset);
    const expected = match.getExpectedText();
    const word = source.slice(offset).match(/^[A-Za-z_][A-Za-z0-9_]*/)?.[0];
    const found = word ?? source.slice(offset).match(/^\S*/)?.[0] ?? '';
    const at = { file, line, col, length: Math.max(1, found.length) };
    if (word && KEYWORDS.includes(word) && expected.includes('not a keyword')) {
      throw new SourceError(`syntax error: '${word}' is a keyword and cannot be used as a name`, at);
    }
    const what = found ? `unexpected '${found.slice(0, 20)}'` : 'unexpected end of input';
    throw new SourceError(`syntax error: ${what}`, at, expected);
  }
  return semantics()(match).toAst(file) as VariantAst;
}
