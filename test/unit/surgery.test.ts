import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter, openStore } from '../../src/core/formats/open';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { rebalanceAdapter, readPair } from '../../src/core/surgery/balora';
import { chooseRank, planRankReduction, reduceRankAdapter } from '../../src/core/surgery/rank';
import { combineAdapters, mergeIntoBase, rescaleAdapter } from '../../src/core/surgery/combine';
import { OutputExistsError, assertNotInput, writeAdapterFolder, writeNewFileAtomic } from '../../src/core/formats/writer';
import { mat, matmul } from '../../src/core/linalg/dense';
import { encodeSafetensors } from '../../src/core/formats/safetensors';
import { fromFloats } from '../../src/core/formats/dtype';

const engine = new Engine();
after(() => engine.dispose());
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-surgery-'));
makeDemoWorkspace(root);
const LORA = path.join(root, 'adapters', 'demo-lora');
const RSLORA = path.join(root, 'adapters', 'demo-rslora');
const BASE = path.join(root, 'tiny-llama', 'model.safetensors');

/** s·B·A in fp64 (explicit loops), out×in. */
function delta(a: ReturnType<typeof openAdapter>, name: string): { d: Float64Array; out: number; inF: number } {
  const m = a.modules.find((x) => x.name === name)!;
  const f = readPair(a, m);
  const p = matmul(mat(f.outF, f.r, f.B), mat(f.r, f.inF, f.A));
  return { d: p.data.map((v) => v * m.scale), out: f.outF, inF: f.inF };
}

test('writer: never overwrites, atomic temp name, output ≠ input', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-writer-'));
  const f = path.join(dir, 'x.bin');
  writeNewFileAtomic(f, new Uint8Array([1, 2, 3]));
  assert.deepEqual([...fs.readFileSync(f)], [1, 2, 3]);
  assert.throws(() => writeNewFileAtomic(f, new Uint8Array([9])), OutputExistsError);
  assert.deepEqual([...fs.readFileSync(f)], [1, 2, 3], 'existing file untouched');
  assert.deepEqual(fs.readdirSync(dir), ['x.bin'], 'no temp files left');
  assert.throws(() => writeAdapterFolder(dir, {}, [], {}), OutputExistsError);
  assert.throws(() => assertNotInput(LORA, LORA), /is the input/);
  assert.throws(() => assertNotInput(path.join(LORA, 'adapter_model.safetensors'), LORA, path.join(LORA, 'adapter_model.safetensors')), /is the input/);
  assert.throws(() => assertNotInput(path.dirname(BASE), BASE), /folder of the input/);
});

test('rank rules follow kohya semantics; plan reports energy kept', () => {
  const s = [8, 4, 2, 1];
  assert.equal(chooseRank(s, { kind: 'rank', k: 2 }), 2);
  assert.equal(chooseRank(s, { kind: 'rank', k: 9 }), 4);
  assert.equal(chooseRank(s, { kind: 'sv_ratio', value: 3 }), 2); // σ > 8/3
  assert.equal(chooseRank(s, { kind: 'sv_ratio', value: 8 }), 3); // σ > 1 (strict)
  assert.equal(chooseRank(s, { kind: 'sv_cumulative', value: 0.8 }), 2); // 12/15 = 0.8 ≥ 0.8
  assert.equal(chooseRank(s, { kind: 'sv_fro', value: 0.9 }), 2); // 80/85 = 0.941 ≥ 0.81
  assert.equal(chooseRank(s, { kind: 'sv_fro', value: 0.99 }), 3); // 84/85 = 0.988 ≥ 0.9801
  assert.equal(chooseRank([0, 0, 0], { kind: 'sv_ratio', value: 2 }), 1);
  const plan = planRankReduction([{ name: 'm', sigma: s, inFeatures: 10, outFeatures: 6 }], { kind: 'rank', k: 2 });
  const p = plan.modules[0];
  assert.equal(p.k, 2);
  assert.ok(Math.abs(p.energyKept - 80 / 85) < 1e-15 && Math.abs(p.sumKept - 12 / 15) < 1e-15);
  assert.ok(Math.abs(p.tailFro - Math.sqrt(5)) < 1e-15 && p.maxRatio === 2);
  assert.equal(plan.paramsBefore, 64); assert.equal(plan.paramsAfter, 32);
});

