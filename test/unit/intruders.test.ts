import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { FormatError } from '../../src/core/formats/errors';
import type { LoraModule } from '../../src/core/formats/adapter';
import type { TensorInfo, TensorStore } from '../../src/core/formats/safetensors';
import { openAdapter } from '../../src/core/formats/open';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { findIntruders, mitigateIntruders, adapterIntruders } from '../../src/core/base/intruders';
import { baseWeightFor, detectBaseModel, openBaseModel, readBaseWeight } from '../../src/core/base/basemodel';
import { fullSpectrum } from '../../src/core/base/rsvd';
import { DecompCache } from '../../src/core/base/cache';

const FIX = path.resolve(__dirname, '../../../test/fixtures/base');
const ref = JSON.parse(fs.readFileSync(path.join(FIX, 'intruders.json'), 'utf8')) as {
  d: number; W0: number[]; u: number[]; v: number[];
  cases: { lambda: number; count: number; maxCos: number[] }[];
  mitigation: { scale: number; lambda: number; intruderIdx: number[]; sigmaBefore: number[]; sigmaAfterUntruncated: number[]; sigmaAfterRefactor: number[]; normBn: number; normAn: number; truncationError: number };
};
const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });
const d = ref.d;
const W0 = Float32Array.from(ref.W0);

test('toy (papers.md §2.6): rank-1 update λuvᵀ → intruder counts and max|cos| as numpy (exact mode)', async () => {
  for (const c of ref.cases) {
    const r = await findIntruders(engine, W0, d, d, { B: Float32Array.from(ref.u), A: Float32Array.from(ref.v), r: 1, scale: c.lambda });
    assert.equal(r.mode, 'exact');
    assert.equal(r.baseVectors, d);
    assert.equal(r.count, c.count, `λ=${c.lambda}`);
    for (let j = 0; j < 10; j++) assert.ok(Math.abs(r.vectors[j].maxCos - c.maxCos[j]) < 1e-4, `λ=${c.lambda} j=${j}: ${r.vectors[j].maxCos} vs ${c.maxCos[j]}`);
    if (c.count === 1) assert.equal(r.intruders[0].index, 0);
  }
});

test('approx mode (K0 = d − 8, K0 = 8): never a false intruder; true ones are certain or possible', async () => {
  for (const c of ref.cases) {
    const r = await findIntruders(engine, W0, d, d, { B: Float32Array.from(ref.u), A: Float32Array.from(ref.v), r: 1, scale: c.lambda }, { mode: 'approx', baseRank: d - 8, powerIters: 6 });
    assert.equal(r.mode, 'approx');
    // the truly intruding vector may be reported as 'possible' but never as 'ok'; no false intruders
    assert.ok(r.count <= c.count, `λ=${c.lambda}: ${r.count} > ${c.count}`);
    assert.equal(r.count + r.possible >= c.count, true);
    for (const v of r.vectors) assert.ok(v.upperBound! >= v.maxCos - 1e-12);
  }
  const r = await findIntruders(engine, W0, d, d, { B: Float32Array.from(ref.u), A: Float32Array.from(ref.v), r: 1, scale: 4 }, { mode: 'approx', baseRank: 8 });
  assert.ok(r.vectors.every((v) => v.status !== 'intruder' || v.upperBound! < 0.5));
});

test('mitigation (PEFT PR #2999, λ = 0.75): σ₁ 2.648 → 1.991, refactored rank-1 adapter as numpy', async () => {
  const m = ref.mitigation;
  const res = await mitigateIntruders(engine, W0, d, d, { B: Float32Array.from(ref.u), A: Float32Array.from(ref.v), r: 1, scale: m.scale }, { lambda: m.lambda });
  assert.deepEqual(res.intruderIndices, m.intruderIdx);
  assert.ok(Math.abs(res.sigmaBefore[0] - 2.648) < 1e-3 && Math.abs(res.sigmaBefore[0] - m.sigmaBefore[0]) < 1e-5);
  assert.ok(Math.abs(res.sigmaAfter[0] - 1.991) < 1e-3);
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(res.sigmaAfter[i] - m.sigmaAfterUntruncated[i]) < 1e-5, `after ${i}`);
  // σ of W0 + s·B_new·A_new (rank-1 truncation, balanced split)
  const Wn = new Float32Array(d * d);
  for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) Wn[i * d + j] = W0[i * d + j] + m.scale * res.B[i] * res.A[j];
  const s = await fullSpectrum(engine, Wn, d, d);
  for (let i = 0; i < 5; i++) assert.ok(Math.abs(s[i] - m.sigmaAfterRefactor[i]) < 1e-4, `refactor σ${i}: ${s[i]} vs ${m.sigmaAfterRefactor[i]}`);
  const nb = Math.hypot(...res.B), na = Math.hypot(...res.A);
  assert.ok(Math.abs(nb - m.normBn) < 1e-5 && Math.abs(na - m.normAn) < 1e-5, 'balanced √S split');
  assert.ok(Math.abs(res.truncationError - m.truncationError) < 1e-5);
  // no intruders → unchanged
  const same = await mitigateIntruders(engine, W0, d, d, { B: Float32Array.from(ref.u), A: Float32Array.from(ref.v), r: 1, scale: 0.1 });
  assert.equal(same.changed, false);
});

