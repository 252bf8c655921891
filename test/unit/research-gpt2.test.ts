/**
 * Attention Lipschitz table on a GPT-2 (Conv1D, fused c_attn) layout against numpy
 * (test/fixtures/research/gpt2/gen_gpt2_lipschitz.py, from the definitions): per-head ‖V_h‖₂ and
 * ‖K_hᵀQ_h‖₂/√d_head of test/fixtures/hf/tiny-gpt2, base and with a fan_in_fan_out LoRA on c_attn/c_proj.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter, openStore } from '../../src/core/formats/open';
import { attentionLayout, attentionLipschitzTable, headMatrices } from '../../src/core/research/lipschitz';
import { computeLipschitz } from '../../src/worker/jobs/research';

const FIX = path.join(__dirname, '..', '..', '..', 'test', 'fixtures');
const BASE = path.join(FIX, 'hf', 'tiny-gpt2');
const ADAPTER = path.join(FIX, 'research', 'gpt2', 'tiny-gpt2-lora');
const REF = JSON.parse(fs.readFileSync(path.join(FIX, 'research', 'gpt2', 'expected.json'), 'utf8')) as {
  layers: number; heads: number; headDim: number; hidden: number;
  rows: { which: 'base' | 'adapted'; layer: number; head: number; normV: number; normA: number }[];
  head_l1_h1: { which: 'base' | 'adapted'; Q: number[]; K: number[]; V: number[]; O: number[] }[];
};
const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });
const close = (a: number, b: number, tol = 1e-5): boolean => Math.abs(a - b) <= tol * Math.max(1, Math.abs(b));

test('GPT-2 layout: fused Conv1D c_attn detected from config + tensor names', () => {
  const store = openStore(path.join(BASE, 'model.safetensors'));
  try {
    const lay = attentionLayout(JSON.parse(fs.readFileSync(path.join(BASE, 'config.json'), 'utf8')), store.tensors.keys());
    assert.equal(lay.family, 'gpt2');
    assert.deepEqual([lay.layers, lay.heads, lay.kvHeads, lay.headDim, lay.hidden], [REF.layers, REF.heads, REF.heads, REF.headDim, REF.hidden]);
    assert.equal(lay.weightName(1, 'k'), 'h.1.attn.c_attn.weight');
    assert.equal(lay.weightName(0, 'o'), 'h.0.attn.c_proj.weight');
  } finally { store.close(); }
});

test('GPT-2 Lipschitz table (base and fan_in_fan_out LoRA) = numpy', async () => {
  const store = openStore(path.join(BASE, 'model.safetensors'));
  const adapter = openAdapter(ADAPTER);
  try {
    const lay = attentionLayout(JSON.parse(fs.readFileSync(path.join(BASE, 'config.json'), 'utf8')), store.tensors.keys());
    const t = await attentionLipschitzTable(store, lay, { engine, adapter, n: 16, R: 3 });
    assert.equal(t.rows.length, REF.layers * REF.heads);
    assert.deepEqual(t.adaptedModules, ['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn']);
    for (const ref of REF.rows) {
      const row = t.rows.find((r) => r.layer === ref.layer && r.head === ref.head)!;
      const got = ref.which === 'base' ? row : row.adapted!;
      assert.ok(close(got.normV, ref.normV), `${ref.which} L${ref.layer}H${ref.head} ‖V‖ ${got.normV} vs ${ref.normV}`);
      assert.ok(close(got.normA, ref.normA), `${ref.which} L${ref.layer}H${ref.head} ‖KᵀQ‖/√d ${got.normA} vs ${ref.normA}`);
    }
    // the adapter changes the bound (so the comparison above is not base = adapted by accident)
    assert.ok(t.rows.every((r) => Math.abs(r.adapted!.normA - r.normA) > 1e-3));
    for (const ref of REF.head_l1_h1) {
      const h = await headMatrices(store, lay, 1, 1, engine, ref.which === 'adapted' ? adapter : undefined);
      for (const k of ['Q', 'K', 'V', 'O'] as const) {
        const err = Math.max(...Array.from(h[k].data, (v, i) => Math.abs(v - ref[k][i])));
        assert.ok(err < 1e-5, `${ref.which} ${k}: max error ${err}`);
      }
    }
  } finally { store.close(); adapter.store.close(); }
});

test('research.lipschitz job on a GPT-2 folder with its adapter', async () => {
  const ctx = { engine, token: { cancelled: false }, progress: () => undefined };
  const r = await computeLipschitz({ base: BASE, adapter: ADAPTER, n: 8, layer: 1, head: 1 }, engine, ctx);
  assert.equal(r.layout.layers, 2);
  assert.ok(r.scaling.adapted && r.scaling.adapted.slope !== r.scaling.base.slope);
  assert.ok(r.table.rows.every((x) => x.adapted));
});
