// `npm start`'s last step: runs code-server (VS Code in the browser) on the demo workspace with
// LoRA Lens installed from this checkout, prints the URL and waits until Ctrl+C.
// Port: $PORT (default: a free port). Uses the e2e harness's launcher.
import { startCodeServer } from '../test/e2e/harness.mjs';

const workspace = process.argv[2] ?? 'demo-workspace';
const server = await startCodeServer({ workspace, port: process.env.PORT ? Number(process.env.PORT) : undefined });
console.log(`\nLoRA Lens demo is running in VS Code (code-server):\n\n  ${server.url}\n\nOpen it in a browser. Logs: ${server.logFile}. Ctrl+C to stop.`);
const stop = async () => { await server.stop(); process.exit(0); };
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
setInterval(() => {}, 1 << 30);
