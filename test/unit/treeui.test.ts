/**
 * Issue 13 items 5–7: Stable Diffusion block layers (on real diffusers names from
 * /work/shared/realdata and their kohya spellings), single-file LoRA classification, the Checkpoints
 * tree layout (folders, distinct labels, training runs, filter) and export names.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { assignSdLayers, sdBlockOf } from '../../src/core/analysis/layers';
import { isAdapterFile } from '../../src/core/formats/classify';
import { describeWeights, openAdapter } from '../../src/core/formats/open';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { layoutCheckpoints, type CheckpointEntry } from '../../src/shared/inspect';
import { exportFileName } from '../../src/shared/reportView';
import { fmt4, reviveReport, type AdapterReport } from '../../src/shared/report';
import { progressText } from '../../src/shared/format';
import { scanJob } from '../../src/worker/jobs/inspect';
import { convertAdapter } from '../../src/core/convert/convert';

const REAL = path.resolve(__dirname, '../../../../shared/realdata');
const SD15 = path.join(REAL, 'catundchat__stable-diffusion-v1.5-lora', 'pytorch_lora_weights.safetensors');
const SD15_NEW = path.join(REAL, 'rafidreezwan__brain-mri-sd-lora-training', 'pytorch_lora_weights.safetensors');
const haveReal = fs.existsSync(SD15) && fs.existsSync(SD15_NEW);

/** Expected label from the definition: split the dotted path, find the block words by position. */
function expectedLabel(name: string): string {
  const p = name.split('.');
  const i = p.findIndex((x) => x === 'down_blocks' || x === 'up_blocks' || x === 'mid_block');
  if (p[i] === 'mid_block') return `mid.attn${p[i + 2]}`;
  return `${p[i].split('_')[0]}.${p[i + 1]}.attn${p[i + 3]}`;
}

test('SD block layers on real diffusers names (old and new style) and their kohya spellings', { skip: !haveReal && 'realdata missing' }, () => {
  for (const file of [SD15, SD15_NEW]) {
    const a = openAdapter(file);
    try {
      const mods = a.modules.map((m) => ({ name: m.name, layer: m.layer, kind: m.kind, group: 'x', layerLabel: undefined as string | undefined }));
      assert.equal(mods.length, 128);
      assert.ok(mods.every((m) => m.layer === 0), 'the generic parse puts all SD modules at layer 0 (the bug)');
      assert.ok(assignSdLayers(mods));
      // SD 1.5 UNet: down 0–2 × 2 attentions, mid × 1, up 1–3 × 3 = 16 blocks of 8 modules.
      const labels = [...new Set(mods.map((m) => m.layerLabel))];
      assert.equal(labels.length, 16);
      for (const m of mods) assert.equal(m.layerLabel, expectedLabel(m.name), m.name);
      const byLayer = new Map<number, string>();
      for (const m of mods) byLayer.set(m.layer!, m.layerLabel!);
      const order = [...byLayer.entries()].sort((x, y) => x[0] - y[0]).map((e) => e[1]);
      assert.deepEqual(order, ['down.0.attn0', 'down.0.attn1', 'down.1.attn0', 'down.1.attn1', 'down.2.attn0', 'down.2.attn1', 'mid.attn0',
        'up.1.attn0', 'up.1.attn1', 'up.1.attn2', 'up.2.attn0', 'up.2.attn1', 'up.2.attn2', 'up.3.attn0', 'up.3.attn1', 'up.3.attn2']);
      const kinds = [...new Set(mods.map((m) => m.kind))].sort();
      assert.deepEqual(kinds, ['attn1.to_k', 'attn1.to_out.0', 'attn1.to_q', 'attn1.to_v', 'attn2.to_k', 'attn2.to_out.0', 'attn2.to_q', 'attn2.to_v']);
      // kohya spells the same module lora_unet_<path with _>: same block.
      for (const m of mods) {
        const k = sdBlockOf(`lora_unet_${m.name.replace(/^unet\./, '').replace(/\./g, '_')}`);
        assert.equal(k?.label, m.layerLabel, m.name);
      }
    } finally {
      a.store.close();
    }
  }
});

