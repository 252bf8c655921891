/**
 * Layering rules from docs/architecture.md, checked on the source text:
 * - nothing under src/core or src/shared imports 'vscode';
 * - src/shared imports no node: (or bare Node built-in) modules (it is loaded by webviews too);
 * - chart.js is never imported as 'chart.js/auto' in webview/ (tree-shaken registration only).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { builtinModules } from 'node:module';

const repoRoot = path.resolve(__dirname, '../../..');

function sources(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) { if (e.name !== 'node_modules') walk(f); } else if (/\.(ts|tsx|js|mjs|cjs|mts|cts)$/.test(e.name)) out.push(f);
    }
  };
  walk(path.join(repoRoot, dir));
  return out;
}

/** Module specifiers of import/export-from/require/import() in a source text (comments stripped). */
export function specifiers(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const out: string[] = [];
  const res = [
    /\bimport\s+(?:type\s+)?(?:[\w*{}\s,$]+\s+from\s+)?['"]([^'"]+)['"]/g,
    /\bexport\s+(?:type\s+)?[\w*{}\s,$]+\s+from\s+['"]([^'"]+)['"]/g,
    /\brequire\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
    /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of res) for (const m of code.matchAll(re)) out.push(m[1]);
  return out;
}

test('the import scanner itself finds the forms it must catch', () => {
  const s = specifiers(`import * as vscode from 'vscode';\nimport type { X } from "vscode";\nconst v = require('vscode');\nexport { a } from 'node:fs';\nawait import('chart.js/auto');\n// import 'commented';`);
  assert.deepEqual(s.sort(), ['chart.js/auto', 'node:fs', 'vscode', 'vscode', 'vscode']);
});

test('src/core and src/shared never import vscode', () => {
  const files = [...sources('src/core'), ...sources('src/shared')];
  assert.ok(files.length > 10, `only ${files.length} files scanned`);
  const bad = files.filter((f) => specifiers(fs.readFileSync(f, 'utf8')).some((s) => s === 'vscode' || s.startsWith('vscode/')));
  assert.deepEqual(bad.map((f) => path.relative(repoRoot, f)), []);
});

test('src/shared imports no Node built-in modules', () => {
  const builtins = new Set(builtinModules);
  const files = sources('src/shared');
  assert.ok(files.length > 0);
  const bad: string[] = [];
  for (const f of files) {
    for (const s of specifiers(fs.readFileSync(f, 'utf8'))) {
      if (s.startsWith('node:') || builtins.has(s) || builtins.has(s.split('/')[0])) bad.push(`${path.relative(repoRoot, f)}: ${s}`);
    }
  }
  assert.deepEqual(bad, []);
});

test("webview/ never imports 'chart.js/auto'", () => {
  const files = sources('webview');
  const bad = files.filter((f) => specifiers(fs.readFileSync(f, 'utf8')).some((s) => s === 'chart.js/auto'));
  assert.deepEqual(bad.map((f) => path.relative(repoRoot, f)), []);
});

// ---- layer rules of the house (issue 13)