// ---------------------------------------------------------------------------------------------
function fakeStore(shapes: Record<string, number[]>): TensorStore {
  const tensors = new Map<string, TensorInfo>(Object.entries(shapes).map(([name, shape]) => [name, { name, dtype: 'F32', shape, numel: shape.reduce((a, b) => a * b, 1), offset: 0, byteLength: 0, file: 'x' }]));
  return { path: '/models/base', tensors, metadata: {}, warnings: [], totalBytes: 0, readRaw: () => new Uint8Array(), readF32: () => new Float32Array(), readF64: () => new Float64Array(), close: () => undefined };
}
const mod = (name: string, out: number, inF: number, fif = false): LoraModule => ({ name, kind: name.split('.').pop()!, rank: 8, outFeatures: out, inFeatures: inF, scale: 2, scaleSource: '', fanInFanOut: fif } as unknown as LoraModule);

test('base name mapping: llama, gpt2 (Conv1D, fused c_attn), bert, Phi-3 fused qkv, errors', () => {
  const llama = fakeStore({ 'model.layers.0.self_attn.q_proj.weight': [64, 64], 'model.layers.0.mlp.down_proj.weight': [64, 176] });
  assert.equal(baseWeightFor(mod('model.layers.0.self_attn.q_proj', 64, 64), llama).tensorName, 'model.layers.0.self_attn.q_proj.weight');
  assert.equal(baseWeightFor(mod('base_model.model.model.layers.0.mlp.down_proj', 64, 176), llama).transposed, false);
  const gpt2 = { dir: '', config: { model_type: 'gpt2' }, modelType: 'gpt2', store: fakeStore({ 'h.0.attn.c_attn.weight': [768, 2304], 'h.0.attn.c_proj.weight': [768, 768] }) };
  const ca = baseWeightFor(mod('transformer.h.0.attn.c_attn', 2304, 768, true), gpt2);
  assert.deepEqual([ca.tensorName, ca.transposed, ca.out, ca.in, ca.slice], ['h.0.attn.c_attn.weight', true, 2304, 768, undefined]);
  assert.equal(baseWeightFor(mod('transformer.h.0.attn.c_proj', 768, 768, true), gpt2).transposed, true);
  const bert = fakeStore({ 'bert.encoder.layer.0.attention.self.query.weight': [768, 768] });
  assert.equal(baseWeightFor(mod('bert.encoder.layer.0.attention.self.query', 768, 768), bert).tensorName, 'bert.encoder.layer.0.attention.self.query.weight');
  const bert2 = fakeStore({ 'encoder.layer.0.attention.self.query.weight': [768, 768] });
  assert.equal(baseWeightFor(mod('bert.encoder.layer.0.attention.self.query', 768, 768), bert2).tensorName, 'encoder.layer.0.attention.self.query.weight');
  const phi = { dir: '', config: { hidden_size: 96, num_attention_heads: 4, num_key_value_heads: 2 }, store: fakeStore({ 'model.layers.0.self_attn.qkv_proj.weight': [192, 96] }) };
  const k = baseWeightFor(mod('model.layers.0.self_attn.k_proj', 48, 96), phi);
  assert.deepEqual(k.slice, { start: 96, end: 144 });
  assert.throws(() => baseWeightFor(mod('model.layers.0.self_attn.q_proj', 32, 64), llama), (e: unknown) => e instanceof FormatError && /\[64, 64\]/.test(e.message) && /\[32, 64\]/.test(e.message));
  assert.throws(() => baseWeightFor(mod('model.layers.9.self_attn.q_proj', 64, 64), llama), (e: unknown) => e instanceof FormatError && /no base weight/.test(e.message));
});

test('demo workspace: detectBaseModel, hub ids, end-to-end adapter intruders with cache', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-base-'));
  makeDemoWorkspace(root);
  const adapter = openAdapter(path.join(root, 'adapters', 'demo-lora'));
  const loc = detectBaseModel(adapter);
  assert.equal(loc.dir, path.join(root, 'tiny-llama'));
  const hub = detectBaseModel({ ...adapter, summary: { ...adapter.summary, baseModel: 'gpt2' } });
  assert.equal(hub.dir, undefined);
  assert.match(hub.message!, /base model 'gpt2' is a hub id, not a local folder: set it with LoRA Lens: Set Base Model/);
  const base = openBaseModel(loc.dir!);
  const ref0 = baseWeightFor(adapter.modules[0], base);
  assert.equal(readBaseWeight(base, ref0).length, ref0.out * ref0.in);
  const cache = new DecompCache(path.join(root, 'cache'));
  const res = await adapterIntruders(engine, adapter, base, { cache });
  assert.equal(res.errors.length, 0, JSON.stringify(res.errors));
  assert.equal(res.totals.analysed, adapter.modules.length);
  assert.equal(res.totals.intruders, res.modules.reduce((s, m) => s + m.count, 0));
  for (const m of res.modules) assert.equal(m.mode, 'exact');
  const again = await adapterIntruders(engine, adapter, base, { cache });
  assert.ok(again.modules.every((m) => m.baseCached));
  assert.deepEqual(again.modules.map((m) => m.count), res.modules.map((m) => m.count));
  adapter.store.close();
  base.store.close();
});
