// Base-model analyses in a real VS Code (code-server): Set Base Model (auto-detected
// ../../tiny-llama for demo-lora), Intruder Dimensions (heatmap webview loraLens.intruders) and
// Spectra (loraLens.spectra, chart canvases + metrics table).
// Needs: `node scripts/build.mjs` and the demo workspace (`npm run demo`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  REPO_ROOT, commandPaletteEntries, dismissNotifications, launch, pickQuickItem, runCommand, screenshot, selectors, webviewFrame, step,
} from './harness.mjs';

const WORKSPACE = path.join(REPO_ROOT, 'demo-workspace');
const ADAPTER = 'demo-lora';
const MODULE = 'layers.0.self_attn.q_proj';
const JOB_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);

function preconditions() {
  const problems = [];
  for (const f of ['dist/extension.js', 'dist/worker.js', 'dist/webview/base.js']) {
    if (!fs.existsSync(path.join(REPO_ROOT, f))) problems.push(`${f} missing (run \`node scripts/build.mjs\`)`);
  }
  for (const f of ['adapters/demo-lora/adapter_config.json', 'tiny-llama/model.safetensors', 'tiny-llama/config.json']) {
    if (!fs.existsSync(path.join(WORKSPACE, f))) problems.push(`demo-workspace/${f} missing (run \`npm run demo\`)`);
  }
  return problems;
}




/** Waits for a quick input that is not the command palette (a command asking for something). */
async function quickInputAsked(page, timeout = 10000) {
  return page
    .waitForFunction(
      (sel) => {
        const i = document.querySelector(sel);
        return !!i && i.offsetParent !== null && !i.value.startsWith('>');
      },
      selectors.quickInputBox,
      { timeout },
    )
    .then(() => true)
    .catch(() => false);
}

async function notificationText(page, re, timeout = 20000) {
  const h = await page.waitForFunction(
    ({ src, flags }) => {
      const r = new RegExp(src, flags);
      const t = [...document.querySelectorAll('.notification-toast, .notifications-center .notification-list-item')].map((n) => n.textContent || '').join('\n');
      return r.test(t) ? t : null;
    },
    { src: re.source, flags: re.flags },
    { timeout },
  );
  return h.jsonValue();
}

const problems = preconditions();