const rel = (f: string): string => path.relative(repoRoot, f).split(path.sep).join('/');
const codeOf = (f: string): string => fs.readFileSync(f, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');

/** Repo-relative targets of a file's relative imports (`src/worker/client`), plus its bare package specifiers. */
function importsOf(f: string): { local: string[]; packages: string[] } {
  const local: string[] = [], packages: string[] = [];
  for (const s of specifiers(fs.readFileSync(f, 'utf8'))) {
    if (s.startsWith('.')) local.push(rel(path.resolve(path.dirname(f), s)));
    else packages.push(s);
  }
  return { local, packages };
}

function violations(files: string[], bad: (f: string, target: string) => boolean): string[] {
  const out: string[] = [];
  for (const f of files) for (const t of importsOf(f).local) if (bad(f, t)) out.push(`${rel(f)} → ${t}`);
  return out;
}

const hostFiles = (): string[] => [...sources('src/host'), path.join(repoRoot, 'src/extension.ts')];

test('src/host has no synchronous file-system call (reading and parsing run in the worker or async)', () => {
  const files = hostFiles();
  assert.ok(files.length > 10);
  const bad: string[] = [];
  for (const f of files) {
    const code = codeOf(f);
    for (const m of code.matchAll(/\b(\w+Sync)\s*\(/g)) bad.push(`${rel(f)}: ${m[1]}`);
    for (const s of specifiers(fs.readFileSync(f, 'utf8'))) if (s === 'fs' || s === 'node:fs') {
      // only type imports of node:fs (e.g. Dirent) are allowed
      if (!new RegExp(`import\\s+type\\s+[^;]*from\\s+['"]${s}['"]`).test(code)) bad.push(`${rel(f)}: imports ${s}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('the host imports src/worker only through its client', () => {
  assert.deepEqual(violations(hostFiles(), (_f, t) => t.startsWith('src/worker/') && t !== 'src/worker/client'), []);
});

test('src/worker imports no webview/ and no host code', () => {
  assert.deepEqual(violations(sources('src/worker'), (_f, t) => t.startsWith('webview/') || t.startsWith('src/host/') || t === 'src/extension'), []);
});

test('src/shared imports only src/shared; webview/ imports only webview/ and src/shared', () => {
  assert.deepEqual(violations(sources('src/shared'), (_f, t) => !t.startsWith('src/shared/')), []);
  assert.deepEqual(violations(sources('webview'), (_f, t) => !t.startsWith('webview/') && !t.startsWith('src/shared/')), []);
});

test('src/core imports no host, worker or webview code; only demo and the CLI import core/demo', () => {
  const files = sources('src/core');
  assert.deepEqual(violations(files, (_f, t) => t.startsWith('src/host/') || t.startsWith('src/worker/') || t.startsWith('webview/')), []);
  assert.deepEqual(violations(files, (f, t) => t.startsWith('src/core/demo/') && !rel(f).startsWith('src/core/demo/') && rel(f) !== 'src/core/cli.ts'), []);
});

test('job kinds are spelled once, in src/shared/jobs.ts', () => {
  const jobsFile = path.join(repoRoot, 'src/shared/jobs.ts');
  const kinds = [...codeOf(jobsFile).matchAll(/\bjob<[^;]*?>\(\s*'([^']+)'\s*\)/g)].map((m) => m[1]);
  assert.ok(kinds.length >= 20, `only ${kinds.length} job descriptors found`);
  assert.equal(new Set(kinds).size, kinds.length, 'a job kind is declared twice');
  const files = [...sources('src'), ...sources('webview'), ...sources('test/unit')].filter((f) => f !== jobsFile && !f.endsWith('architecture.test.ts'));
  const bad: string[] = [];
  for (const f of files) {
    const code = codeOf(f);
    for (const k of kinds) if (code.includes(`'${k}'`) || code.includes(`"${k}"`) || code.includes(`\`${k}\``)) bad.push(`${rel(f)}: '${k}'`);
  }
  assert.deepEqual(bad, []);
});

test('no registration at import time: no bare side-effect imports in src/worker/jobs or src/host, no registerJob', () => {
  const bad: string[] = [];
  for (const f of [...sources('src/worker/jobs'), ...hostFiles()]) {
    const code = codeOf(f);
    for (const m of code.matchAll(/^\s*import\s+['"]([^'"]+)['"]/gm)) bad.push(`${rel(f)}: import '${m[1]}'`);
    if (/\bregisterJob\s*\(/.test(code)) bad.push(`${rel(f)}: registerJob`);
  }
  assert.deepEqual(bad, []);
});

test('one execution-provider type (src/shared/provider.ts)', () => {
  const files = [...sources('src'), ...sources('webview')].filter((f) => rel(f) !== 'src/shared/provider.ts');
  const bad = files.filter((f) => /'cpu'\s*\|\s*'webgpu'|'webgpu'\s*\|\s*'cuda'/.test(codeOf(f))).map(rel);
  assert.deepEqual(bad, []);
});

test('webview panels are created and wired only by the LensPanel base (src/host/panel.ts, with its HTML shell webviewHtml.ts)', () => {
  const bad: string[] = [];
  for (const f of hostFiles()) {
    if (rel(f) === 'src/host/panel.ts' || rel(f) === 'src/host/webviewHtml.ts') continue;
    const code = codeOf(f);
    for (const api of ['createWebviewPanel(', 'webview.html', 'onDidReceiveMessage', 'webviewHtml(']) {
      if (code.includes(`vscode.window.${api}`) || (api !== 'createWebviewPanel(' && code.includes(api))) bad.push(`${rel(f)}: ${api}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('no side-effect registration of readers: open.ts imports them, formats/register.ts is empty and imported by nobody', () => {
  const open = codeOf(path.join(repoRoot, 'src/core/formats/open.ts'));
  assert.ok(!/\bexport\s+const\s+readers\b/.test(open), 'open.ts must not keep a mutable readers registry');
  for (const m of ['./gguf', './sdlora', './torchzip', './peftbin']) assert.ok(specifiers(open).includes(m), `open.ts imports ${m} directly`);
  const reg = path.join(repoRoot, 'src/core/formats/register.ts');
  if (fs.existsSync(reg)) assert.equal(codeOf(reg).replace(/\bexport\s*\{\s*\};?/, '').trim(), '', 'register.ts has no statements');
  // Product code only: a test file importing the empty module is a harmless leftover (other branches still add them).
  const bad = sources('src').filter((f) => specifiers(fs.readFileSync(f, 'utf8')).some((s) => /formats\/register$/.test(s))).map(rel);
  assert.deepEqual(bad, []);
});

test('the host takes display helpers from src/shared, not from core readers (core/formats/open)', () => {
  const bad = hostFiles().filter((f) => specifiers(fs.readFileSync(f, 'utf8')).some((s) => /core\/formats\/open$/.test(s))).map(rel);
  assert.deepEqual(bad, []);
});

test('one "path from a command argument" helper (argTarget in src/host/ui.ts)', () => {
  const pending = new Set<string>();
  const bad: string[] = [];
  for (const f of hostFiles()) {
    if (rel(f) === 'src/host/ui.ts' || pending.has(rel(f))) continue;
    const m = /\bfunction\s+(argPath|argTarget|adapterArg|pathArg)\s*\(/.exec(codeOf(f));
    if (m) bad.push(`${rel(f)}: ${m[1]}`);
  }
  assert.deepEqual(bad, []);
});
