import { floatToHalf, halfToFloat } from '../src/io/safetensors.ts';
let bad = 0;
for (let h = 0; h < 65536; h++) { const x = halfToFloat(h); if (Number.isNaN(x)) continue; const back = floatToHalf(x); if (back !== h && !(x === 0)) { bad++; if (bad < 5) console.log(h, x, back); } }
// rounding: midpoints
console.log('bad', bad, floatToHalf(1 + 2**-11), floatToHalf(1 + 3*2**-11), floatToHalf(65520), floatToHalf(2**-25), floatToHalf(3*2**-26));