test('SD text encoder and SDXL (LDM) names; LLM names are left alone', () => {
  assert.equal(sdBlockOf('lora_te_text_model_encoder_layers_3_self_attn_q_proj')?.label, 'te.3');
  assert.equal(sdBlockOf('lora_te2_text_model_encoder_layers_11_mlp_fc1')?.label, 'te2.11');
  assert.equal(sdBlockOf('text_encoder.text_model.encoder.layers.0.self_attn.k_proj')?.type, 'self_attn.k_proj');
  assert.equal(sdBlockOf('lora_unet_input_blocks_4_1_transformer_blocks_1_attn1_to_k')?.label, 'in.4.1.t1');
  assert.equal(sdBlockOf('lora_unet_middle_block_1_transformer_blocks_0_attn2_to_v')?.label, 'mid.1');
  assert.equal(sdBlockOf('lora_unet_output_blocks_2_1_proj_in')?.type, 'proj_in');
  const te = sdBlockOf('lora_te1_text_model_encoder_layers_11_mlp_fc1')!, down = sdBlockOf('lora_unet_input_blocks_1_1_proj_in')!;
  const mid = sdBlockOf('lora_unet_middle_block_1_proj_in')!, up = sdBlockOf('lora_unet_output_blocks_0_1_proj_in')!;
  assert.ok(te.key < down.key && down.key < mid.key && mid.key < up.key, 'network order: TE, input, middle, output');
  for (const n of ['model.layers.0.self_attn.q_proj', 'model.layers.3.mlp.down_proj', 'transformer.h.2.attn.c_attn', 'blk.0.attn_q']) assert.equal(sdBlockOf(n), undefined, n);
  const llm = [{ name: 'model.layers.0.self_attn.q_proj', layer: 0, kind: 'q_proj', group: 'layers.0' }];
  assert.equal(assignSdLayers(llm), false);
  assert.deepEqual(llm[0], { name: 'model.layers.0.self_attn.q_proj', layer: 0, kind: 'q_proj', group: 'layers.0' });
});

const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-treeui-'));
after(() => fs.rmSync(ws, { recursive: true, force: true }));

test('single-file LoRAs are adapters by their header; full models are not', { skip: !haveReal && 'realdata missing' }, async () => {
  for (const f of [SD15, SD15_NEW, path.join(REAL, 'cloneofsimo__lora', 'lora_disney.safetensors')]) {
    const s = describeWeights(f);
    assert.equal(isAdapterFile(s.tensors.map((t) => t.name), s.metadata), true, f);
  }
  makeDemoWorkspace(ws);
  const model = describeWeights(path.join(ws, 'tiny-llama', 'model.safetensors'));
  assert.equal(isAdapterFile(model.tensors.map((t) => t.name), model.metadata), false);
  assert.equal(isAdapterFile(['blk.0.attn_q.weight'], { 'general.type': 'model' }), false);
  assert.equal(isAdapterFile(['blk.0.attn_q.weight.lora_a', 'blk.0.attn_q.weight.lora_b'], { 'general.type': 'adapter' }), true);
  // The scan job lists a copied SD LoRA as an adapter (described), the model as a file.
  fs.mkdirSync(path.join(ws, 'loras'));
  fs.copyFileSync(SD15, path.join(ws, 'loras', 'style.safetensors'));
  const { entries } = await scanJob({ folders: [ws] });
  const lora = entries.find((e) => e.ref.path.endsWith('style.safetensors'))!;
  assert.equal(lora.ref.kind, 'adapter-file');
  assert.ok(lora.isAdapter && lora.adapter && 'value' in lora.adapter);
  const snap = (lora.adapter as { value: { modules: { group: string; label: string }[] } }).value;
  assert.equal(new Set(snap.modules.map((m) => m.group)).size, 16, 'tree groups by UNet block');
  assert.ok(snap.modules.some((m) => m.group === 'mid.attn0' && m.label === 'attn2.to_q'));
  const model2 = entries.find((e) => e.ref.path.endsWith(path.join('tiny-llama', 'model.safetensors')))!;
  assert.equal(model2.isAdapter, false);
  const picks = await scanJob({ folders: [ws], adaptersOnly: true });
  assert.ok(picks.entries.some((e) => e.ref.path.endsWith('style.safetensors')), 'the Analyze picker lists the single-file LoRA');
  // Our own converted files: a kohya .safetensors and a llama.cpp GGUF LoRA of demo-lora (14 modules).
  const demo = openAdapter(path.join(ws, 'adapters', 'demo-lora'));
  try {
    await convertAdapter(demo, 'kohya', path.join(ws, 'loras', 'demo-kohya.safetensors'));
    await convertAdapter(demo, 'gguf', path.join(ws, 'loras', 'demo.gguf'), { base: path.join(ws, 'tiny-llama') });
  } finally {
    demo.store.close();
  }
  const again = await scanJob({ folders: [ws] });
  for (const [file, format] of [['demo-kohya.safetensors', 'kohya'], ['demo.gguf', 'gguf']]) {
    const e = again.entries.find((x) => x.ref.path.endsWith(file))!;
    assert.equal(e.ref.kind, 'adapter-file', file);
    assert.ok(e.adapter && 'value' in e.adapter && e.adapter.value.format === format && e.adapter.value.modules.length === 14, file);
  }
});

