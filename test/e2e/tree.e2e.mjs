// Issue 13 items 5–8 in a real VS Code (code-server): the Checkpoints tree grouped by folder with
// distinct labels, a "Training runs" group and a filter; a kohya single-file LoRA classified as an
// adapter in the tree, the hover and the Analyze picker; its Stable Diffusion report with UNet blocks
// as the layer axis; the checkpoint viewer's metadata at a ~900 px editor.
// Needs `npm run build`; builds its own workspace (demo + a kohya file converted from the real SD 1.5
// diffusers LoRA in ../shared/realdata, with kohya-style training metadata).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  REPO_ROOT, expandTreeItem, hoverText, launch, openFile, openView, pickQuickItem, runCli, runCommand, selectors, treeItems, waitForTreeItem, webviewFrame, step,
} from './harness.mjs';

const SD = path.resolve(REPO_ROOT, '..', 'shared', 'realdata', 'catundchat__stable-diffusion-v1.5-lora', 'pytorch_lora_weights.safetensors');
const KOHYA = 'sd-style-kohya.safetensors';
const RUN = 'tiny-llama-20261130-0412';
const TIMEOUT = Number(process.env.E2E_ANALYSIS_TIMEOUT_MS || 120000);

/** Rewrites a safetensors header with kohya-like training metadata (long keys and values, JSON). */
function addKohyaMetadata(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const tags = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`tag_${i}_watercolor_style`, 40 - i]));
  header.__metadata__ = {
    ...(header.__metadata__ ?? {}),
    ss_network_module: 'networks.lora', ss_network_dim: '4', ss_network_alpha: '4', ss_learning_rate: '0.0001',
    ss_sd_model_name: 'runwayml/stable-diffusion-v1-5', ss_output_name: 'sd-style-kohya',
    ss_dataset_dirs: JSON.stringify({ '/home/user/datasets/watercolor_style_images_1024px_cleaned_v2': { n_repeats: 10, img_count: 48 } }),
    ss_tag_frequency: JSON.stringify({ watercolor: tags }),
    ss_training_comment: 'A long comment without spaces: https://example.com/a/very/long/path/that/must/wrap/inside/the/value/column/instead/of/squeezing/it',
    ss_sd_scripts_commit_hash_for_reproducibility_of_this_training_run: '2d7389185c021bc527b414563c245c5489d6328a',
  };
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(text), buf.subarray(8 + n)]));
}

/**
 * Fallback when ../shared/realdata is absent: an SD 1.5-shaped diffusers LoRA (the 128 attention
 * modules of the real file's layout, rank 4, seeded values) written as safetensors.
 */
function writeSdLora(file) {
  const blocks = [];
  for (const b of [0, 1, 2]) for (const a of [0, 1]) blocks.push(`down_blocks.${b}.attentions.${a}`);
  blocks.push('mid_block.attentions.0');
  for (const b of [1, 2, 3]) for (const a of [0, 1, 2]) blocks.push(`up_blocks.${b}.attentions.${a}`);
  const tensors = [];
  for (const blk of blocks) for (const attn of ['attn1', 'attn2']) for (const p of ['to_q', 'to_k', 'to_v', 'to_out.0']) {
    const name = `unet.${blk}.transformer_blocks.0.${attn}.${p}`;
    const inF = attn === 'attn2' && (p === 'to_k' || p === 'to_v') ? 768 : 320;
    tensors.push([`${name}.lora.down.weight`, [4, inF]], [`${name}.lora.up.weight`, [320, 4]]);
  }
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.1;
  const header = {};
  const parts = [];
  let off = 0;
  for (const [name, shape] of tensors) {
    const n = shape[0] * shape[1];
    const data = new Float32Array(n).map(rnd);
    header[name] = { dtype: 'F32', shape, data_offsets: [off, off + 4 * n] };
    parts.push(Buffer.from(data.buffer));
    off += 4 * n;
  }
  let text = JSON.stringify(header);
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const head = Buffer.alloc(8);
  head.writeBigUInt64LE(BigInt(Buffer.byteLength(text)));
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(text), ...parts]));
}