test('rebalance demo-lora (F32): new folder, B\'A\' = BA, balance gap ≈ 0, σ unchanged, input untouched', async () => {
  const inBytes = fs.readFileSync(path.join(LORA, 'adapter_model.safetensors'));
  const a = openAdapter(LORA);
  const out = path.join(root, 'out', 'demo-lora-balanced');
  const res = await rebalanceAdapter(a, engine, out);
  const before = await analyzeAdapter(a, { engine });
  a.store.close();
  assert.equal(res.perModule.length, 14);
  for (const m of res.perModule) {
    assert.ok(m.maxRelErr <= m.tolerance && m.maxRelErr < 1e-6, `${m.name} err ${m.maxRelErr}`);
    assert.ok(m.gapBefore > 1e-2 && m.gapAfter < 1e-6, `${m.name} gap ${m.gapBefore} → ${m.gapAfter}`);
  }
  assert.ok(fs.readFileSync(path.join(LORA, 'adapter_model.safetensors')).equals(inBytes), 'input unchanged');
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8')), JSON.parse(fs.readFileSync(path.join(LORA, 'adapter_config.json'), 'utf8')));
  const b = openAdapter(out);
  assert.equal(b.store.metadata['lora-lens.operation'], 'balora-rebalance');
  assert.equal(b.store.metadata['lora-lens.source'], path.resolve(LORA));
  assert.equal(b.modules[0].A.tensor.dtype, 'F32');
  const rep = await analyzeAdapter(b, { engine });
  b.store.close();
  for (const m of rep.modules) {
    assert.ok(m.balanceGap < 1e-6, `${m.name} balanceGap ${m.balanceGap}`);
    const m0 = before.modules.find((x) => x.name === m.name)!;
    m.sigma.forEach((s, i) => assert.ok(Math.abs(s - m0.sigma[i]) <= 1e-5 * m0.sigma[0], `${m.name} σ${i}`));
  }
  // second run into the same folder refuses
  const a2 = openAdapter(LORA);
  await assert.rejects(rebalanceAdapter(a2, engine, out), OutputExistsError);
  a2.store.close();
});

test('rebalance demo-rslora (BF16, rank_pattern): dtype kept, products within BF16 tolerance', async () => {
  const a = openAdapter(RSLORA);
  const out = path.join(root, 'out', 'rslora-balanced');
  const res = await rebalanceAdapter(a, engine, out);
  a.store.close();
  const b = openAdapter(out);
  assert.equal(b.modules[0].A.tensor.dtype, 'BF16');
  assert.equal(b.modules.length, res.perModule.length);
  b.store.close();
  for (const m of res.perModule) assert.ok(m.maxRelErr < 0.05 && m.gapAfter < 2e-2 && m.gapBefore > 0.1, `${m.name} ${m.maxRelErr} ${m.gapBefore}→${m.gapAfter}`);
});

test('reduce rank: sv_fro rule, balanced factors, scale kept via alpha, error = discarded tail', async () => {
  const a = openAdapter(LORA);
  const out = path.join(root, 'out', 'reduced');
  const res = await reduceRankAdapter(a, engine, out, { kind: 'rank', k: 3 });
  const b = openAdapter(out);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.r, 3); assert.equal(cfg.lora_alpha, 6); // s = 16/8 = 2 kept: alpha' = 2·3
  for (const m of res.perModule) {
    assert.equal(m.k, 3);
    assert.ok(m.relErrVsTruncated < 1e-6, `${m.name} ${m.relErrVsTruncated}`);
    assert.ok(Math.abs(m.errVsOriginal - m.tailFro) <= 1e-5 * m.tailFro + 1e-6, `${m.name} tail ${m.errVsOriginal} vs ${m.tailFro}`);
  }
  const rep = await analyzeAdapter(b, { engine });
  for (const m of rep.modules) assert.ok(m.balanceGap < 1e-6 && m.rank === 3 && m.scale === 2);
  b.store.close();
  const dyn = await reduceRankAdapter(a, engine, path.join(root, 'out', 'reduced-dyn'), { kind: 'sv_fro', value: 0.9 });
  a.store.close();
  assert.ok(dyn.perModule.every((m) => m.froKept >= 0.9 && m.k <= 8));
  const b2 = openAdapter(dyn.outDir);
  for (const m of b2.modules) assert.equal(m.scale, 2, `${m.name} scale via rank_pattern/alpha_pattern`);
  b2.store.close();
});

