// LoRA / BaLoRA training in a real VS Code (code-server): the training webview (loraLens.training)
// starts a run, the loss chart's `data-points` grows while it trains, Stop → Resume continues,
// and the finished run saves both adapters into the (temp) workspace and the tree shows them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT, commandPaletteEntries, launch, openView, runCommand, screenshot, waitForTreeItem, webviewFrame, step,
} from './harness.mjs';

const DEMO = path.join(REPO_ROOT, 'demo-workspace');
const RUN_TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);



const points = (frame) => frame.$eval('#loss-chart', (el) => Number(el.getAttribute('data-points')));
const ready = fs.existsSync(DEMO) && fs.existsSync(path.join(REPO_ROOT, 'dist', 'webview', 'training.js'));

test('LoRA / BaLoRA training in VS Code (code-server)', { timeout: 10 * 60 * 1000, skip: ready ? false : 'needs demo-workspace and a build' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-e2e-training-'));
  const ws = path.join(dir, 'demo-workspace');
  fs.cpSync(DEMO, ws, { recursive: true });
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { page } = await launch(t, { workspace: ws, name: 'training' });

  let frame;
  await step(page, 'training-01-open', '"LoRA Lens: Train LoRA / BaLoRA…" opens the training webview', async () => {
    // Contributions register after the workbench renders.
    await commandPaletteEntries(page, 'LoRA Lens: Train', { expect: ['LoRA Lens: Train LoRA / BaLoRA…'], timeout: 60000 });
    await runCommand(page, 'LoRA Lens: Train LoRA / BaLoRA…');
    frame = await webviewFrame(page, 'LoRA Lens: Training');
    await frame.waitForSelector('#train-start:not([disabled])');
    await frame.waitForFunction(() => /setting cpu/.test(document.getElementById('provider')?.textContent ?? ''));
  });

  await step(page, 'training-02-live', 'Start: the loss chart gains points while training (data-points increases)', async () => {
    await frame.fill('#f-steps', '1500');
    await frame.click('#train-start');
    await frame.waitForFunction(() => Number(document.getElementById('loss-chart')?.getAttribute('data-points')) > 0, null, { timeout: RUN_TIMEOUT });
    const n1 = await points(frame);
    await frame.waitForFunction((n) => Number(document.getElementById('loss-chart')?.getAttribute('data-points')) > n, n1, { timeout: 30000 });
    const n2 = await points(frame);
    assert.ok(n2 > n1, `data-points ${n1} → ${n2}`);
    await frame.waitForFunction(() => /used cpu/.test(document.getElementById('provider')?.textContent ?? ''));
  });

  await step(page, 'training-03-stopped', 'Stop stops between steps and enables Resume', async () => {
    await frame.click('#train-stop');
    await frame.waitForSelector('#train-resume:not([disabled])', { timeout: 30000 });
    const st = await frame.$eval('#run-status', (e) => e.textContent);
    assert.equal(st, 'stopped');
  });

  await step(page, 'training-04-finished', 'Resume continues to the last step; adapters are saved and listed in the tree', async () => {
    const n = await points(frame);
    await frame.click('#train-resume');
    await frame.waitForFunction(() => document.getElementById('run-status')?.textContent === 'finished', null, { timeout: RUN_TIMEOUT });
    assert.ok((await points(frame)) > n);
    await frame.waitForSelector('#result-table tr[data-module="balora"]');
    const saved = fs.readdirSync(path.join(ws, 'lora-lens-training'));
    assert.ok(saved.some((n) => n.endsWith('-lora')) && saved.some((n) => n.endsWith('-balora')), JSON.stringify(saved));
    await frame.click('#reveal-trained');
    await openView(page, 'LoRA Lens');
    await waitForTreeItem(page, '-balora', { timeout: 30000 });
  });
});

test('causal-LM LoRA / BaLoRA training of the workspace model (code-server)', { timeout: 10 * 60 * 1000, skip: ready ? false : 'needs demo-workspace and a build' }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-e2e-training-lm-'));
  const ws = path.join(dir, 'demo-workspace');
  fs.cpSync(DEMO, ws, { recursive: true });
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const { page } = await launch(t, { workspace: ws, name: 'training-lm' });

  let frame;
  await step(page, 'training-lm-01-form', 'task causal-lm shows the detected model folder and dataset', async () => {
    await commandPaletteEntries(page, 'LoRA Lens: Train', { expect: ['LoRA Lens: Train LoRA / BaLoRA…'], timeout: 60000 });
    await runCommand(page, 'LoRA Lens: Train LoRA / BaLoRA…');
    frame = await webviewFrame(page, 'LoRA Lens: Training');
    await frame.waitForSelector('#train-start:not([disabled])');
    assert.equal(await frame.$eval('#causal-fields', (e) => e.hidden), true, 'causal-lm fields hidden for modular subtraction');
    await frame.selectOption('#f-task', 'causal-lm');
    await frame.waitForSelector('#f-model', { state: 'visible' });
    assert.equal(await frame.$eval('#f-model', (e) => e.value), 'tiny-llama');
    assert.equal(await frame.$eval('#f-data', (e) => e.value), 'data/train.jsonl');
    assert.match(await frame.$eval('#task-note', (e) => e.textContent), /cannot be resumed/);
  });

  await step(page, 'training-lm-02-finished', 'Start: 30 steps of LoRA and BaLoRA on tiny-llama; both adapters saved and listed in the tree', async () => {
    await frame.fill('#f-steps', '30');
    await frame.click('#train-start');
    await frame.waitForFunction(() => document.getElementById('run-status')?.textContent === 'finished', null, { timeout: RUN_TIMEOUT });
    // loss chart: 30 LoRA + 30 BaLoRA points
    await frame.waitForFunction(() => Number(document.getElementById('loss-chart')?.getAttribute('data-points')) === 60, null, { timeout: 10000 });
    await frame.waitForSelector('#result-table tr[data-module="balora"] td[data-metric="loss"]');
    const loss = async (m) => Number(await frame.$eval(`#result-table tr[data-module="${m}"] td[data-metric="loss"]`, (e) => e.getAttribute('data-value')));
    assert.ok((await loss('lora')) < (await loss('base')), 'LoRA held-out loss below the base');
    const saved = fs.readdirSync(path.join(ws, 'lora-lens-training'));
    assert.ok(saved.some((n) => n.startsWith('tiny-llama-lora-')) && saved.some((n) => n.startsWith('tiny-llama-balora-')), JSON.stringify(saved));
    await frame.click('#reveal-trained');
    await openView(page, 'LoRA Lens');
    await waitForTreeItem(page, 'tiny-llama-lora-', { timeout: 30000 });
    await waitForTreeItem(page, 'tiny-llama-balora-', { timeout: 30000 });
  });
});