test('LoRA Lens base-model analyses (code-server)', { timeout: 12 * 60 * 1000 }, async (t) => {
  if (problems.length) assert.fail(`e2e preconditions not met:\n  - ${problems.join('\n  - ')}`);
  const { page } = await launch(t, { workspace: WORKSPACE, name: 'base' });

  await t.test('commands are contributed', async () => {
    await step(page, 'base-01-commands', 'the base-model commands should be in the command palette', async () => {
      const titles = ['LoRA Lens: Set Base Model', 'LoRA Lens: Intruder Dimensions', 'LoRA Lens: Spectra (base vs adapted)', 'LoRA Lens: Compare Checkpoints'];
      const entries = await commandPaletteEntries(page, 'LoRA Lens', { expect: titles, timeout: 60000 });
      for (const title of titles) assert.ok(entries.includes(title), `missing "${title}" in ${JSON.stringify(entries)}`);
    });
  });

  await t.test('Set Base Model detects ../../tiny-llama for demo-lora', async () => {
    await step(page, 'base-02-set-base', 'Set Base Model should offer the detected tiny-llama folder and store it', async () => {
      await runCommand(page, 'LoRA Lens: Set Base Model');
      assert.ok(await quickInputAsked(page), 'Set Base Model should ask for the adapter');
      await pickQuickItem(page, ADAPTER);
      assert.ok(await quickInputAsked(page), 'Set Base Model should offer base model choices');
      // rows render progressively: poll until the detected folder is listed
      const offered = await page
        .waitForFunction(
          (sel) => [...document.querySelectorAll(sel)].some((r) => /tiny-llama/.test(r.textContent || '') && /detected/i.test(r.textContent || '')),
          selectors.quickInputRows,
          { timeout: 15000 },
        )
        .then(() => true)
        .catch(() => false);
      const rows = await page.$$eval(selectors.quickInputRows, (rs) => rs.map((r) => r.textContent));
      assert.ok(offered, `the detected tiny-llama should be offered; rows ${JSON.stringify(rows)}`);
      await pickQuickItem(page, 'tiny-llama');
      const text = await notificationText(page, /base model of demo-lora is tiny-llama/);
      assert.match(text, /tiny-llama/);
    });
    await dismissNotifications(page);
  });

  await t.test('Intruder Dimensions renders the heatmap for layers 0 and 1', async () => {
    let frame;
    await step(page, 'base-03-intruders-open', 'Intruder Dimensions should open the "Intruders: demo-lora" webview', async () => {
      await runCommand(page, 'LoRA Lens: Intruder Dimensions');
      if (await quickInputAsked(page)) await pickQuickItem(page, ADAPTER);
      frame = await webviewFrame(page, `Intruders: ${ADAPTER}`, { timeout: JOB_TIMEOUT });
    });
    await step(page, 'base-04-intruders-heatmap', 'the heatmap should have cells for layers 0 and 1 whose counts add up to the total', async () => {
      await frame.waitForSelector('#intruder-heatmap .heat-cell[data-layer="1"][data-count]', { timeout: JOB_TIMEOUT });
      const info = await frame.evaluate(() => {
        const cells = [...document.querySelectorAll('#intruder-heatmap .heat-cell[data-count]')];
        return {
          layers: [...new Set(cells.map((c) => c.getAttribute('data-layer')))].sort(),
          kinds: [...new Set(cells.map((c) => c.getAttribute('data-kind')))],
          sum: cells.reduce((s, c) => s + Number(c.getAttribute('data-count')), 0),
          total: document.querySelector('[data-fact="total"] dd')?.textContent,
          vectors: document.querySelectorAll('#vector-table tbody tr').length,
        };
      });
      assert.deepEqual(info.layers, ['0', '1'], JSON.stringify(info));
      assert.equal(info.kinds.length, 7, `7 module kinds expected: ${JSON.stringify(info.kinds)}`);
      assert.equal(String(info.sum), info.total, `heatmap sum ${info.sum} vs total ${info.total}`);
      assert.ok(info.sum > 0, 'the demo adapter has intruders at ε = 0.5');
      assert.equal(info.vectors, 10, 'top-10 vectors of the selected module are listed');
    });
  });

  await t.test('Spectra shows σ of W0, W0+ΔW and ΔW with metrics', async () => {
    let frame;
    await step(page, 'base-05-spectra-open', `Spectra should ask for a module and open "Spectra: ${ADAPTER}"`, async () => {
      await runCommand(page, 'LoRA Lens: Spectra (base vs adapted)');
      if (await quickInputAsked(page)) await pickQuickItem(page, ADAPTER);
      assert.ok(await quickInputAsked(page), 'Spectra should ask for a module');
      await pickQuickItem(page, MODULE);
      frame = await webviewFrame(page, `Spectra: ${ADAPTER}`, { timeout: JOB_TIMEOUT });
    });
    await step(page, 'base-06-spectra-charts', 'the spectra webview should draw the σ and ESD canvases and the metrics table', async () => {
      await frame.waitForSelector('canvas#sigma-chart', { timeout: JOB_TIMEOUT });
      await frame.waitForFunction(() => {
        const c = document.querySelector('canvas#sigma-chart');
        return c && c.width > 0 && c.height > 0 && document.querySelector('canvas#esd-chart');
      }, null, { timeout: JOB_TIMEOUT });
      const info = await frame.evaluate(() => ({
        module: document.querySelector('#module-select')?.value,
        metrics: [...document.querySelectorAll('#metrics-table tbody tr')].map((r) => r.getAttribute('data-metric')),
        alpha: document.querySelector('#metrics-table tr[data-metric="alpha"] td[data-which="base"]')?.getAttribute('data-value'),
      }));
      assert.match(info.module, /layers\.0\.self_attn\.q_proj$/);
      for (const m of ['alpha', 'alpha_weighted', 'log_norm', 'log_spectral_norm', 'stable_rank', 'entropy', 'mp_softrank', 'num_pl_spikes', 'D']) {
        assert.ok(info.metrics.includes(m), `metric ${m} missing: ${JSON.stringify(info.metrics)}`);
      }
      assert.ok(Number.isFinite(Number(info.alpha)), `alpha of W0: ${info.alpha}`);
    });
    await step(page, 'base-06b-spectra-not-fittable', 'k_proj (32×64: 32 eigenvalues) shows alpha "not fittable (< 50 eigenvalues)", not a number', async () => {
      const name = await frame.$eval('#module-select', (s) => [...s.options].map((o) => o.value).find((v) => /layers\.0\.self_attn\.k_proj$/.test(v)));
      await frame.selectOption('#module-select', name);
      await frame.waitForFunction(() => /k_proj/.test(document.querySelector('[data-fact="module"] dd')?.textContent || ''), null, { timeout: JOB_TIMEOUT });
      const cells = await frame.$$eval('#metrics-table tr[data-metric="alpha"] td[data-which]', (tds) => tds.map((td) => ({ text: td.textContent, status: td.getAttribute('data-status') })));
      for (const c of cells) {
        assert.equal(c.status, 'not fittable');
        assert.equal(c.text, 'not fittable (< 50 eigenvalues)');
      }
      const logNorm = await frame.$eval('#metrics-table tr[data-metric="log_norm"] td[data-which="base"]', (td) => td.textContent);
      assert.ok(Number.isFinite(Number(logNorm)), `log_norm is a number: ${logNorm}`);
    });
    await step(page, 'base-07-status-bar', 'the status bar should show the execution provider of the spectra job', async () => {
      await page.waitForFunction(() => [...document.querySelectorAll('.part.statusbar .statusbar-item')].some((i) => /ORT: (cpu|webgpu|cuda)/.test(i.textContent || '')), null, { timeout: 15000 });
    });
  });
});