test('merge into base: W0 + s·B·A matches explicit fp64 products; other tensors byte-identical', async () => {
  const a = openAdapter(LORA);
  const base = openStore(BASE);
  const outFile = path.join(root, 'out', 'merged.safetensors');
  const res = await mergeIntoBase(base, a, engine, outFile);
  assert.equal(res.merged.length, 14);
  const m = openStore(outFile);
  assert.equal(m.metadata['lora-lens.operation'], 'merge-into-base');
  for (const name of ['model.layers.0.self_attn.q_proj', 'model.layers.1.mlp.down_proj']) {
    const { d } = delta(a, name);
    const w0 = base.readF64(`${name}.weight`), w1 = m.readF64(`${name}.weight`);
    let err = 0, ref = 0;
    for (let i = 0; i < d.length; i++) { const want = Math.fround(w0[i] + d[i]); err = Math.max(err, Math.abs(w1[i] - want)); ref = Math.max(ref, Math.abs(want)); }
    assert.ok(err <= 1e-7 * ref, `${name}: ${err}`);
  }
  assert.ok(Buffer.from(m.readRaw('model.embed_tokens.weight')).equals(Buffer.from(base.readRaw('model.embed_tokens.weight'))));
  await assert.rejects(mergeIntoBase(base, a, engine, outFile), OutputExistsError);
  m.close(); base.close(); a.store.close();
});

test('merge honours fan_in_fan_out ([in, out] base layout)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-fif-'));
  const vals = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.sin(k + 0.7 * i));
  const ad = path.join(dir, 'ad'); fs.mkdirSync(ad);
  fs.writeFileSync(path.join(ad, 'adapter_model.safetensors'), encodeSafetensors([
    { name: 'base_model.model.h.0.attn.c_attn.lora_A.weight', dtype: 'F32', shape: [2, 4], data: fromFloats(vals(8, 1), 'F32') },
    { name: 'base_model.model.h.0.attn.c_attn.lora_B.weight', dtype: 'F32', shape: [6, 2], data: fromFloats(vals(12, 2), 'F32') },
  ]));
  fs.writeFileSync(path.join(ad, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, fan_in_fan_out: true }));
  const bf = path.join(dir, 'base.safetensors');
  fs.writeFileSync(bf, encodeSafetensors([{ name: 'h.0.attn.c_attn.weight', dtype: 'F32', shape: [4, 6], data: fromFloats(vals(24, 3), 'F32') }]));
  const a = openAdapter(ad), base = openStore(bf);
  const out = path.join(dir, 'merged.safetensors');
  await mergeIntoBase(base, a, engine, out);
  const { d } = delta(a, 'h.0.attn.c_attn'); // 6×4 (out×in)
  const w0 = base.readF64('h.0.attn.c_attn.weight');
  const w1 = openStore(out).readF64('h.0.attn.c_attn.weight');
  for (let i = 0; i < 4; i++) for (let o = 0; o < 6; o++) assert.ok(Math.abs(w1[i * 6 + o] - Math.fround(w0[i * 6 + o] + d[o * 4 + i])) < 1e-6);
  a.store.close(); base.close();
});

