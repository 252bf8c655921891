// Issue 11 in a real VS Code (code-server), like a user: Run Doctor (findings panel + Problems
// panel, re-run when the config changes, Markdown export through the save dialog), Compare
// Adapters (similarity heatmap, metric toggle, pair drill-down), Analyze Folder (streamed, sortable,
// filterable table), Combine Adapters (TIES preview → write → verified), Extract LoRA from a
// fine-tune (tiny-llama + demo-lora merged by the CLI in the setup), Export Report (HTML).
// Runs on a temp copy of demo-workspace; screenshots at 1600×1000 and with the sidebar at 1200 px.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT, launch, openView, pickQuickItem, runCli, runCommand, screenshot, selectors, waitForTreeItem, webviewFrame, step, runContextMenu } from './harness.mjs';

const DEMO = path.join(REPO_ROOT, 'demo-workspace');
const JOB_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);

function tempWorkspace(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-e2e-peers-'));
  const ws = path.join(dir, 'demo-workspace');
  fs.cpSync(DEMO, ws, { recursive: true });
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return ws;
}

/** Accepts the input box once it shows `value` (the command's default). */
async function acceptInput(page, value) {
  await page.waitForFunction(
    ({ sel, value }) => {
      const i = document.querySelector(sel);
      return !!i && i.offsetParent !== null && i.value === value;
    },
    { sel: selectors.quickInputBox, value },
    { timeout: 30000 },
  );
  await page.keyboard.press('Enter');
}

/** Multi-select quick pick: checks each label (exact), then accepts. */
async function pickMany(page, labels) {
  const input = await page.waitForSelector(selectors.quickInputBox, { state: 'visible', timeout: 30000 });
  for (const l of labels) {
    await input.fill(l);
    const row = await page.waitForFunction(({ sel, l }) => [...document.querySelectorAll(sel)].find((r) => (r.querySelector('.label-name')?.textContent || '').trim() === l) || null,
      { sel: selectors.quickInputRows, l }, { timeout: 30000 });
    const box = await row.asElement().$('.quick-input-list-checkbox, input[type="checkbox"], .monaco-custom-toggle');
    await (box ?? row.asElement()).click();
  }
  await input.fill('');
  await page.keyboard.press('Enter');
}

/** The simple save dialog (files.simpleDialog) shows the suggested path: accept it; returns that path. */
async function acceptSaveDialog(page) {
  const input = await page.waitForSelector(selectors.quickInputBox, { state: 'visible', timeout: 30000 });
  await page.waitForFunction((sel) => /\.(md|html)$/.test(document.querySelector(sel)?.value ?? ''), selectors.quickInputBox, { timeout: 30000 });
  const v = await input.inputValue();
  await page.keyboard.press('Enter');
  return v;
}

async function waitForFile(p, timeout = 60000) {
  const t0 = Date.now();
  while (!fs.existsSync(p)) {
    if (Date.now() - t0 > timeout) throw new Error(`${p} was not written`);
    await new Promise((r) => setTimeout(r, 250));
  }
  await new Promise((r) => setTimeout(r, 200));
  return fs.readFileSync(p, 'utf8');
}

const ready = fs.existsSync(path.join(DEMO, 'adapters', 'demo-rslora', 'adapter_config.json')) && fs.existsSync(path.join(REPO_ROOT, 'dist', 'webview', 'fleet.js'));

