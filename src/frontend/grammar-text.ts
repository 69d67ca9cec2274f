// Generated from grammar/linattn.ohm by `npm run grammar` (src/cli/grammar-module.ts): edit the grammar, not this.
export const GRAMMAR_SOURCE = `// The linattn language: an attention variant is a sum of masked terms (see shared DESIGN.md §1).
//
//   variant elu_dwconv
//   size K = 4
//   input q[h, d], k[h, d], v[h, e]
//   param w[h, e, K]
//   let fq = elu(q) + 1
//   let fk = elu(k) + 1
//   term lin  : causal    score dot(fq[i], fk[j], d)  value v
//   term conv : window(K) score w[K = lag]            value v
//   output normalize(lin, 1e-6) + conv
//
// Per-token tensors are read at the query position (x[i]) or the key position (x[j]) inside
// scores; \`i\`, \`j\` and \`lag\` (= i − j) are the positions. Semantic actions live in src/frontend/.
LinAttn {
  Program    = Header Decl* end
  Header     = "variant" ident

  Decl       = SizeDecl | InputDecl | ParamDecl | LetDecl | TermDecl | OutputDecl
  SizeDecl   = "size" ident "=" number
  InputDecl  = "input" NonemptyListOf<TensorDecl, ",">
  ParamDecl  = "param" NonemptyListOf<TensorDecl, ",">
  TensorDecl = ident "[" ListOf<ident, ","> "]"
  LetDecl    = "let" ident "=" Expr
  TermDecl   = "term" ident ":" noncausal? Mask "score" Expr "value" Expr
  OutputDecl = "output" NonemptyListOf<OutItem, "+">

  Mask       = NonemptyListOf<MaskAtom, "&">
  MaskAtom   = ident "(" Expr ")"                                   -- sized
             | ident                                                -- bare

  OutItem    = "normalize" "(" NonemptyListOf<ident, "+"> "," Expr ")"   -- norm
             | ident                                                -- term

  Expr       = AddExpr
  AddExpr    = AddExpr "+" MulExpr                                  -- add
             | AddExpr "-" MulExpr                                  -- sub
             | MulExpr
  MulExpr    = MulExpr "*" UnaryExpr                                -- mul
             | MulExpr "/" UnaryExpr                                -- div
             | MulExpr "@" UnaryExpr                                -- matmul
             | UnaryExpr
  UnaryExpr  = "-" UnaryExpr                                        -- neg
             | PowExpr
  PowExpr    = Postfix "**" UnaryExpr                               -- pow
             | Postfix
  Postfix    = Postfix "[" NonemptyListOf<IndexArg, ","> "]"        -- index
             | Primary
  IndexArg   = ident "=" Expr                                       -- named
             | Expr                                                 -- position
  Primary    = ident "(" ListOf<Expr, ","> ")"                      -- call
             | "(" Expr ")"                                         -- paren
             | number                                               -- number
             | ident                                                -- name

  keyword    = ("variant" | "size" | "input" | "param" | "let" | "term" | "score" | "value"
               | "output" | "normalize" | "noncausal") ~identRest
  noncausal  = "noncausal" ~identRest
  ident      = ~keyword identStart identRest*
  identStart = letter | "_"
  identRest  = alnum | "_"
  number     = digit+ ("." digit+)? (("e" | "E") ("+" | "-")? digit+)?

  space     += comment
  comment    = "#" (~"\\n" any)*
}
`;
