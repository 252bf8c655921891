// Adapter surgery in a real VS Code (code-server): rebalance demo-lora from the palette → the
// before/after view (loraLens.surgery) shows gaps ≈ 0 after and the tree gains demo-lora-balanced;
// reduce rank: preview → "Write reduced adapter" → verified result and demo-lora-r4 in the tree.
// Runs on a temp copy of demo-workspace so no new adapters are left there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT, launch, openView, pickQuickItem, runCli, runCommand, screenshot, selectors, waitForTreeItem, webviewFrame, step,
} from './harness.mjs';

const DEMO = path.join(REPO_ROOT, 'demo-workspace');
const JOB_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);

function tempWorkspace(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-e2e-surgery-'));
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

const ready = fs.existsSync(path.join(DEMO, 'adapters', 'demo-lora', 'adapter_config.json')) && fs.existsSync(path.join(REPO_ROOT, 'dist', 'webview', 'surgery.js'));

test('adapter surgery in VS Code (code-server)', { timeout: 10 * 60 * 1000, skip: ready ? false : 'needs demo-workspace and a build' }, async (t) => {
  const ws = tempWorkspace(t);
  const { page } = await launch(t, { workspace: ws, name: 'surgery' });

  await step(page, 'surgery-01-tree', 'the Checkpoints tree lists demo-lora', async () => {
    await openView(page, 'LoRA Lens');
    await waitForTreeItem(page, 'demo-lora', { timeout: 30000 });
  });

  let frame;
  await step(page, 'surgery-02-rebalance-open', 'Rebalance Adapter (BaLoRA) from the palette opens "Rebalance: demo-lora"', async () => {
    await runCommand(page, 'LoRA Lens: Rebalance Adapter (BaLoRA)');
    await pickQuickItem(page, 'demo-lora');
    await acceptInput(page, 'demo-lora-balanced');
    frame = await webviewFrame(page, 'Rebalance: demo-lora', { timeout: JOB_TIMEOUT });
  });

  await step(page, 'surgery-03-rebalance-view', 'the before/after view shows gap after ≈ 0 for every module, verified products and a chart', async () => {
    await frame.waitForSelector('#rebalance-table td[data-metric="gapAfter"]', { timeout: JOB_TIMEOUT });
    await frame.waitForFunction(() => Number(document.querySelector('#gap-chart .chart-box')?.getAttribute('data-points')) > 0 && !!document.querySelector('#gap-chart canvas'));
    const rows = await frame.$$eval('#rebalance-table tbody tr', (trs) => trs.map((tr) => {
      const v = (k) => tr.querySelector(`td[data-metric="${k}"]`)?.getAttribute('data-value');
      return { name: tr.getAttribute('data-module'), before: Number(v('gapBefore')), after: Number(v('gapAfter')), verified: v('verified'), hAfter: Number(v('hessianAfter')), hBefore: Number(v('hessianBefore')) };
    }));
    assert.equal(rows.length, 14, JSON.stringify(rows));
    for (const r of rows) {
      assert.ok(r.after < 1e-6, `${r.name}: gap after ${r.after}`);
      assert.ok(r.before > 1e-3, `${r.name}: gap before ${r.before}`);
      assert.equal(r.verified, 'yes', `${r.name} not verified`);
      assert.ok(r.hAfter <= r.hBefore, `${r.name}: Hessian κ ${r.hBefore} → ${r.hAfter}`);
    }
    assert.ok(fs.existsSync(path.join(ws, 'adapters', 'demo-lora-balanced', 'adapter_model.safetensors')));
    // κ_H = (σ₁(B)² + σ₁(A)²)/min(σ_r(B)², σ_r(A)²) shown = the core's value (CLI rebalance --json, issue 8)
    const cli = JSON.parse(runCli(['rebalance', path.join(ws, 'adapters', 'demo-lora'), path.join(path.dirname(ws), 'cli-balanced'), '--json']));
    for (const r of rows) {
      const m = cli.perModule.find((x) => x.name === r.name);
      assert.ok(m, `${r.name} not in the CLI output`);
      for (const [shown, core, what] of [[r.hBefore, m.hessianKappaBefore, 'before'], [r.hAfter, m.hessianKappaAfter, 'after']]) {
        assert.ok(Math.abs(shown - core) <= 1e-9 * Math.abs(core), `${r.name}: κ_H ${what} shown ${shown}, core ${core}`);
      }
    }
    const ver = await frame.$eval('#verification', (e) => ({ v: Number(e.getAttribute('data-max-abs-error')), text: e.textContent }));
    assert.match(ver.text, /✓ verified: max abs error/);
    assert.ok(Number.isFinite(ver.v) && ver.v >= 0, ver.text);
    assert.match(await frame.$eval('.hint.explain', (e) => e.textContent), /κ_H = \(σ₁\(B\)² \+ σ₁\(A\)²\) \/ min\(σ_r\(B\)², σ_r\(A\)²\)/);
  });

  await step(page, 'surgery-04-tree-balanced', 'the tree gains demo-lora-balanced', async () => {
    await frame.click('#reveal-in-tree');
    await waitForTreeItem(page, 'demo-lora-balanced', { timeout: 30000 });
  });

  await step(page, 'surgery-05-reduce-preview', 'Reduce Rank… (rank 4) shows a preview with new k = 4 per module', async () => {
    await runCommand(page, 'LoRA Lens: Reduce Rank…');
    await pickQuickItem(page, 'demo-lora');
    await pickQuickItem(page, 'Fixed rank k');
    await acceptInput(page, '4');
    frame = await webviewFrame(page, 'Reduce rank: demo-lora', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#plan-table td[data-metric="k"]', { timeout: JOB_TIMEOUT });
    const ks = await frame.$$eval('#plan-table td[data-metric="k"]', (tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    assert.equal(ks.length, 14);
    assert.ok(ks.every((k) => k === 4), JSON.stringify(ks));
  });

  await step(page, 'surgery-06-reduce-written', '"Write reduced adapter" writes demo-lora-r4, verified', async () => {
    await frame.click('#write-reduced');
    await acceptInput(page, 'demo-lora-r4');
    frame = await webviewFrame(page, 'Reduced: demo-lora-r4', { timeout: JOB_TIMEOUT });
    await frame.waitForSelector('#reduce-table td[data-metric="relErrVsTruncated"]', { timeout: JOB_TIMEOUT });
    const errs = await frame.$$eval('#reduce-table td[data-metric="relErrVsTruncated"]', (tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    assert.ok(errs.length === 14 && errs.every((e) => e < 1e-5), JSON.stringify(errs));
    assert.ok(fs.existsSync(path.join(ws, 'adapters', 'demo-lora-r4', 'adapter_config.json')));
    await waitForTreeItem(page, 'demo-lora-r4', { timeout: 30000 });
  });
});
