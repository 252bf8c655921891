// Feature tests of LoRA Lens in a real VS Code (code-server) driven like a user would.
// Needs: `npm run build` (dist/extension.js, dist/cli.js) and `npm run demo` (demo-workspace/).
// Contribution ids/titles: docs/architecture.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import {
  REPO_ROOT, repoExtension, commandPaletteEntries, expandTreeItem, hoverText, launch, openFile, openView, pickQuickItem, runCli, runCommand, screenshot, selectors, treeItems, waitForTreeItem, webviewFrame, step,
} from './harness.mjs';

const WORKSPACE = path.join(REPO_ROOT, 'demo-workspace');
const ADAPTER = 'demo-lora';
const MODULE = 'layers.0.self_attn.q_proj';
const ANALYSIS_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);

function preconditions() {
  const problems = [];
  const ext = repoExtension();
  if (!fs.existsSync(path.join(ext.path, ext.main ?? 'dist/extension.js'))) {
    problems.push(`${path.relative(REPO_ROOT, path.join(ext.path, ext.main ?? 'dist/extension.js')) || ext.main} missing (run \`npm run build\`)`);
  }
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'cli.js'))) problems.push('dist/cli.js missing (run `npm run build`)');
  for (const f of ['train.py', 'adapters/demo-lora/adapter_config.json', 'tiny-llama/model.safetensors']) {
    if (!fs.existsSync(path.join(WORKSPACE, f))) problems.push(`demo-workspace/${f} missing (run \`npm run demo\`)`);
  }
  return problems;
}


const problems = preconditions();