function makeWorkspace() {
  const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-tree-e2e-'));
  runCli(['demo', ws]);
  for (const d of ['base-a', 'base-b', 'models/c']) {
    fs.mkdirSync(path.join(ws, d), { recursive: true });
    fs.copyFileSync(path.join(ws, 'tiny-llama', 'model.safetensors'), path.join(ws, d, 'model.safetensors'));
  }
  for (const kind of ['lora', 'balora']) {
    fs.cpSync(path.join(ws, 'adapters', 'demo-lora'), path.join(ws, 'lora-lens-training', `tiny-llama-${kind}-20261130-0412`), { recursive: true });
  }
  fs.mkdirSync(path.join(ws, 'loras'));
  const sd = path.join(ws, 'loras', 'pytorch_lora_weights.safetensors');
  if (fs.existsSync(SD)) fs.copyFileSync(SD, sd);
  else writeSdLora(sd);
  runCli(['convert', sd, '--to', 'kohya', path.join(ws, 'loras', KOHYA)]);
  addKohyaMetadata(path.join(ws, 'loras', KOHYA));
  fs.copyFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'peers', 'lycoris', 'mixed.safetensors'), path.join(ws, 'loras', 'lycoris-mixed.safetensors'));
  fs.appendFileSync(path.join(ws, 'train.py'), `\nstyle = load_lora("loras/${KOHYA}")\n`);
  return ws;
}

const rowsNamed = (page, name) =>
  page.$$eval(selectors.sidebarRows, (rows, n) => rows.filter((r) => r.offsetParent !== null && (r.querySelector('.label-name')?.textContent || '').trim() === n).length, name);

