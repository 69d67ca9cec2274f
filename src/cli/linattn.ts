// The process entry of the `linattn` command (bin/linattn.js, npm run linattn): runs main.ts on the process's
// arguments and exits with its code (explicitly: an open Dawn device would otherwise keep the process alive).
import { main } from './main.ts';

process.exit(await main(process.argv.slice(2)));
