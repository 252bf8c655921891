// `npm run package [-- --target T] [--out FILE]`: builds lora-lens-<version>-<target>.vsix in the repo root.
//
// Only what runs goes in: the production bundles (minified, no source maps: extension host, analysis
// worker, webviews — the CLI is not part of the extension), media/ (icons, CSS, walkthrough, README screenshots), the
// manifest, README, CHANGELOG, LICENSE, and onnxruntime-node (JS + the native binding of ONE platform)
// with onnxruntime-common. Everything else (chart.js, tokenizers, onnx-proto) is inside the bundles.
//
// The package is assembled in a staging folder (.package/<target>/) and handed to @vscode/vsce with
// an allow-list .vscodeignore, so nothing from the development tree (sources,
// tests, fixtures, benchmarks, other platforms' binaries, dev dependencies) can slip in.
//
// Targets (VS Code platform names → onnxruntime-node binaries shipped in its npm package):
//   linux-x64 (default), linux-arm64, darwin-arm64, win32-x64, win32-arm64.
// onnxruntime-node 1.30 ships no darwin-x64 binary, so there is no darwin-x64 package.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TARGETS = { 'linux-x64': 'linux/x64', 'linux-arm64': 'linux/arm64', 'darwin-arm64': 'darwin/arm64', 'win32-x64': 'win32/x64', 'win32-arm64': 'win32/arm64' };

const argv = process.argv.slice(2);
const ti = argv.indexOf('--target');
const target = ti >= 0 ? argv[ti + 1] : 'linux-x64';
if (!TARGETS[target]) {
  console.error(`error: unknown target "${target}" (${Object.keys(TARGETS).join(', ')})`);
  process.exit(2);
}

const pkg = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8'));
const oi = argv.indexOf('--out'); // --out FILE: write the .vsix elsewhere (tests)
const out = oi >= 0 ? path.resolve(argv[oi + 1]) : path.join(REPO, `${pkg.name}-${pkg.version}-${target}.vsix`);
const stage = path.join(REPO, '.package', target);
fs.rmSync(stage, { recursive: true, force: true });
fs.mkdirSync(stage, { recursive: true });

const copy = (rel, filter = () => true) => {
  const src = path.join(REPO, rel);
  if (!fs.existsSync(src)) throw new Error(`${rel} is missing`);
  fs.cpSync(src, path.join(stage, rel), { recursive: true, filter: (f) => filter(path.relative(src, f)) });
};

// 1. production bundles
console.log(`[package] production build → .package/${target}/dist`);
execFileSync(process.execPath, [path.join(REPO, 'scripts', 'build.mjs'), '--production', `--outdir=${path.join(stage, 'dist')}`], { cwd: REPO, stdio: 'inherit' });
fs.rmSync(path.join(stage, 'dist', 'cli.js'), { force: true }); // the CLI (bin lora-lens) is not used by the extension

// 2. manifest (no scripts, devDependencies or bin: they describe the development tree), docs, media
const manifest = { ...pkg };
for (const k of ['scripts', 'devDependencies', 'bin', 'private']) delete manifest[k];
manifest.dependencies = { 'onnxruntime-node': pkg.dependencies['onnxruntime-node'] };
fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
for (const f of ['README.md', 'CHANGELOG.md', 'LICENSE']) copy(f);
copy('media'); // includes the README screenshots (≈ 0.2 MB) so that the installed extension's README shows them

// 3. onnxruntime-node: JS, package.json, one platform's binding; onnxruntime-common's CommonJS build
const ort = 'node_modules/onnxruntime-node';
const bin = `bin/napi-v6/${TARGETS[target]}`;
copy(`${ort}/package.json`);
copy(`${ort}/dist`, (rel) => !rel.endsWith('.map') && !rel.endsWith('.d.ts'));
copy(`${ort}/${bin}`);
const common = 'node_modules/onnxruntime-common';
copy(`${common}/package.json`);
copy(`${common}/dist/cjs`, (rel) => !rel.endsWith('.map') && !rel.endsWith('.d.ts'));
// onnxruntime-node's adm-zip / global-agent dependencies and its postinstall only download optional
// CUDA/WebGPU binaries at install time; the packaged copy needs neither (vsce's `npm list` checks the tree).
const ortPkgFile = path.join(stage, ort, 'package.json');
const ortPkg = JSON.parse(fs.readFileSync(ortPkgFile, 'utf8'));
ortPkg.dependencies = { 'onnxruntime-common': ortPkg.dependencies['onnxruntime-common'] };
delete ortPkg.scripts;
fs.writeFileSync(ortPkgFile, JSON.stringify(ortPkg, null, 2) + '\n');

// 4. allow-list for vsce; vsce takes node_modules/ entries from `npm list --production` in the stage
fs.writeFileSync(path.join(stage, '.vscodeignore'), ['**', '!package.json', '!README.md', '!CHANGELOG.md', '!LICENSE', '!dist/**', '!media/**', '!node_modules/**', ''].join('\n'));

// 5. vsce
fs.rmSync(out, { force: true });
const vsce = path.join(REPO, 'node_modules', '@vscode', 'vsce', 'vsce');
console.log(`[package] vsce package --target ${target}`);
// Under `npm test` / `npm run`, the outer npm's npm_config_* variables (prefix, local_prefix…) would
// be inherited by vsce's `npm list` in the stage; give it a clean environment.
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
execFileSync(process.execPath, [vsce, 'package', '--target', target, '--allow-missing-repository', '--allow-star-activation', '--no-update-package-json', '--no-git-tag-version', '--no-rewrite-relative-links', '-o', out], { cwd: stage, stdio: 'inherit', env });
const mb = fs.statSync(out).size / 2 ** 20;
console.log(`[package] ${path.relative(REPO, out)} (${mb.toFixed(1)} MB)`);
if (mb > 30) {
  console.error(`error: ${path.basename(out)} is ${mb.toFixed(1)} MB, over the 30 MB budget`);
  process.exit(1);
}