function entry(folder: string, rel: string, kind = 'safetensors'): CheckpointEntry {
  const p = `${folder}/${rel}`;
  return { folder, ref: { kind, path: p, name: rel.split('/').pop()!, files: [p] }, isAdapter: kind.includes('adapter') };
}

test('tree layout: folders, distinct folder-relative labels, one row per training run, filter', () => {
  const W = '/w';
  const entries = [
    entry(W, 'a/model.safetensors'), entry(W, 'b/model.safetensors'), entry(W, 'c/model.safetensors'), entry(W, 'd/model.safetensors'),
    entry(W, 'adapters/demo-lora', 'peft-adapter'), entry(W, 'adapters/demo-rslora', 'peft-adapter'),
    entry(W, 'lora-lens-training/tiny-llama-lora-20261130-0412', 'peft-adapter'), entry(W, 'lora-lens-training/tiny-llama-balora-20261130-0412', 'peft-adapter'),
    entry(W, 'lora-lens-training/sub-r4-20261130-0500-lora', 'peft-adapter'), entry(W, 'lora-lens-training/sub-r4-20261130-0500-balora', 'peft-adapter'),
    entry(W, 'top.gguf', 'gguf'),
  ];
  const l = layoutCheckpoints(entries);
  assert.deepEqual(l.top.map((i) => i.label), ['top.gguf', 'a/model.safetensors', 'b/model.safetensors', 'c/model.safetensors', 'd/model.safetensors']);
  assert.deepEqual(l.folders.map((f) => [f.label, f.items.map((i) => i.label)]), [['adapters', ['demo-lora', 'demo-rslora']]]);
  assert.deepEqual(l.runs.map((r) => [r.key, r.items.map((i) => i.label)]), [
    ['tiny-llama-20261130-0412', ['tiny-llama-balora-20261130-0412', 'tiny-llama-lora-20261130-0412']],
    ['sub-r4-20261130-0500', ['sub-r4-20261130-0500-balora', 'sub-r4-20261130-0500-lora']],
  ]);
  const all = [...l.top, ...l.folders.flatMap((f) => f.items.map((i) => ({ ...i, label: `${f.label}/${i.label}` })))].map((i) => i.label);
  assert.equal(new Set(all).size, all.length, 'labels are distinct');
  const f = layoutCheckpoints(entries, 'model b/');
  assert.deepEqual(f.top.map((i) => i.label), ['b/model.safetensors']);
  assert.equal(f.folders.length + f.runs.length, 0);
  assert.deepEqual(layoutCheckpoints(entries, 'rslora').folders.map((x) => x.items.map((i) => i.label)), [['demo-rslora']]);
  assert.deepEqual(layoutCheckpoints(entries, 'tiny-llama-2026').runs.map((r) => r.items.length), [2]);
  assert.deepEqual(layoutCheckpoints(entries, 'nothing-matches'), { top: [], folders: [], runs: [] });
});

test('export names have no doubled words', () => {
  assert.equal(exportFileName('demo-lora', 'json'), 'demo-lora-report.json');
  assert.equal(exportFileName('pytorch_lora_weights.safetensors', 'csv'), 'pytorch_lora_weights-report.csv');
  assert.equal(exportFileName('style.safetensors', 'csv'), 'style-lora-report.csv');
  assert.equal(exportFileName('adapter', 'json'), 'adapter-lora-report.json');
});

test('plain progress text; NaN survives the webview JSON round trip', () => {
  assert.equal(progressText('Reading factors', 2, 28), 'Reading factors 2/28');
  assert.equal(progressText('pre-training base: step 5/100, loss 1.2', 5, 100), 'pre-training base: step 5/100, loss 1.2');
  assert.equal(progressText('written', 0, 0), 'written');
  const row = { name: 'm', kappaA: NaN, kappaB: NaN, balanceGap: NaN, spectral: 2, sigma: [2, 1], sigmaA: [], error: undefined, structure: { type: 'loha', method: 'x', maxRank: 4, details: {} } };
  const r = JSON.parse(JSON.stringify({ modules: [row] })) as AdapterReport;
  assert.equal((r.modules[0] as unknown as { kappaA: unknown }).kappaA, null, 'JSON turns NaN into null');
  assert.throws(() => (null as unknown as number).toExponential(), TypeError);
  reviveReport(r);
  assert.ok(Number.isNaN(r.modules[0].kappaA) && Number.isNaN(r.modules[0].balanceGap));
  assert.deepEqual(r.modules[0].sigma, [2, 1]);
  assert.equal(r.modules[0].structure?.type, 'loha');
  assert.equal(fmt4(r.modules[0].kappaA), '–');
  assert.equal(fmt4(null), '–');
});