test('Checkpoints tree, single-file LoRAs, SD report, viewer at ~900 px', { timeout: 12 * 60 * 1000 }, async (t) => {
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist', 'extension.js'))) assert.fail('dist/extension.js missing (run `npm run build`)');
  if (!fs.existsSync(SD)) console.log(`# ${SD} missing: using a generated SD 1.5-shaped diffusers LoRA`);
  const ws = makeWorkspace();
  t.after(() => fs.rmSync(ws, { recursive: true, force: true }));
  const { page } = await launch(t, { workspace: ws, name: 'tree' });

  await t.test('tree: folders, distinct labels, training runs', async () => {
    await step(page, 'tree-01-grouped', 'the Checkpoints tree should group by folder with folder-relative labels and one row per training run', async () => {
      await openView(page, 'LoRA Lens');
      await waitForTreeItem(page, 'Training runs', { timeout: 60000 });
      for (const label of ['adapters', 'demo-lora', 'base-a/model.safetensors', 'base-b/model.safetensors', 'tiny-llama/model.safetensors', 'models/c/model.safetensors', RUN]) {
        await waitForTreeItem(page, label);
      }
      assert.equal(await rowsNamed(page, 'model.safetensors'), 0, `no bare "model.safetensors" rows; rows: ${JSON.stringify(await treeItems(page))}`);
      const rows = await treeItems(page);
      const run = rows.find((r) => r.startsWith(RUN));
      assert.match(run ?? '', /LoRA \+ BaLoRA|BaLoRA \+ LoRA/, `the run row names both adapters: ${JSON.stringify(rows)}`);
      const levels = await page.$$eval(selectors.sidebarRows, (rs) => rs.map((r) => [(r.querySelector('.label-name')?.textContent || '').trim(), Number(r.getAttribute('aria-level'))]));
      const level = (n) => levels.find(([l]) => l.startsWith(n))?.[1];
      assert.equal(level('Training runs'), 1);
      assert.equal(level(RUN), 2, `levels: ${JSON.stringify(levels)}`);
      assert.equal(level('tiny-llama-lora-20261130'), 3, 'run adapters are inside the run row, not top-level');
      assert.equal(level('tiny-llama-balora-20261130'), 3);
      await waitForTreeItem(page, 'tiny-llama-balora-20261130-0412');
    });
  });

  await t.test('a kohya file is an adapter in the tree (with UNet block groups) and in the hover', async () => {
    await step(page, 'tree-02-kohya', `"${KOHYA}" should be a kohya adapter row grouped by UNet block`, async () => {
      await expandTreeItem(page, 'loras');
      const row = await waitForTreeItem(page, KOHYA);
      const text = (await row.innerText()).replace(/\s+/g, ' ');
      assert.match(text, /kohya · r=4 .*128 modules/, `row: ${text}`);
      const sd = (await treeItems(page)).find((r) => r.startsWith('pytorch_lora_weights.safetensors')) ?? '';
      assert.match(sd, /diffusers · r=4/, `the diffusers file is an adapter too: ${sd}`);
      await expandTreeItem(page, KOHYA);
      await waitForTreeItem(page, 'down.0.attn0');
      await waitForTreeItem(page, 'mid.attn0');
    });
    await step(page, 'tree-03-hover', `hovering "loras/${KOHYA}" in train.py should describe a kohya LoRA adapter`, async () => {
      await openFile(page, 'train.py');
      const text = await hoverText(page, `loras/${KOHYA}`, { contains: /LoRA adapter/, timeout: 60000 });
      assert.match(text, /kohya/, `hover: ${text}`);
      assert.match(text, /Analyze adapter/, `hover: ${text}`);
    });
    await page.keyboard.press('Escape');
  });

  await t.test('filter: command and title button', async () => {
    await step(page, 'tree-04-filter', 'Filter Checkpoints "kohya" should leave only the kohya files', async () => {
      await openView(page, 'LoRA Lens');
      const button = page.locator('.part.sidebar [aria-label*="Filter Checkpoints"]:visible').first();
      await button.waitFor({ state: 'visible', timeout: 10000 });
      await button.click();
      const input = await page.waitForSelector(selectors.quickInputBox, { state: 'visible' });
      await input.fill('kohya');
      await page.keyboard.press('Enter');
      await page.waitForFunction((sel) => {
        const names = [...document.querySelectorAll(sel)].filter((r) => r.offsetParent !== null).map((r) => (r.querySelector('.label-name')?.textContent || '').trim());
        return names.length > 0 && !names.includes('adapters') && !names.includes('Training runs');
      }, selectors.sidebarRows, { timeout: 20000 });
      await waitForTreeItem(page, KOHYA);
      // The view's description (title) and message (above the rows) say what is filtered.
      await page.waitForFunction(() => /filter: kohya/.test(document.querySelector('.part.sidebar').textContent), null, { timeout: 10000 });
      await page.waitForFunction(() => /Showing 2 of \d+ checkpoints matching "kohya"/.test(document.querySelector('.part.sidebar').textContent), null, { timeout: 10000 })
        .catch((e) => { e.message = `the view message should count the kohya file and the kohya-style LyCORIS file: ${e.message}`; throw e; });
    });
    await step(page, 'tree-05-filter-cleared', 'Clear Checkpoints Filter should bring every row back', async () => {
      await runCommand(page, 'LoRA Lens: Clear Checkpoints Filter');
      await waitForTreeItem(page, 'Training runs', { timeout: 20000 });
    });
  });

  await t.test('the SD report uses UNet blocks as layers', async () => {
    let frame;
    await step(page, 'tree-06-picker', 'the Analyze picker should list the kohya file', async () => {
      await runCommand(page, 'LoRA Lens: Analyze Adapter');
      await pickQuickItem(page, KOHYA);
      frame = await webviewFrame(page, `LoRA Lens: ${KOHYA}`, { timeout: TIMEOUT });
    });
    await step(page, 'tree-07-sd-report', 'the report should chart metrics over down/mid/up blocks with one series per module type', async () => {
      await frame.waitForSelector('#layers-chart[data-x-labels]', { timeout: TIMEOUT });
      const labels = JSON.parse(await frame.getAttribute('#layers-chart', 'data-x-labels'));
      const series = JSON.parse(await frame.getAttribute('#layers-chart', 'data-series'));
      assert.equal(labels.length, 16, `16 attention blocks: ${labels}`);
      assert.deepEqual([labels[0], labels[6], labels[15]], ['down.0.attn0', 'mid.attn0', 'up.3.attn2']);
      assert.equal(series.length, 8, `8 module types: ${series}`);
      assert.ok(series.includes('attn2_to_k'), `series: ${series}`);
      assert.ok(Number(await frame.getAttribute('#spectrum-chart', 'data-points')) > 0, 'the spectrum chart has points');
      await frame.$eval('#layers-card', (el) => el.scrollIntoView());
    });
    await step(page, 'tree-07b-lycoris-report', 'LoHa/LoKr rows show a type badge and "—" for factor metrics', async () => {
      await runCommand(page, 'LoRA Lens: Analyze Adapter');
      await pickQuickItem(page, 'lycoris-mixed');
      const f = await webviewFrame(page, 'LoRA Lens: lycoris-mixed', { timeout: TIMEOUT });
      await f.waitForSelector('#module-table tbody tr', { timeout: TIMEOUT });
      const rows = await f.$$eval('#module-table tbody tr', (trs) => trs.map((tr) => ({
        type: tr.querySelector('.badge.type')?.textContent ?? 'LoRA',
        kappaA: tr.querySelector('td[data-metric="kappaA"]').textContent,
        sigma1: tr.querySelector('td[data-metric="spectral"]').textContent,
      })));
      const structured = rows.filter((r) => r.type !== 'LoRA');
      assert.ok(structured.length > 0 && structured.every((r) => ['LoHa', 'LoKr'].includes(r.type)), JSON.stringify(rows));
      for (const r of structured) assert.equal(r.kappaA, '—', JSON.stringify(r));
      assert.ok(structured.some((r) => Number.isFinite(Number(r.sigma1))), `σ₁ of LoHa/LoKr rows are numbers: ${JSON.stringify(rows)}`);
      assert.ok(!rows.some((r) => /NaN/.test(r.kappaA + r.sigma1)), 'no NaN in the table');
      await f.$eval('#module-table', (el) => el.scrollIntoView());
    });
  });

  await t.test('checkpoint viewer metadata at a ~900 px editor', async () => {
    await step(page, 'tree-08-viewer-900', 'metadata values should use the width, not wrap one character per line', async () => {
      await runCommand(page, 'View: Close All Editors');
      await page.setViewportSize({ width: 1250, height: 1000 });
      await openView(page, 'LoRA Lens');
      await openFile(page, `loras/${KOHYA}`);
      const frame = await webviewFrame(page, KOHYA, { timeout: TIMEOUT });
      await frame.waitForSelector('#metadata-table', { timeout: TIMEOUT });
      const width = await frame.evaluate(() => document.documentElement.clientWidth);
      assert.ok(width >= 820 && width <= 1000, `editor width ${width} px (want ~900)`);
      const cells = await frame.$$eval('#metadata-table tr', (trs) => trs.map((tr) => ({ key: tr.getAttribute('data-key'), th: tr.querySelector('th').getBoundingClientRect().width, td: tr.querySelector('td').getBoundingClientRect().width })));
      for (const c of cells) assert.ok(c.td >= 0.5 * width, `value column of ${c.key} is ${c.td} px of ${width}`);
      const comment = await frame.$eval('#metadata-table tr[data-key="ss_training_comment"] td', (td) => td.getBoundingClientRect().height);
      assert.ok(comment < 80, `a 150-character value takes ${comment} px height (one character per line would be thousands)`);
      await frame.$eval('#metadata-card', (el) => el.scrollIntoView());
    });
    await page.setViewportSize({ width: 1600, height: 1000 });
  });
});