test('LoRA Lens in VS Code (code-server)', { timeout: 15 * 60 * 1000 }, async (t) => {
  if (problems.length) assert.fail(`e2e preconditions not met:\n  - ${problems.join("\n  - ")}`);
  const { page } = await launch(t, { workspace: WORKSPACE, name: 'extension' });
  await screenshot(page, 'ext-00-workbench');

  await t.test('commands are contributed (command palette)', async () => {
    await step(page, 'ext-01-commands', 'the LoRA Lens commands should be listed in the command palette', async () => {
      const titles = [
        'LoRA Lens: Analyze Adapter',
        'LoRA Lens: Refresh Checkpoints',
        'LoRA Lens: Export Report (JSON/CSV)',
        'LoRA Lens: Open Checkpoint Viewer',
      ];
      const entries = await commandPaletteEntries(page, 'LoRA Lens', { expect: titles });
      for (const title of titles) {
        assert.ok(entries.includes(title), `missing "${title}" in palette entries ${JSON.stringify(entries)}`);
      }
    });
  });

  await t.test('a. tree view lists demo-lora with modules grouped by layer', async () => {
    await step(page, 'ext-02-tree-adapter', 'the LoRA Lens view (loraLens.inspector) should list the demo adapter "demo-lora"', async () => {
      await openView(page, 'LoRA Lens');
      const found = await waitForTreeItem(page, ADAPTER, { timeout: 20000 }).catch(() => null);
      if (!found) {
        // The adapter may sit below a collapsed group (e.g. "Adapters"): expand top-level rows.
        for (const row of await page.$$(`${selectors.sidebarRows}[aria-level="1"][aria-expanded="false"]`)) await row.click();
        await waitForTreeItem(page, ADAPTER);
      }
    });
    await step(page, 'ext-03-tree-layers', 'expanding "demo-lora" should show modules grouped by layer ("layers.0")', async () => {
      await expandTreeItem(page, ADAPTER);
      await waitForTreeItem(page, 'layers.0');
    });
    await step(page, 'ext-04-tree-modules', 'expanding "layers.0" should show module rows with "r=8"', async () => {
      const row = await waitForTreeItem(page, 'layers.0');
      if ((await row.getAttribute('aria-expanded')) === 'false') await expandTreeItem(page, 'layers.0');
      await page.waitForFunction(
        (sel) => [...document.querySelectorAll(sel)].some((r) => /\br\s*=\s*8\b/.test((r.innerText || '') + ' ' + (r.getAttribute('aria-label') || ''))),
        selectors.sidebarRows,
      ).catch(async (e) => {
        e.message += `; rows: ${JSON.stringify(await treeItems(page))}`;
        throw e;
      });
      const rows = await treeItems(page);
      assert.ok(rows.some((r) => r.includes('q_proj')), `a q_proj module row is expected under layers.0; rows: ${JSON.stringify(rows)}`);
    });
  });

  await t.test('b. hover over an adapter path in train.py shows its rank', async () => {
    await step(page, 'ext-05-hover', 'hovering "adapters/demo-lora" in train.py should show a hover with the rank (8)', async () => {
      await openFile(page, 'train.py');
      const text = await hoverText(page, 'adapters/demo-lora', { contains: /rank/i, timeout: 60000 });
      assert.match(text, /rank/i, `hover text: ${text}`);
      assert.match(text, /\b8\b/, `hover should mention rank 8; hover text: ${text}`);
    });
    await page.keyboard.press('Escape');
  });

  await t.test('c. Analyze Adapter opens the report webview with charts and a σ₁ table matching the CLI', async () => {
    let expected;
    await step(page, 'ext-06-cli', 'the CLI should analyze demo-lora (`node dist/cli.js analyze ... --json`)', async () => {
      const out = runCli(['analyze', path.join('demo-workspace', 'adapters', ADAPTER), '--json']);
      let json;
      try {
        json = JSON.parse(out);
      } catch {
        json = JSON.parse(out.slice(out.indexOf('{'), out.lastIndexOf('}') + 1));
      }
      assert.ok(Array.isArray(json.modules), 'CLI JSON should have modules[]');
      const mod =
        json.modules.find((m) => m.name === MODULE) ||
        json.modules.find((m) => m.name.endsWith(MODULE)) ||
        json.modules.find((m) => m.name.includes(MODULE));
      assert.ok(mod, `CLI JSON has no module ${MODULE}: ${json.modules.map((m) => m.name).slice(0, 10)}`);
      assert.ok(Array.isArray(mod.sigma) && Number.isFinite(mod.sigma[0]), `module ${mod.name} has no sigma[0]`);
      expected = mod.sigma[0];
    });

    let frame;
    await step(page, 'ext-07-report-open', 'running "LoRA Lens: Analyze Adapter" should open the "LoRA Lens: demo-lora" webview', async () => {
      await runCommand(page, 'LoRA Lens: Analyze Adapter');
      // It may ask which adapter to analyze.
      const asked = await page
        .waitForFunction(
          (sel) => {
            const i = document.querySelector(sel);
            return !!i && i.offsetParent !== null && !i.value.startsWith('>');
          },
          selectors.quickInputBox,
          { timeout: 5000 },
        )
        .then(() => true)
        .catch(() => false);
      if (asked) await pickQuickItem(page, ADAPTER);
      frame = await webviewFrame(page, `LoRA Lens: ${ADAPTER}`, { timeout: ANALYSIS_TIMEOUT });
    });

    await step(page, 'ext-08-report-table', `the report should show chart canvases and a table row for ${MODULE} with σ₁ = CLI's sigma[0]`, async () => {
      await frame.waitForSelector('canvas', { timeout: ANALYSIS_TIMEOUT });
      const cell = await frame
        .waitForFunction(
          (moduleName) => {
            for (const table of document.querySelectorAll('table')) {
              const headers = [...table.querySelectorAll('thead th, tr:first-child th')].map((h) => h.textContent.trim());
              const col = headers.findIndex((h) => /σ\s*₁|σ\s*1|sigma\s*[_-]?\s*1|^s1$/i.test(h));
              if (col < 0) continue;
              for (const tr of table.querySelectorAll('tbody tr, tr')) {
                const cells = [...tr.querySelectorAll('td, th')];
                if (!cells.some((c) => c.textContent.includes(moduleName))) continue;
                const text = cells[col]?.textContent.trim();
                if (text) return { text, headers, canvases: document.querySelectorAll('canvas').length };
              }
            }
            return null;
          },
          MODULE,
          { timeout: ANALYSIS_TIMEOUT },
        )
        .then((h) => h.jsonValue())
        .catch(async (e) => {
          const tables = await frame.$$eval('table', (ts) => ts.map((t) => t.innerText.slice(0, 500))).catch(() => []);
          e.message += `\n  tables in the report: ${JSON.stringify(tables)}`;
          throw e;
        });
      assert.ok(cell.canvases >= 1, 'expected at least one chart canvas');
      const value = Number(cell.text.replace(/[^\d.eE+-]/g, ''));
      assert.ok(Number.isFinite(value), `σ₁ cell is not a number: "${cell.text}" (headers ${JSON.stringify(cell.headers)})`);
      const rel = Math.abs(value - expected) / Math.max(Math.abs(expected), 1e-12);
      assert.ok(rel <= 1e-3, `σ₁ of ${MODULE}: table shows ${cell.text}, CLI says ${expected} (rel. error ${rel.toExponential(2)})`);
    });
  });

  await t.test('d. model.safetensors opens in the Checkpoint Viewer custom editor', async () => {
    await step(page, 'ext-09-checkpoint-viewer', 'opening tiny-llama/model.safetensors should show the checkpoint viewer listing tensor names', async () => {
      await openFile(page, 'tiny-llama/model.safetensors');
      const binaryWarning = await page
        .waitForSelector('.part.editor .monaco-editor-pane-placeholder, .part.editor .binary-container', { timeout: 2000 })
        .then(() => true)
        .catch(() => false);
      assert.ok(!binaryWarning, 'VS Code shows its binary-file placeholder instead of the Checkpoint Viewer');
      const frame = await webviewFrame(page, 'model.safetensors', { timeout: ANALYSIS_TIMEOUT });
      await frame
        .waitForFunction((name) => document.body.innerText.includes(name), 'model.layers.0.self_attn.q_proj.weight', {
          timeout: ANALYSIS_TIMEOUT,
        })
        .catch(async (e) => {
          e.message += `\n  viewer text: ${JSON.stringify((await frame.innerText('body').catch(() => '')).slice(0, 500))}`;
          throw e;
        });
    });
  });
});
