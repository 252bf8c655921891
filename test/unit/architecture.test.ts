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
