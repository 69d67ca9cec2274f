// Short names over ts.factory for the emitter: the generated module is built as a TypeScript AST and printed,
// never pasted together from strings, so it is always syntactically valid and its identifiers are checked here.
import ts from 'typescript';

const f = ts.factory;

export type Json = string | number | boolean | null | readonly Json[] | { readonly [key: string]: Json };
export type Expr = ts.Expression;

export const id = (name: string): ts.Identifier => f.createIdentifier(name);
export const str = (s: string): ts.StringLiteral => f.createStringLiteral(s);

export function num(n: number, hex = false): Expr {
  if (!Number.isFinite(n)) throw new Error(`cannot emit the number ${n}`);
  if (n < 0) return f.createPrefixUnaryExpression(ts.SyntaxKind.MinusToken, num(-n, hex));
  return f.createNumericLiteral(hex && Number.isInteger(n) ? `0x${n.toString(16)}` : String(n));
}

/** A multi-line string (WGSL) as a template literal without substitutions: printed with its real newlines. */
export const text = (s: string): Expr => f.createNoSubstitutionTemplateLiteral(s);

/** A template literal `a${x}b${y}…`: strings are literal text, expressions are substitutions. */
export function template(...parts: (string | Expr)[]): Expr {
  const heads: string[] = [''];
  const subs: Expr[] = [];
  for (const p of parts) {
    if (typeof p === 'string') heads[heads.length - 1] += p;
    else {
      subs.push(p);
      heads.push('');
    }
  }
  if (!subs.length) return text(heads[0]);
  return f.createTemplateExpression(
    f.createTemplateHead(heads[0]),
    subs.map((e, k) => f.createTemplateSpan(e, k === subs.length - 1 ? f.createTemplateTail(heads[k + 1]) : f.createTemplateMiddle(heads[k + 1]))),
  );
}

const IDENT = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const propName = (key: string): ts.PropertyName => (IDENT.test(key) ? id(key) : str(key));

/** A JSON value as an expression; the outer `multiLineDepth` levels of objects and arrays get a line per item. */
export function json(v: Json, multiLineDepth = 0): Expr {
  if (v === null) return f.createNull();
  if (typeof v === 'string') return str(v);
  if (typeof v === 'number') return num(v);
  if (typeof v === 'boolean') return v ? f.createTrue() : f.createFalse();
  const ml = multiLineDepth > 0;
  if (Array.isArray(v)) return array((v as readonly Json[]).map((x) => json(x, multiLineDepth - 1)), ml);
  return obj(Object.fromEntries(Object.entries(v as Record<string, Json>).map(([k, x]) => [k, json(x, multiLineDepth - 1)])), ml);
}

export const array = (items: readonly Expr[], multiLine = false): Expr => f.createArrayLiteralExpression([...items], multiLine);

export function obj(props: Readonly<Record<string, Expr>>, multiLine = false): Expr {
  return f.createObjectLiteralExpression(
    Object.entries(props).map(([k, v]) => (ts.isIdentifier(v) && v.text === k ? f.createShorthandPropertyAssignment(k) : f.createPropertyAssignment(propName(k), v))),
    multiLine,
  );
}

/** `e as const`. */
export const asConst = (e: Expr): Expr => f.createAsExpression(e, f.createTypeReferenceNode('const'));

/** a.b.c from an expression or a name. */
export function prop(base: Expr | string, ...names: string[]): Expr {
  return names.reduce<Expr>((e, n) => f.createPropertyAccessExpression(e, n), typeof base === 'string' ? id(base) : base);
}

export const call = (callee: Expr | string, ...args: Expr[]): Expr => f.createCallExpression(typeof callee === 'string' ? id(callee) : callee, undefined, args);
export const method = (base: Expr | string, name: string, ...args: Expr[]): Expr => call(prop(base, name), ...args);
export const newExpr = (cls: string, args: Expr[], typeArgs?: ts.TypeNode[]): Expr => f.createNewExpression(id(cls), typeArgs, args);
export const index = (base: Expr | string, i: Expr): Expr => f.createElementAccessExpression(typeof base === 'string' ? id(base) : base, i);
export const not = (e: Expr): Expr => f.createPrefixUnaryExpression(ts.SyntaxKind.ExclamationToken, e);
export const await_ = (e: Expr): Expr => f.createAwaitExpression(e);
export const spread = (e: Expr): Expr => f.createSpreadElement(e);
export const cond = (c: Expr, a: Expr, b: Expr): Expr => f.createConditionalExpression(c, f.createToken(ts.SyntaxKind.QuestionToken), a, f.createToken(ts.SyntaxKind.ColonToken), b);