test('doctor, similarity, fleet, N-adapter merge, extract and reports in VS Code (code-server)', { timeout: 12 * 60 * 1000, skip: ready ? false : 'needs demo-workspace and a build' }, async (t) => {
  const ws = tempWorkspace(t);
  // A "full fine-tune" for Extract: tiny-llama with demo-lora merged in (ΔW of rank 8).
  runCli(['merge', path.join(ws, 'adapters', 'demo-lora'), path.join(ws, 'tiny-llama'), path.join(ws, 'tuned-model')]);
  const { page } = await launch(t, { workspace: ws, name: 'peers' });
  const rslora = path.join(ws, 'adapters', 'demo-rslora');

  let frame;
  await step(page, 'peers-01-doctor', 'Run Doctor on demo-rslora shows rslora-alpha and scale-extreme warnings with a link to adapter_config.json', async () => {
    await openView(page, 'LoRA Lens');
    await runCommand(page, 'LoRA Lens: Run Doctor');
    await pickQuickItem(page, 'demo-rslora');
    frame = await webviewFrame(page, 'Doctor: demo-rslora', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('li.finding[data-code="rslora-alpha"]', { timeout: JOB_TIMEOUT });
    const codes = await frame.$$eval('li.finding', (ls) => ls.map((l) => `${l.getAttribute('data-severity')}:${l.getAttribute('data-code')}`).sort());
    const cli = JSON.parse(runCli(['doctor', rslora, '--json'])).findings.map((f) => `${f.severity}:${f.code}`).sort();
    assert.deepEqual(codes, cli);
    const file = await frame.$eval('li.finding[data-code="rslora-alpha"] a.loc', (a) => a.getAttribute('data-file'));
    assert.equal(path.basename(file), 'adapter_config.json');
  });

  await step(page, 'peers-02-problems', 'the findings are diagnostics in the Problems panel', async () => {
    await page.keyboard.press('Control+Shift+M');
    await page.waitForFunction(() => {
      const t = document.querySelector('.markers-panel')?.textContent ?? '';
      return t.includes('rslora-alpha') && t.includes('adapter_config.json');
    }, null, { timeout: 30000 });
    await screenshot(page, 'peers-02a-problems-panel');
    await page.keyboard.press('Control+J'); // hide the panel again
  });

  await step(page, 'peers-03-doctor-refresh', 'editing adapter_config.json (use_rslora false) re-runs the doctor: rslora-alpha disappears', async () => {
    const cfgPath = path.join(rslora, 'adapter_config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    cfg.use_rslora = false;
    fs.writeFileSync(cfgPath, JSON.stringify(cfg, null, 2));
    frame = await webviewFrame(page, 'Doctor: demo-rslora');
    await frame.waitForFunction(() => !document.querySelector('li.finding[data-code="rslora-alpha"]') && !!document.querySelector('#doctor-header'), null, { timeout: JOB_TIMEOUT });
  });

  await step(page, 'peers-04-doctor-export', 'Export → Markdown writes the doctor report through the save dialog', async () => {
    await frame.click('#export-md');
    const target = await acceptSaveDialog(page);
    const md = await waitForFile(target);
    assert.match(md, /# Adapter doctor: demo-rslora/);
  });

  let sim;
  await step(page, 'peers-05-similarity', 'Compare Adapters (Similarity) of three adapters: 3×3 heatmap equal to the CLI, diagonal 1', async () => {
    await runCommand(page, 'LoRA Lens: Compare Adapters (Similarity)…');
    await pickMany(page, ['demo-lora', 'demo-trained-lora', 'demo-trained-balora']);
    frame = await webviewFrame(page, 'Similarity:', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#heatmap td.hm-cell', { timeout: JOB_TIMEOUT });
    const names = await frame.$$eval('#heatmap thead th.hm-col', (ths) => ths.map((t) => t.textContent));
    const cells = await frame.$$eval('#heatmap td.hm-cell', (tds) => tds.map((td) => [Number(td.getAttribute('data-i')), Number(td.getAttribute('data-j')), Number(td.getAttribute('data-value'))]));
    assert.equal(cells.length, 9);
    sim = JSON.parse(runCli(['similarity', ...names.map((n) => path.join(ws, 'adapters', n)), '--json']));
    for (const [i, j, v] of cells) assert.ok(Math.abs(v - sim.matrix[i][j]) < 1e-12, `${i},${j}: ${v} vs ${sim.matrix[i][j]}`);
    await frame.waitForFunction(() => Number(document.querySelector('#modules-chart .chart-box')?.getAttribute('data-points')) > 0 && !!document.querySelector('#modules-chart canvas'));
  });

  await step(page, 'peers-06-similarity-drill', 'toggle "signed cos" and drill into a pair: the module table lists the shared modules with principal angles', async () => {
    await frame.click('.segmented button[data-metric="signed"]');
    await frame.waitForSelector('#heatmap[data-metric="signed"]');
    await frame.click('#heatmap td.hm-cell[data-i="1"][data-j="2"]');
    await frame.waitForSelector('#heatmap td.hm-cell.selected[data-i="1"][data-j="2"]');
    const rows = await frame.$$eval('#module-similarity tbody tr', (trs) => trs.map((tr) => [tr.getAttribute('data-module'), Number(tr.querySelector('td[data-metric="cos"]').getAttribute('data-value'))]));
    assert.equal(rows.length, sim.shared[1][2]);
    for (const [m, c] of rows) assert.ok(Math.abs(c - sim.modules[m].cosine[1][2]) < 1e-12, m);
    const m0 = rows[0][0];
    await frame.click(`#module-similarity tbody tr[data-module="${m0}"]`);
    await frame.waitForSelector('#module-heatmap td.hm-cell');
    await frame.$eval('#modules-table', (e) => e.scrollIntoView());
    const mcells = await frame.$$eval('#module-heatmap td.hm-cell', (tds) => tds.map((td) => [Number(td.getAttribute('data-i')), Number(td.getAttribute('data-j')), td.getAttribute('data-value')]));
    for (const [i, j, v] of mcells) {
      const want = sim.modules[m0].cosine[i][j];
      if (want === null) assert.equal(v, '', `${m0} ${i},${j}`);
      else assert.ok(Math.abs(Number(v) - want) < 1e-12, `${m0} ${i},${j}: ${v} vs ${want}`);
    }
  });

  await step(page, 'peers-07-fleet', 'Analyze Folder lists every adapter of the workspace (as the CLI does), sortable and filterable', async () => {
    await runCommand(page, 'LoRA Lens: Analyze Folder');
    await pickQuickItem(page, 'demo-workspace');
    frame = await webviewFrame(page, 'Fleet: demo-workspace', { timeout: JOB_TIMEOUT });
    await frame.waitForFunction(() => document.querySelector('#fleet-header .badge')?.textContent === 'done', null, { timeout: JOB_TIMEOUT });
    const cli = runCli(['analyze', ws, '--recursive', '--jsonl']).trim().split('\n').map((l) => JSON.parse(l));
    const rows = await frame.$$eval('#fleet-table tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-path')));
    assert.deepEqual([...rows].sort(), cli.map((r) => r.path).sort());
    await frame.click('#fleet-table th[data-key="sigma1"]');
    const s = await frame.$$eval('#fleet-table tbody td[data-metric="sigma1"]', (tds) => tds.map((td) => td.getAttribute('data-value')).filter((v) => v !== '').map(Number));
    assert.deepEqual(s, [...s].sort((a, b) => b - a));
    await screenshot(page, 'peers-07a-fleet-all');
    await frame.fill('#fleet-filter', 'demo-rslora');
    await frame.waitForFunction(() => document.querySelectorAll('#fleet-table tbody tr').length === 1 && /of/.test(document.getElementById('fleet-count')?.textContent ?? ''));
  });

  await step(page, 'peers-08-merge-preview', 'Combine Adapters (TIES) of two adapters shows the preview: sign conflicts and energy kept per module', async () => {
    await runCommand(page, 'LoRA Lens: Combine Adapters (TIES / DARE / Magnitude)…');
    await pickMany(page, ['demo-lora', 'demo-trained-lora']);
    await acceptInput(page, '1, 1');
    await pickQuickItem(page, 'ties');
    await acceptInput(page, '0.5');
    frame = await webviewFrame(page, 'Combine (ties)', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#merge-preview-table td[data-metric="signConflict"]', { timeout: JOB_TIMEOUT });
    const conf = await frame.$$eval('#merge-preview-table td[data-metric="signConflict"]', (tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    assert.equal(conf.length, 14);
    assert.ok(conf.every((c) => c >= 0 && c <= 1));
    await frame.waitForFunction(() => !!document.querySelector('#energy-card canvas') && Number(document.querySelector('#energy-card .chart-box')?.getAttribute('data-points')) > 0);
  });

  await step(page, 'peers-09-merge-written', '"Write merged adapter" writes a NEW folder, verified per module', async () => {
    await frame.click('#merge-write');
    await acceptInput(page, 'demo-lora-ties');
    frame = await webviewFrame(page, 'Combined: demo-lora-ties', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#merge-result-table td[data-metric="maxAbsError"]', { timeout: JOB_TIMEOUT });
    const badge = await frame.$$eval('#merge-header .badge', (bs) => bs.map((b) => b.textContent).join(' '));
    assert.match(badge, /verified/);
    assert.doesNotMatch(badge, /failed/);
    assert.ok(fs.existsSync(path.join(ws, 'adapters', 'demo-lora-ties', 'adapter_model.safetensors')));
  });

  await step(page, 'peers-10-extract', 'Extract LoRA (rank 8) from tiny-llama → tuned-model recovers the merged ΔW: relative error ≈ 0 per module', async () => {
    await runCommand(page, 'LoRA Lens: Extract LoRA from Fine-tune…');
    await pickQuickItem(page, 'tiny-llama');
    await pickQuickItem(page, 'tuned-model');
    await pickQuickItem(page, 'Fixed rank k');
    await acceptInput(page, '8');
    await acceptInput(page, 'tuned-model-lora-r8');
    frame = await webviewFrame(page, 'Extracted: tuned-model-lora-r8', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#extract-table td[data-metric="relError"]', { timeout: JOB_TIMEOUT });
    const rows = await frame.$$eval('#extract-table tbody tr', (trs) => trs.map((tr) => ({ rank: Number(tr.querySelector('td[data-metric="rank"]').getAttribute('data-value')), err: Number(tr.querySelector('td[data-metric="relError"]').getAttribute('data-value')) })));
    assert.equal(rows.length, 14);
    // tuned − base = ΔW of rank 8 stored in bf16/f32 rounding of the merged weights: the rank-8 fit is exact up to that rounding.
    for (const r of rows) { assert.equal(r.rank, 8); assert.ok(r.err < 1e-3, JSON.stringify(r)); }
    assert.ok(fs.existsSync(path.join(ws, 'tuned-model-lora-r8', 'adapter_config.json')));
  });

  await step(page, 'peers-11-report-html', 'the Analyze report panel\'s title button "Export Report (Markdown / HTML)…" writes one self-contained HTML file with the model card', async () => {
    await runCommand(page, 'LoRA Lens: Analyze Adapter');
    await pickQuickItem(page, 'demo-lora');
    await webviewFrame(page, 'LoRA Lens: demo-lora', { timeout: JOB_TIMEOUT });
    const btn = await page.waitForSelector('.part.editor .action-label[aria-label^="Export Report (Markdown / HTML)"]', { timeout: 30000 });
    await btn.click();
    await pickQuickItem(page, 'HTML');
    const target = await acceptSaveDialog(page);
    assert.equal(path.basename(target), 'demo-lora-report.html');
    const html = await waitForFile(target, JOB_TIMEOUT);
    assert.match(html, /<html/i);
    assert.match(html, /Model card/);
    assert.doesNotMatch(html, /<script[^>]+src=|<link[^>]+href="http/i);
  });

  await step(page, 'peers-11b-tree-menu', 'the Checkpoints tree context menu of demo-lora offers Run Doctor: a clean adapter shows "No findings"', async () => {
    await openView(page, 'LoRA Lens');
    const row = await waitForTreeItem(page, 'demo-lora', { timeout: 30000 });
    await runContextMenu(page, row, 'Run Doctor', { timeout: 30000 });
    frame = await webviewFrame(page, 'Doctor: demo-lora', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#doctor-clean', { timeout: JOB_TIMEOUT });
  });

  await step(page, 'peers-12-narrow', 'with the sidebar open at 1200 px the fleet table and the similarity heatmap still fit', async () => {
    await page.setViewportSize({ width: 1200, height: 1000 });
    await openView(page, 'LoRA Lens');
    frame = await webviewFrame(page, 'Fleet: demo-workspace');
    await screenshot(page, 'peers-12a-fleet-narrow');
    frame = await webviewFrame(page, 'Similarity:');
    await frame.waitForSelector('#heatmap');
  });
});
