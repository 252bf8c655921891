// Research views in a real VS Code (code-server): Attention Lipschitz table (rows for layers 0 and 1) and the
// Token Dynamics animation (the canvas container's data-frame advances). Needs `npm run build` + `npm run demo`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  REPO_ROOT, launch, pickQuickItem, runCommand, screenshot, webviewFrame, step,
} from './harness.mjs';

const WORKSPACE = path.join(REPO_ROOT, 'demo-workspace');
const JOB_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);


test('LoRA Lens research views (code-server)', { timeout: 10 * 60 * 1000 }, async (t) => {
  for (const f of ['dist/webview/research.js', 'demo-workspace/tiny-llama/model.safetensors']) {
    assert.ok(fs.existsSync(path.join(REPO_ROOT, f)), `${f} missing (npm run build / npm run demo)`);
  }
  const { page } = await launch(t, { workspace: WORKSPACE, name: 'research' });

  await t.test('Attention Lipschitz table has rows for layers 0 and 1', async () => {
    await step(page, 'research-01-lipschitz', 'the Lipschitz view should show the per-head table', async () => {
      // first palette use after start can be slow on a busy machine: one retry
      await runCommand(page, 'LoRA Lens: Attention Lipschitz Bounds').catch(() => runCommand(page, 'LoRA Lens: Attention Lipschitz Bounds'));
      await pickQuickItem(page, 'demo-lora');
      const frame = await webviewFrame(page, 'Attention Lipschitz');
      await frame.waitForSelector('table.rs-heads tbody tr', { timeout: JOB_TIMEOUT });
      const layers = await frame.$$eval('table.rs-heads tbody tr', (rows) => [...new Set(rows.map((r) => r.getAttribute('data-layer')))]);
      assert.deepEqual(layers.sort(), ['0', '1']);
      const note = await frame.textContent('.rs-note');
      assert.match(note ?? '', /upper bound under the assumption ‖x_i‖ ≤ R/i);
      await frame.waitForSelector('canvas.rs-chart');
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
      await frame.waitForSelector('table.rs-koubbi tbody tr');
      const rows = await frame.$$eval('table.rs-koubbi tbody tr', (r) => r.length);
      assert.equal(rows, 5);
    });
  });
});