const BINARY = {
  '+': ts.SyntaxKind.PlusToken,
  '-': ts.SyntaxKind.MinusToken,
  '*': ts.SyntaxKind.AsteriskToken,
  '/': ts.SyntaxKind.SlashToken,
  '|': ts.SyntaxKind.BarToken,
  '<': ts.SyntaxKind.LessThanToken,
  '<=': ts.SyntaxKind.LessThanEqualsToken,
  '===': ts.SyntaxKind.EqualsEqualsEqualsToken,
  '!==': ts.SyntaxKind.ExclamationEqualsEqualsToken,
  '||': ts.SyntaxKind.BarBarToken,
  '&&': ts.SyntaxKind.AmpersandAmpersandToken,
  '=': ts.SyntaxKind.EqualsToken,
} as const;

export const bin = (a: Expr, op: keyof typeof BINARY, b: Expr): Expr => f.createBinaryExpression(a, BINARY[op], b);
/** a op b op c … (left-associative). */
export const chain = (op: keyof typeof BINARY, first: Expr, ...rest: Expr[]): Expr => rest.reduce((acc, e) => bin(acc, op, e), first);

// ---- types --------------------------------------------------------------------------------------------------
export const typeRef = (name: string, ...args: ts.TypeNode[]): ts.TypeNode => f.createTypeReferenceNode(name, args.length ? args : undefined);
export const numberT = (): ts.TypeNode => f.createKeywordTypeNode(ts.SyntaxKind.NumberKeyword);
export const stringT = (): ts.TypeNode => f.createKeywordTypeNode(ts.SyntaxKind.StringKeyword);
export const booleanT = (): ts.TypeNode => f.createKeywordTypeNode(ts.SyntaxKind.BooleanKeyword);
export const literalT = (s: string): ts.TypeNode => f.createLiteralTypeNode(str(s));
export const unionT = (...ts_: ts.TypeNode[]): ts.TypeNode => f.createUnionTypeNode(ts_);
export const tupleT = (...ts_: ts.TypeNode[]): ts.TypeNode => ts.setEmitFlags(f.createTupleTypeNode(ts_), ts.EmitFlags.SingleLine);
export const arrayT = (t: ts.TypeNode): ts.TypeNode => f.createArrayTypeNode(t);
export const readonlyArrayT = (t: ts.TypeNode): ts.TypeNode => f.createTypeOperatorNode(ts.SyntaxKind.ReadonlyKeyword, f.createArrayTypeNode(t));
export const fnT = (params: readonly [string, ts.TypeNode][], ret: ts.TypeNode): ts.TypeNode => f.createFunctionTypeNode(undefined, params.map(([n, t]) => param(n, t)), ret);

export interface Member {
  readonly name: string;
  readonly type: ts.TypeNode;
  readonly doc?: string;
  readonly readonly?: boolean;
}

function members(ms: readonly Member[]): ts.TypeElement[] {
  return ms.map((m) =>
    doc(
      f.createPropertySignature(m.readonly === false ? undefined : [f.createModifier(ts.SyntaxKind.ReadonlyKeyword)], propName(m.name), undefined, m.type),
      m.doc,
    ),
  );
}

/** An object type `{ readonly a: A; … }`, on one line (members with docs need `interfaceDecl`). */
export const typeLit = (ms: readonly Member[]): ts.TypeNode => ts.setEmitFlags(f.createTypeLiteralNode(members(ms)), ts.EmitFlags.SingleLine);

// ---- functions and statements -------------------------------------------------------------------------------
export const param = (name: string, type?: ts.TypeNode): ts.ParameterDeclaration => f.createParameterDeclaration(undefined, undefined, name, undefined, type);

export function arrow(params: readonly (string | ts.ParameterDeclaration)[], body: Expr | readonly ts.Statement[], opts: { ret?: ts.TypeNode; async?: boolean } = {}): Expr {
  const ps = params.map((p) => (typeof p === 'string' ? param(p) : p));
  const b = Array.isArray(body) ? f.createBlock([...(body as readonly ts.Statement[])], true) : (body as Expr);
  // An object literal body needs parentheses to be read as an expression.
  const expr = !Array.isArray(body) && ts.isObjectLiteralExpression(b as Expr) ? f.createParenthesizedExpression(b as Expr) : b;
  return f.createArrowFunction(opts.async ? [f.createModifier(ts.SyntaxKind.AsyncKeyword)] : undefined, undefined, ps, opts.ret, f.createToken(ts.SyntaxKind.EqualsGreaterThanToken), expr as ts.ConciseBody);
}

