// Issue 11.6 in a real VS Code (code-server), like a user: "LoRA Lens: Analyze DoRA Magnitudes" on
// the DoRA fixture (test/fixtures/peers/dora, no base_model_name_or_path → the base is picked in the
// open dialog), the panel's ‖ΔW_true‖_F and max angle equal `lora-lens dora --json`, the charts and
// the σ table are there; an adapter without DoRA modules is refused with one sentence.
// Screenshots at 1600×1000 and with the sidebar open at 1200 px (~900 px editor).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, launch, openView, pickQuickItem, runCli, runCommand, screenshot, selectors, waitForTreeItem, webviewFrame, step, runContextMenu } from './harness.mjs';

const FIX = path.join(REPO_ROOT, 'test', 'fixtures', 'peers');
const JOB_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 60000);
const ready = fs.existsSync(path.join(REPO_ROOT, 'dist', 'webview', 'dora.js')) && fs.existsSync(path.join(FIX, 'dora', 'base.safetensors'));

function tempWorkspace(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-e2e-dora-'));
  const ws = path.join(dir, 'ws');
  fs.mkdirSync(path.join(ws, 'adapters'), { recursive: true });
  fs.cpSync(path.join(FIX, 'dora', 'adapter'), path.join(ws, 'adapters', 'dora-q'), { recursive: true });
  fs.cpSync(path.join(FIX, 'merge', 'a0'), path.join(ws, 'adapters', 'plain-lora'), { recursive: true });
  fs.copyFileSync(path.join(FIX, 'dora', 'base.safetensors'), path.join(ws, 'base.safetensors'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return ws;
}

/** The simple open dialog (files.simpleDialog): waits for its start folder, types `target`, accepts. */
async function openDialog(page, target) {
  const input = await page.waitForSelector(selectors.quickInputBox, { state: 'visible', timeout: 30000 });
  await page.waitForFunction((sel) => /[\\/]$/.test(document.querySelector(sel)?.value ?? ''), selectors.quickInputBox, { timeout: 30000 });
  await page.waitForTimeout(500);
  await input.fill(target);
  await page.waitForFunction(({ sel, target }) => document.querySelector(sel)?.value === target, { sel: selectors.quickInputBox, target }, { timeout: 10000 });
  await page.waitForTimeout(500);
  await page.keyboard.press('Enter');
}

async function notificationText(page, re, timeout = 20000) {
  const h = await page.waitForFunction(({ src, flags }) => {
    const t = [...document.querySelectorAll('.notification-toast, .notifications-center .notification-list-item')].map((n) => n.textContent || '').join('\n');
    return new RegExp(src, flags).test(t) ? t : null;
  }, { src: re.source, flags: re.flags }, { timeout });
  return h.jsonValue();
}

test('Analyze DoRA Magnitudes in VS Code (code-server)', { timeout: 4 * 60 * 1000, skip: ready ? false : 'needs a build (dist/webview/dora.js)' }, async (t) => {
  const ws = tempWorkspace(t);
  const adapter = path.join(ws, 'adapters', 'dora-q');
  const base = path.join(ws, 'base.safetensors');
  const cli = JSON.parse(runCli(['dora', adapter, '--base', base, '--json']));
  const { page } = await launch(t, { workspace: ws, name: 'dora' });

  let frame;
  await step(page, 'dora-01-panel', 'Analyze DoRA Magnitudes on dora-q, base picked in the open dialog: the panel shows the CLI numbers', async () => {
    await openView(page, 'LoRA Lens');
    await runCommand(page, 'LoRA Lens: Analyze DoRA Magnitudes');
    await pickQuickItem(page, 'dora-q');
    // No base_model_name_or_path: the (simple) open dialog asks for the base folder or file.
    await openDialog(page, base);
    frame = await webviewFrame(page, 'DoRA: dora-q', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#dora-header[data-state="done"]', { timeout: JOB_TIMEOUT });
    assert.equal(await frame.$('#dora-error'), null, 'no error card');
    const m = cli.modules[0];
    const val = (sel) => frame.$eval(sel, (e) => Number(e.getAttribute('data-value')));
    const fro = await val('#dora-module-facts [data-fact="true-fro"] [data-value]');
    const angle = await val('#dora-module-facts [data-fact="max-angle"] [data-value]');
    assert.ok(Math.abs(fro - m.trueDelta.fro) <= 1e-9 * Math.max(1, m.trueDelta.fro), `‖ΔW_true‖_F ${fro} vs CLI ${m.trueDelta.fro}`);
    assert.ok(Math.abs(angle - m.summary.maxAngleDeg) <= 1e-9 * Math.max(1, m.summary.maxAngleDeg), `max angle ${angle} vs CLI ${m.summary.maxAngleDeg}`);
    // Summary table: one row per DoRA module, same numbers.
    const rows = await frame.$$eval('#dora-summary tbody tr', (trs) => trs.map((tr) => ({
      name: tr.getAttribute('data-module'),
      trueFro: Number(tr.querySelector('[data-metric="trueFro"]').getAttribute('data-value')),
      relDiff: Number(tr.querySelector('[data-metric="relDiff"]').getAttribute('data-value')),
    })));
    assert.deepEqual(rows.map((r) => r.name), cli.modules.map((x) => x.name));
    assert.ok(Math.abs(rows[0].relDiff - m.trueDelta.relDiffFromLora) < 1e-9);
    // Charts: row norms over every output row, the angle histogram, σ of the true ΔW next to s·B·A's.
    assert.equal(await frame.$eval('#dora-norms', (e) => Number(e.getAttribute('data-rows'))), m.magnitude.length);
    assert.equal(await frame.$eval('#dora-angles', (e) => Number(e.getAttribute('data-count'))), m.directionCos.length);
    await frame.waitForSelector('#dora-norms canvas');
    const sig = await frame.$$eval('#dora-sigma-table [data-metric^="true-sigma"]', (tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    assert.ok(Math.abs(sig[0] - m.trueDelta.sigma[0]) <= 1e-9 * m.trueDelta.sigma[0], `σ1 ${sig[0]} vs CLI ${m.trueDelta.sigma[0]}`);
    const lora = await frame.$$eval('#dora-sigma-table [data-metric^="lora-sigma"]', (tds) => tds.map((td) => Number(td.getAttribute('data-value'))).filter((x) => x > 0));
    assert.ok(lora.length >= 1 && lora.length <= 4, `s·B·A has rank ≤ 4: ${lora}`);
  });

  await step(page, 'dora-02-narrow', 'with the sidebar open at 1200 px the DoRA panel still fits', async () => {
    await page.setViewportSize({ width: 1200, height: 1000 });
    frame = await webviewFrame(page, 'DoRA: dora-q');
    await frame.waitForSelector('#dora-summary');
    const overflow = await frame.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.ok(overflow <= 2, `horizontal overflow ${overflow}px`);
    await screenshot(page, 'dora-02a-narrow');
    await frame.$eval('#dora-table', (e) => e.scrollIntoView());
    await screenshot(page, 'dora-02b-narrow-table');
    await page.setViewportSize({ width: 1600, height: 1000 });
  });

  await step(page, 'dora-03-tree-menu', 'the Checkpoints tree context menu of dora-q offers Analyze DoRA Magnitudes (base remembered, no dialog)', async () => {
    const before = await frame.$eval('#dora-header', (e) => e.getAttribute('data-updated'));
    assert.ok(before, 'the first run has a time stamp');
    await openView(page, 'LoRA Lens');
    const row = await waitForTreeItem(page, 'dora-q', { timeout: 30000 });
    await runContextMenu(page, row, 'Analyze DoRA Magnitudes', { timeout: 30000 });
    frame = await webviewFrame(page, 'DoRA: dora-q', { timeout: JOB_TIMEOUT });
    await frame.waitForFunction((b) => { const e = document.querySelector('#dora-header'); return e?.getAttribute('data-state') === 'done' && e.getAttribute('data-updated') !== b; }, before, { timeout: JOB_TIMEOUT });
    assert.equal(await frame.$$eval('#dora-summary tbody tr', (trs) => trs.length), cli.modules.length);
  });

  await step(page, 'dora-04-bad-base', 'Change base… to a folder without weights: the error stays in the panel; changing back analyses again', async () => {
    frame = await webviewFrame(page, 'DoRA: dora-q');
    await frame.click('#dora-change-base');
    await openDialog(page, path.join(ws, 'adapters'));
    await frame.waitForSelector('#dora-error', { timeout: JOB_TIMEOUT });
    assert.match(await frame.$eval('#dora-error', (e) => e.textContent), /adapters: has no safetensors weights/);
    await screenshot(page, 'dora-04a-error');
    await frame.click('#dora-change-base');
    await openDialog(page, base);
    await frame.waitForSelector('#dora-header[data-state="done"]', { timeout: JOB_TIMEOUT });
    assert.equal(await frame.$('#dora-error'), null);
  });

  await step(page, 'dora-05-refused', 'an adapter without DoRA modules is refused with one sentence', async () => {
    await runCommand(page, 'LoRA Lens: Analyze DoRA Magnitudes');
    await pickQuickItem(page, 'plain-lora');
    await notificationText(page, /plain-lora has no DoRA modules/);
  });
});
