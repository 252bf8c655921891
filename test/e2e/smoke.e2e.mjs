// Smoke test of the e2e infrastructure itself: code-server + headless Chromium + the workbench.
// Independent of LoRA Lens: it runs on a temp workspace with a throw-away extension
// (test/e2e/fixtures/smoke-ext) linked exactly like the real one (symlink + extensions.json),
// so it proves that code-server picks up a linked extension and that every harness helper
// (command palette, quick open, tree view, hover, webview frames, custom editor) works on this
// code-server version's DOM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  editorText,
  expandTreeItem,
  hoverText,
  launch,
  openFile,
  openView,
  pickQuickItem,
  runCommand,
  screenshot,
  selectors,
  treeItems,
  waitForEditorText,
  waitForTreeItem,
  webviewFrame,
} from './harness.mjs';

const SMOKE_EXT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures', 'smoke-ext');

function makeWorkspace() {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-smoke-'));
  const ws = path.join(root, 'workspace');
  fs.mkdirSync(path.join(ws, 'sub'), { recursive: true });
  fs.writeFileSync(
    path.join(ws, 'hello.txt'),
    'Hello from the LoRA Lens e2e smoke test.\nsecond line\nload("adapters/smoke-adapter") here\n',
  );
  fs.writeFileSync(path.join(ws, 'sub', 'notes.md'), '# Notes\n\nnested file\n');
  const filler = Array.from({ length: 200 }, (_, i) => `filler line ${i}`).join('\n');
  fs.writeFileSync(path.join(ws, 'long.txt'), `${filler}\nfar away: "adapters/smoke-adapter"\n`);
  fs.writeFileSync(path.join(ws, 'sub', 'weights.smokebin'), Buffer.from([0, 1, 2, 3, 255, 254]));
  return { root, ws };
}

test('e2e harness: code-server + headless Chromium + linked extension', async (t) => {
  const { root, ws } = makeWorkspace();
  t.after(() => fs.rmSync(root, { recursive: true, force: true }));

  const { page } = await launch(t, { workspace: ws, extensions: [{ path: SMOKE_EXT }], name: 'smoke' });
  await screenshot(page, 'smoke-01-workbench');

  await t.test('explorer shows the workspace and files open via quick open', async () => {
    await page.waitForSelector(`${selectors.explorerRows}[aria-label*="hello.txt"]`);
    await openFile(page, 'sub/notes.md');
    await waitForEditorText(page, 'nested file');
    await openFile(page, 'hello.txt');
    await waitForEditorText(page, 'Hello from the LoRA Lens e2e smoke test.');
    assert.match(await editorText(page), /second line/);
    await screenshot(page, 'smoke-02-file-open');
  });

  await t.test('the linked extension runs on Node 24 (command palette + notification)', async () => {
    await runCommand(page, 'E2E Smoke: Say Hello');
    const toast = await page.waitForSelector(`${selectors.notificationToasts} >> text=/Hello from the linked smoke extension/`);
    assert.match(await toast.innerText(), /node v24\./);
    await screenshot(page, 'smoke-03-extension-command');
  });

  await t.test('hover provider', async () => {
    const text = await hoverText(page, 'adapters/smoke-adapter', { contains: 'rank' });
    assert.match(text, /rank 8/);
    await screenshot(page, 'smoke-04-hover');
    await page.keyboard.press('Escape');
    // Text scrolled out of view is revealed with the find widget first.
    await openFile(page, 'long.txt');
    assert.match(await hoverText(page, 'adapters/smoke-adapter', { contains: 'rank' }), /alpha 16/);
    await page.keyboard.press('Escape');
    await openFile(page, 'hello.txt');
  });

  await t.test('tree view in an activity bar container', async () => {
    await openView(page, 'Smoke Lens');
    await waitForTreeItem(page, 'smoke-adapter');
    await expandTreeItem(page, 'smoke-adapter');
    await expandTreeItem(page, 'layers.0');
    const rows = await treeItems(page);
    assert.ok(rows.includes('layers.0.q_proj r=8'), `rows: ${JSON.stringify(rows)}`);
    await screenshot(page, 'smoke-05-tree');
  });

  await t.test('webview panel via a command with a quick pick', async () => {
    await runCommand(page, 'E2E Smoke: Show Panel');
    await pickQuickItem(page, 'smoke-adapter');
    const frame = await webviewFrame(page, 'Smoke Panel');
    await frame.waitForSelector('canvas');
    const cell = await frame.textContent('#t tbody tr td:nth-child(2)');
    assert.equal(Number(cell), 1.235);
    await screenshot(page, 'smoke-06-webview');
  });

  await t.test('custom editor (webview) for a binary file', async () => {
    await openFile(page, 'sub/weights.smokebin');
    const frame = await webviewFrame(page, 'weights.smokebin');
    await frame.waitForSelector('text=tensor.alpha.weight');
    assert.match(await frame.textContent('#names'), /bytes: 6/);
    await screenshot(page, 'smoke-07-custom-editor');
  });
});