export function fn(
  name: string,
  params: readonly ts.ParameterDeclaration[],
  ret: ts.TypeNode,
  body: readonly ts.Statement[],
  opts: { exported?: boolean; async?: boolean } = {},
): ts.FunctionDeclaration {
  const mods = [...(opts.exported ? [f.createModifier(ts.SyntaxKind.ExportKeyword)] : []), ...(opts.async ? [f.createModifier(ts.SyntaxKind.AsyncKeyword)] : [])];
  return f.createFunctionDeclaration(mods.length ? mods : undefined, undefined, name, undefined, [...params], ret, f.createBlock([...body], true));
}

function variable(kind: ts.NodeFlags, name: string | ts.BindingName, init: Expr | undefined, type?: ts.TypeNode, exported = false): ts.VariableStatement {
  return f.createVariableStatement(
    exported ? [f.createModifier(ts.SyntaxKind.ExportKeyword)] : undefined,
    f.createVariableDeclarationList([f.createVariableDeclaration(name, undefined, type, init)], kind),
  );
}

export const constStmt = (name: string | ts.BindingName, init: Expr, type?: ts.TypeNode, exported = false) => variable(ts.NodeFlags.Const, name, init, type, exported);
export const letStmt = (name: string, init: Expr | undefined, type?: ts.TypeNode) => variable(ts.NodeFlags.Let, name, init, type);
/** const [a, b, c] = init / const { a, b } = init. */
export const destructure = (names: readonly string[], init: Expr, as: 'array' | 'object'): ts.VariableStatement =>
  constStmt(
    as === 'array'
      ? f.createArrayBindingPattern(names.map((n) => f.createBindingElement(undefined, undefined, n)))
      : f.createObjectBindingPattern(names.map((n) => f.createBindingElement(undefined, undefined, n))),
    init,
  );

export const exprStmt = (e: Expr): ts.Statement => f.createExpressionStatement(e);
export const ret = (e?: Expr): ts.Statement => f.createReturnStatement(e);
const block = (stmts: readonly ts.Statement[]): ts.Block => f.createBlock([...stmts], true);
export const ifStmt = (c: Expr, then: readonly ts.Statement[], otherwise?: readonly ts.Statement[]): ts.Statement =>
  f.createIfStatement(c, block(then), otherwise ? block(otherwise) : undefined);
export const throwError = (...message: (string | Expr)[]): ts.Statement => f.createThrowStatement(newExpr('Error', [template(...message)]));
export const forOf = (name: string, of: Expr, body: readonly ts.Statement[]): ts.Statement =>
  f.createForOfStatement(undefined, f.createVariableDeclarationList([f.createVariableDeclaration(name)], ts.NodeFlags.Const), of, block(body));
export const tryFinally = (body: readonly ts.Statement[], fin: readonly ts.Statement[]): ts.Statement => f.createTryStatement(block(body), undefined, block(fin));

export function interfaceDecl(name: string, ms: readonly Member[], exported = false): ts.InterfaceDeclaration {
  return f.createInterfaceDeclaration(exported ? [f.createModifier(ts.SyntaxKind.ExportKeyword)] : undefined, name, undefined, undefined, members(ms));
}

export function typeAlias(name: string, type: ts.TypeNode, exported = false): ts.TypeAliasDeclaration {
  return f.createTypeAliasDeclaration(exported ? [f.createModifier(ts.SyntaxKind.ExportKeyword)] : undefined, name, undefined, type);
}

/** Attaches a JSDoc comment (one or more lines) to a node. */
export function doc<T extends ts.Node>(node: T, text: string | undefined): T {
  if (!text) return node;
  const lines = text.split('\n');
  const body = lines.length === 1 ? `* ${lines[0]} ` : `*\n${lines.map((l) => (l ? ` * ${l}` : ' *')).join('\n')}\n `;
  return ts.addSyntheticLeadingComment(node, ts.SyntaxKind.MultiLineCommentTrivia, body.replace(/\*\//g, '*\\/'), true);
}

/** Attaches `// …` line comments above a node. */
export function lineComments<T extends ts.Node>(node: T, text: string): T {
  for (const l of text.split('\n')) ts.addSyntheticLeadingComment(node, ts.SyntaxKind.SingleLineCommentTrivia, l ? ` ${l}` : '', true);
  return node;
}

/** Prints top-level statements as a module, a blank line between declarations. */
export function printModule(statements: readonly ts.Statement[]): string {
  const file = ts.createSourceFile('module.ts', '', ts.ScriptTarget.ES2022, false, ts.ScriptKind.TS);
  const printer = ts.createPrinter({ newLine: ts.NewLineKind.LineFeed });
  return statements.map((s) => printer.printNode(ts.EmitHint.Unspecified, s, file)).join('\n\n') + '\n';
}
