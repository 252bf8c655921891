// Research views in a real VS Code (code-server), Dark Modern theme: Attention Lipschitz (report cards,
// chart.js charts with base AND adapted series, per-head table for layers 0 and 1), Token Dynamics (the
// animation's data-frame advances; clustering tables), Cross-layer increments (VLoRA budget of the chosen
// model and the chosen adapter's count, no fixed ViT numbers), no internal references in the UI, a failure
// that stays visible in the panel, and the layout with the sidebar open at ~900 px.
// Needs `npm run build` + `node dist/cli.js demo demo-workspace`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT, launch, openView, pickQuickItem, runCommand, webviewFrame, step,
} from './harness.mjs';

const DEMO = path.join(REPO_ROOT, 'demo-workspace');
const JOB_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);

/** Text of the whole research webview: no internal references ("papers.md §5.2") may show. */
async function noInternalRefs(frame) {
  const text = await frame.evaluate(() => document.body.innerText);
  assert.doesNotMatch(text, /papers\.md|§|ref\//, 'internal reference in the UI');
}

test('LoRA Lens research views (code-server)', { timeout: 10 * 60 * 1000 }, async (t) => {
  for (const f of ['dist/webview/research.js', 'demo-workspace/tiny-llama/model.safetensors']) {
    assert.ok(fs.existsSync(path.join(REPO_ROOT, f)), `${f} missing (npm run build / npm run demo)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-e2e-research-'));
  const ws = path.join(dir, 'demo-workspace');
  fs.cpSync(DEMO, ws, { recursive: true });
  // Dark Modern (the theme the issue was reported on)
  const settings = path.join(ws, '.vscode', 'settings.json');
  fs.mkdirSync(path.dirname(settings), { recursive: true });
  const prev = fs.existsSync(settings) ? JSON.parse(fs.readFileSync(settings, 'utf8')) : {};
  fs.writeFileSync(settings, JSON.stringify({ ...prev, 'workbench.colorTheme': 'Default Dark Modern' }));
  // an adapter whose base folder has a config.json without the attention fields: the view must say so in the panel
  fs.mkdirSync(path.join(ws, 'broken-base'));
  fs.writeFileSync(path.join(ws, 'broken-base', 'config.json'), JSON.stringify({ model_type: 'llama' }));
  fs.copyFileSync(path.join(ws, 'tiny-llama', 'model.safetensors'), path.join(ws, 'broken-base', 'model.safetensors'));
  fs.cpSync(path.join(ws, 'adapters', 'demo-lora'), path.join(ws, 'adapters', 'zz-broken-lora'), { recursive: true });
  const cfgFile = path.join(ws, 'adapters', 'zz-broken-lora', 'adapter_config.json');
  fs.writeFileSync(cfgFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgFile, 'utf8')), base_model_name_or_path: '../../broken-base' }));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { page } = await launch(t, { workspace: ws, name: 'research' });

  let lip;
  await t.test('Attention Lipschitz: cards, base + adapted charts, per-head table', async () => {
    await step(page, 'research-01-lipschitz', 'the Lipschitz view should show the per-layer and growth charts and the per-head table', async () => {
      // first palette use after start can be slow on a busy machine: one retry
      await runCommand(page, 'LoRA Lens: Attention Lipschitz Bounds').catch(() => runCommand(page, 'LoRA Lens: Attention Lipschitz Bounds'));
      await pickQuickItem(page, 'demo-lora');
      lip = await webviewFrame(page, 'Attention Lipschitz');
      await lip.waitForSelector('#rs-heads tbody tr', { timeout: JOB_TIMEOUT });
      const layers = await lip.$$eval('#rs-heads tbody tr', (rows) => [...new Set(rows.map((r) => r.getAttribute('data-layer')))]);
      assert.deepEqual(layers.sort(), ['0', '1']);
      assert.match(await lip.textContent('#rs-assumption'), /upper bound, not a measured constant.*‖x_i‖ ≤ R/i);
      // report look: cards with chart.js canvases; base, adapted and bound series in the growth chart
      assert.equal(await lip.$$eval('.card canvas', (c) => c.length), 2);
      assert.equal(await lip.$eval('#rs-growth-chart', (e) => e.getAttribute('data-series')), '3');
      assert.equal(await lip.$eval('#rs-layers-chart', (e) => e.getAttribute('data-series')), '2');
      // the adapted series: a colour distinct from base with ≥ 3:1 contrast on the Dark Modern background
      // (the theme's --vscode-charts-orange is 33 % alpha there, which made the curve near-invisible)
      const [base, adapted] = (await lip.$eval('#rs-growth-chart', (e) => e.getAttribute('data-colors'))).split(' ');
      const bg = await lip.evaluate(() => getComputedStyle(document.body).getPropertyValue('--vscode-editor-background').trim());
      assert.match(bg, /^#[0-9a-f]{6}$/i);
      assert.ok((await lip.evaluate(() => document.body.className)).includes('vscode-dark'), 'Dark Modern is active');
      const lum = (hex) => {
        const [r, g, b] = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255).map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
        return 0.2126 * r + 0.7152 * g + 0.0722 * b;
      };
      const contrast = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
      assert.notEqual(base, adapted);
      for (const c of [base, adapted]) {
        assert.match(c, /^#[0-9a-f]{6}$/i);
        assert.ok(contrast(c, bg) >= 3, `series colour ${c} on ${bg}: contrast ${contrast(c, bg).toFixed(2)}`);
      }
      await noInternalRefs(lip);
    });
  });

  await t.test('Token Dynamics animates (data-frame advances)', async () => {
    await step(page, 'research-02-dynamics', 'the Token Dynamics canvas should animate', async () => {
      await runCommand(page, 'LoRA Lens: Token Dynamics');
      await pickQuickItem(page, 'demo-lora');
      const frame = await webviewFrame(page, 'Token Dynamics');
      const anim = await frame.waitForSelector('.rs-anim[data-frame]', { timeout: JOB_TIMEOUT });
      const f0 = Number(await anim.getAttribute('data-frame'));
      await frame.waitForFunction((f) => Number(document.querySelector('.rs-anim')?.getAttribute('data-frame')) !== f, f0, { timeout: 10000 });
      assert.equal(await frame.$$eval('#rs-koubbi tbody tr', (r) => r.length), 5);
      assert.ok(Number(await frame.$eval('#rs-dev-chart', (e) => e.getAttribute('data-points'))) > 10);
      await noInternalRefs(frame);
    });
  });

  await t.test('VLoRA analyses the chosen model and adapter', async () => {
    await step(page, 'research-03-vlora', 'the VLoRA view should show the chosen base\'s budget and the adapter\'s count', async () => {
      await runCommand(page, 'LoRA Lens: Cross-layer Increments (VLoRA)');
      await pickQuickItem(page, 'demo-lora');
      const frame = await webviewFrame(page, 'Cross-layer Increments');
      await frame.waitForSelector('#rs-savings tbody tr', { timeout: JOB_TIMEOUT });
      assert.match(await frame.textContent('#rs-budget-card .card-head'), /tiny-llama/);
      assert.deepEqual(await frame.$$eval('#rs-savings tbody tr', (r) => r.map((x) => x.getAttribute('data-size'))), ['1', '2']);
      assert.match(await frame.textContent('#rs-adapter-count'), /demo-lora adds [\d,]+ LoRA parameters/);
      const text = await frame.evaluate(() => document.body.innerText);
      assert.doesNotMatch(text, /ViT/);
      assert.ok(await frame.$$eval('.rs-kinds canvas', (c) => c.length) >= 7);
      await noInternalRefs(frame);
    });
  });

  await t.test('narrow editor (sidebar open, ~900 px): no horizontal scrolling', async () => {
    await step(page, 'research-04-narrow', 'the Lipschitz view at ~900 px', async () => {
      await runCommand(page, 'LoRA Lens: Attention Lipschitz Bounds');
      await pickQuickItem(page, 'demo-lora');
      lip = await webviewFrame(page, 'Attention Lipschitz');
      await openView(page, 'LoRA Lens');
      await page.setViewportSize({ width: 1200, height: 1000 });
      await lip.waitForSelector('#rs-heads tbody tr', { timeout: JOB_TIMEOUT });
      // the webview re-lays out some frames after the resize: wait for it instead of sampling once
      await lip.waitForFunction(() => document.documentElement.clientWidth < 1000, undefined, { timeout: 10000 }).catch(() => {});
      const w = await lip.evaluate(() => document.documentElement.clientWidth);
      assert.ok(w < 1000, `editor width ${w}`);
      assert.ok(await lip.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1), 'no horizontal scrolling');
    });
  });

  await t.test('a failure stays visible in the panel', async () => {
    await step(page, 'research-05-error', 'a base without attention fields: the reason shows in the panel', async () => {
      await page.setViewportSize({ width: 1600, height: 1000 });
      await runCommand(page, 'LoRA Lens: Attention Lipschitz Bounds');
      await pickQuickItem(page, 'zz-broken-lora');
      lip = await webviewFrame(page, 'Attention Lipschitz');
      await lip.waitForFunction(() => /Could not compute this view: .*config\.json.*hidden_size/.test(document.getElementById('rs-error')?.textContent ?? ''), null, { timeout: JOB_TIMEOUT });
      await page.waitForTimeout(8000); // toasts are gone by now; the panel still says it
      assert.match(await lip.textContent('#rs-error'), /broken-base/);
      assert.equal(await lip.$$eval('#rs-heads', (x) => x.length), 0, 'no stale table of the previous adapter');
    });
  });
});
