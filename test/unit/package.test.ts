/**
 * `npm run package` (scripts/package.mjs): the linux-x64 .vsix holds only what runs — production
 * bundles, media, manifest/README/CHANGELOG/LICENSE and onnxruntime-node with the linux-x64 binding —
 * and stays under 30 MB. Also checks the marketplace manifest: walkthrough steps and their media,
 * command categories and icons for commands shown in menus, settings with descriptions (and enum
 * descriptions for enums).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { RangeFile } from '../../src/core/formats/fileio';
import { readZipDirectory } from '../../src/core/formats/torchzip';

const ROOT = path.join(__dirname, '..', '..', '..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));

test('npm run package: linux-x64 .vsix with only what runs, ≤ 30 MB', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-vsix-'));
  try {
    const out = path.join(tmp, `${pkg.name}-${pkg.version}-linux-x64.vsix`);
    execFileSync(process.execPath, [path.join(ROOT, 'scripts', 'package.mjs'), '--target', 'linux-x64', '--out', out], { cwd: ROOT, stdio: 'pipe' });
    const size = fs.statSync(out).size;
    console.log(`${path.basename(out)}: ${(size / 2 ** 20).toFixed(1)} MB`);
    assert.ok(size <= 30 * 2 ** 20, `${size} bytes > 30 MB`);
    const f = RangeFile.open(out);
    const names = readZipDirectory(f).map((e) => e.name).filter((n) => !n.endsWith('/'));
    f.close();
    const ext = names.filter((n) => n.startsWith('extension/')).map((n) => n.slice('extension/'.length));
    assert.ok(names.includes('extension.vsixmanifest'));
    // what runs
    const must = [
      'package.json', 'dist/extension.js', 'dist/worker.js', 'media/icon.png', 'media/lora-lens.svg', 'media/webview.css',
      'node_modules/onnxruntime-node/package.json', 'node_modules/onnxruntime-node/dist/index.js', 'node_modules/onnxruntime-node/dist/binding.js',
      'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/onnxruntime_binding.node', 'node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime.so.1',
      'node_modules/onnxruntime-common/package.json', 'node_modules/onnxruntime-common/dist/cjs/index.js',
      ...fs.readdirSync(path.join(ROOT, 'webview')).filter((d) => fs.existsSync(path.join(ROOT, 'webview', d, 'main.ts'))).map((d) => `dist/webview/${d}.js`),
      ...pkg.contributes.walkthroughs.flatMap((w: { steps: { media: { markdown?: string; image?: string } }[] }) => w.steps.map((s) => s.media.markdown ?? s.media.image)),
    ];
    for (const m of must) assert.ok(ext.includes(m), `${m} is in the package`);
    assert.ok(ext.some((n) => /^readme\.md$/i.test(n)) && ext.some((n) => /^changelog\.md$/i.test(n)) && ext.some((n) => /^license/i.test(n)));
    // nothing else
    const allowed = /^(package\.json|readme\.md|changelog\.md|license(\.txt)?|dist\/(extension|worker)\.js|dist\/webview\/[a-z]+\.js|media\/[^/]+\.(css|png|svg)|media\/(walkthrough|screenshots)\/[a-z-]+\.(md|png|svg)|node_modules\/onnxruntime-node\/(package\.json|dist\/[a-z]+\.js|bin\/napi-v6\/linux\/x64\/[^/]+)|node_modules\/onnxruntime-common\/(package\.json|dist\/cjs\/(.+\.js|package\.json)))$/i;
    const stray = ext.filter((n) => !allowed.test(n));
    assert.deepEqual(stray, [], 'only runtime files');
    for (const bad of [/\.ts$/, /\.map$/, /(^|\/)(src|test|tests|fixtures|bench|out|docs|scripts)\//, /napi-v6\/(darwin|win32|linux\/arm64)/, /dist\/cli\.js$/]) {
      assert.deepEqual(ext.filter((n) => bad.test(n)), [], `nothing matching ${bad}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('manifest: walkthrough, command categories and menu icons, documented settings', () => {
  const c = pkg.contributes;
  const w = c.walkthroughs?.[0];
  assert.ok(w, 'a Getting Started walkthrough');
  assert.deepEqual(w.steps.map((s: { id: string }) => s.id), ['openAdapter', 'analyze', 'setBase', 'rebalance', 'train']);
  const commands = new Map<string, { category?: string; icon?: string; title: string }>(c.commands.map((x: { command: string }) => [x.command, x]));
  for (const s of w.steps) {
    assert.ok(s.title && s.description, `step ${s.id} has a title and a description`);
    const md = s.media.markdown;
    assert.ok(md && fs.statSync(path.join(ROOT, md)).size > 200, `step ${s.id} media ${md}`);
    for (const m of String(s.description).matchAll(/\(command:([\w.]+)\)/g)) {
      assert.ok(commands.has(m[1]) || m[1].startsWith('workbench.'), `step ${s.id} links an existing command ${m[1]}`);
    }
    assert.ok(s.completionEvents?.length, `step ${s.id} completes on an event`);
  }
  for (const [id, x] of commands) assert.equal(x.category, 'LoRA Lens', `${id} has the LoRA Lens category`);
  for (const [where, items] of Object.entries(c.menus as Record<string, { command: string }[]>)) {
    if (where === 'commandPalette') continue;
    for (const it of items) assert.ok(commands.get(it.command)?.icon, `${it.command} (shown in ${where}) has an icon`);
  }
  for (const [key, s] of Object.entries(c.configuration.properties as Record<string, Record<string, unknown>>)) {
    assert.ok(s.description || s.markdownDescription, `${key} has a description`);
    if (s.enum) assert.equal((s.enumDescriptions as unknown[] | undefined)?.length ?? (s.markdownEnumDescriptions as unknown[] | undefined)?.length, (s.enum as unknown[]).length, `${key} describes every enum value`);
  }
  assert.ok(fs.existsSync(path.join(ROOT, 'CHANGELOG.md')));
  assert.match(fs.readFileSync(path.join(ROOT, 'CHANGELOG.md'), 'utf8'), new RegExp(`## ${pkg.version.replace(/\./g, '\\.')}`));
});