test('combine: cat is exact (r1 + r2), svd truncates to a balanced rank-k; rescale changes alpha only', async () => {
  const a1 = openAdapter(LORA), a2 = openAdapter(path.join(root, 'out', 'demo-lora-balanced'));
  const cat = await combineAdapters(engine, a1, 0.5, a2, -0.25, path.join(root, 'out', 'cat'), { mode: 'cat' });
  const c = openAdapter(cat.outDir);
  const name = 'model.layers.0.self_attn.q_proj';
  const want = delta(a1, name).d.map((v) => 0.25 * v); // 0.5·ΔW − 0.25·ΔW (same product)
  const got = delta(c, name).d;
  let err = 0, ref = 0;
  for (let i = 0; i < got.length; i++) { err = Math.max(err, Math.abs(got[i] - want[i])); ref = Math.max(ref, Math.abs(want[i])); }
  assert.ok(err < 1e-5 * ref, `cat ${err}/${ref}`);
  assert.equal(c.modules[0].rank, 16); assert.equal(c.modules[0].scale, 1);
  c.store.close();
  const sv = await combineAdapters(engine, a1, 1, a2, 1, path.join(root, 'out', 'svd'), { mode: 'svd', rank: 8 });
  // same product twice: rank 8 captures 2·ΔW exactly
  for (const m of sv.perModule) assert.ok(m.rank === 8 && m.relErr < 1e-5, `${m.name} ${m.relErr}`);
  const rs = rescaleAdapter(a1, 0.5, path.join(root, 'out', 'rescaled'));
  assert.equal(rs.config.lora_alpha, 8);
  const r = openAdapter(rs.outDir);
  assert.equal(r.modules[0].scale, 1);
  r.store.close(); a1.store.close(); a2.store.close();
});

test('rebalance: Householder fallback for B = 0 and ill-conditioned factors; κ of the output', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-ill-'));
  const ad = path.join(dir, 'ad'); fs.mkdirSync(ad);
  const r = 4, inF = 12, outF = 10;
  const A = Array.from({ length: r * inF }, (_, i) => Math.sin(1 + 0.37 * i) * 10 ** -Math.floor(i / inF) * (i < inF ? 1 : 1));
  for (let j = 0; j < inF; j++) A[3 * inF + j] = A[2 * inF + j] * (1 + 1e-7) + 1e-9 * Math.cos(j); // κ(A) ≫ 300
  const B = Array.from({ length: outF * r }, (_, i) => Math.cos(0.3 * i));
  fs.writeFileSync(path.join(ad, 'adapter_model.safetensors'), encodeSafetensors([
    { name: 'base_model.model.l.0.q_proj.lora_A.weight', dtype: 'F64', shape: [r, inF], data: fromFloats(A, 'F64') },
    { name: 'base_model.model.l.0.q_proj.lora_B.weight', dtype: 'F64', shape: [outF, r], data: fromFloats(B, 'F64') },
    { name: 'base_model.model.l.0.v_proj.lora_A.weight', dtype: 'F32', shape: [r, inF], data: fromFloats(A.map((x) => x + 0.1), 'F32') },
    { name: 'base_model.model.l.0.v_proj.lora_B.weight', dtype: 'F32', shape: [outF, r], data: fromFloats(new Array(outF * r).fill(0), 'F32') },
  ]));
  fs.writeFileSync(path.join(ad, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 8 }));
  const a = openAdapter(ad);
  const res = await rebalanceAdapter(a, engine, path.join(dir, 'out'));
  a.store.close();
  const q = res.perModule.find((m) => m.name === 'l.0.q_proj')!;
  const v = res.perModule.find((m) => m.name === 'l.0.v_proj')!;
  assert.equal(q.method, 'householder');
  assert.ok(q.kappaABefore > 1e5 && q.maxRelErr < 1e-12, `q κA ${q.kappaABefore} err ${q.maxRelErr}`);
  const b = openAdapter(path.join(dir, 'out'));
  const fv = readPair(b, b.modules.find((m) => m.name === 'l.0.v_proj')!);
  assert.ok(fv.A.every((x) => x === 0) && fv.B.every((x) => x === 0), 'B = 0 → A\' = B\' = 0');
  assert.equal(v.maxRelErr, 0);
  b.store.close();
});
