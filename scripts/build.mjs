// One esbuild script, several entries: extension host, analysis worker, CLI, webviews.
import * as esbuild from 'esbuild';
import { chmodSync } from 'node:fs';

const production = process.argv.includes('--production');
// --outdir=DIR: write the bundles under DIR instead of dist/ (scripts/package.mjs stages a production build).
const outdir = (process.argv.find((a) => a.startsWith('--outdir=')) ?? '--outdir=dist').slice('--outdir='.length);
const watch = process.argv.includes('--watch');
const common = { bundle: true, sourcemap: !production, minify: production, logLevel: 'info' };
const node = { ...common, platform: 'node', format: 'cjs', target: 'node20', external: ['vscode', 'onnxruntime-node'] };
const browser = { ...common, platform: 'browser', format: 'iife', target: 'es2022' };

const builds0 = [
  { ...node, entryPoints: ['src/extension.ts'], outfile: 'dist/extension.js' },
  { ...node, entryPoints: ['src/worker/analysisWorker.ts'], outfile: 'dist/worker.js' },
  { ...node, entryPoints: ['src/core/cli.ts'], outfile: 'dist/cli.js', banner: { js: '#!/usr/bin/env node' } },
  { ...browser, entryPoints: ['webview/report/main.ts'], outfile: 'dist/webview/report.js' },
  { ...browser, entryPoints: ['webview/base/main.ts'], outfile: 'dist/webview/base.js' },
  { ...browser, entryPoints: ['webview/viewer/main.ts'], outfile: 'dist/webview/viewer.js' },
  { ...browser, entryPoints: ['webview/research/main.ts'], outfile: 'dist/webview/research.js' },
  { ...browser, entryPoints: ['webview/surgery/main.ts'], outfile: 'dist/webview/surgery.js' },
  { ...browser, entryPoints: ['webview/training/main.ts'], outfile: 'dist/webview/training.js' },
  ...['doctor', 'similarity', 'fleet', 'merge', 'extract', 'dora'].map((n) => ({ ...browser, entryPoints: [`webview/${n}/main.ts`], outfile: `dist/webview/${n}.js` })),
];
const builds = builds0.map((b) => ({ ...b, outfile: b.outfile.replace(/^dist\//, `${outdir}/`) }));

const { existsSync } = await import('node:fs');
const present = builds.filter((b) => existsSync(b.entryPoints[0]));
if (watch) {
  for (const b of present) await (await esbuild.context(b)).watch();
} else {
  await Promise.all(present.map((b) => esbuild.build(b)));
  if (existsSync(`${outdir}/cli.js`)) chmodSync(`${outdir}/cli.js`, 0o755);
}
