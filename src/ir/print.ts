// IR → text. The text reads back with src/ir/read.ts, so tests can write IR in and compare IR out.
import { maskToString } from './masks.ts';
import { ropeSpecText } from './rope.ts';
import { decayNode } from './terms.ts';
import { assertNever, type AxisDef, type Node, type OutputItem, type Program, type Term } from './types.ts';

const ref = (id: number) => `%${id}`;

function axisDef(d: AxisDef): string {
  switch (d.kind) {
    case 'free': return 'free';
    case 'size': return `size ${d.value}`;
    case 'concat': return `concat(${d.parts.map((p) => p ?? '1').join(', ')})`;
    case 'outer': return `outer(${d.of})`;
    default: return assertNever(d, 'axis');
  }
}

export function printNode(n: Node): string {
  let body: string;
  switch (n.op) {
    case 'input':
    case 'param':
      body = `${n.op} ${n.name}[${n.type.axes.join(', ')}]`;
      break;
    case 'const': body = `const ${n.value}`; break;
    case 'position': body = `position ${n.which}`; break;
    case 'unary': body = `${n.fn} ${ref(n.x)}`; break;
    case 'binary': body = `${n.fn} ${ref(n.a)} ${ref(n.b)}`; break;
    case 'sum':
    case 'norm':
    case 'softmax': body = `${n.op} ${ref(n.x)} over ${n.axis}`; break;
    case 'matmul': body = `matmul ${ref(n.a)} ${ref(n.b)} over ${n.axis}`; break;
    case 'concat': body = `concat ${n.xs.map(ref).join(' ')} along (${n.parts.map((p) => p ?? '1').join(', ')}) as ${n.axis}`; break;
    case 'outer': body = `outer ${ref(n.x)} over ${n.from} as ${n.axis}`; break;
    case 'at': body = `at.${n.which} ${ref(n.x)}`; break;
    case 'select': body = `select ${ref(n.x)} ${n.axis} = ${ref(n.index)}`; break;
    case 'decay': body = `decay ${ref(n.x)}`; break;
    case 'rope': body = `rope ${ref(n.x)} over ${n.axis} ${ropeSpecText(n.theta, n.scaling, n.sign)}`; break;
    default: return assertNever(n, 'op');
  }
  return `${ref(n.id)} = ${body}  : ${n.type.side}[${n.type.axes.join(', ')}]`;
}

export function printTerm(t: Term): string {
  const f = t.form;
  let form: string;
  switch (f.kind) {
    case 'general': form = 'general'; break;
    case 'quadratic': form = 'quadratic'; break;
    case 'softmax': form = `softmax logit ${ref(f.logit)}`; break;
    case 'toeplitz': form = `toeplitz lags ${f.lags[0]}..${f.lags[1]}`; break;
    case 'prefix': {
      const decay = f.decay ? ` decay ${f.decay.kind} ${ref(decayNode(f.decay))}` : '';
      form = `prefix phi ${ref(f.phi)} psi ${ref(f.psi)} feature ${f.feature ?? '-'}${decay}`;
      break;
    }
    default: form = assertNever(f, 'form');
  }
  return `term ${t.name} : ${t.noncausal ? 'noncausal ' : ''}${maskToString(t.mask)} score ${ref(t.score)} value ${ref(t.value)} form ${form}`;
}

function printOutput(items: readonly OutputItem[]): string {
  return items.map((o) => (o.kind === 'term' ? o.term : `normalize(${o.terms.join(' + ')}, ${o.eps})`)).join(' + ');
}

export function printProgram(p: Program): string {
  const lines = [`variant ${p.name}`];
  for (const [name, def] of Object.entries(p.axes)) lines.push(`axis ${name} ${axisDef(def)}`);
  for (const n of p.nodes) lines.push(printNode(n));
  for (const [name, id] of Object.entries(p.lets)) lines.push(`let ${name} = ${ref(id)}`);
  for (const t of p.terms) lines.push(printTerm(t));
  lines.push(`output ${printOutput(p.output)}  : [${p.outAxes.join(', ')}]`);
  return lines.join('\n') + '\n';
}
