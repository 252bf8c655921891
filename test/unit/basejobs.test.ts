/**
 * Base-model job handlers (src/worker/jobs/base.ts) called directly on the demo workspace:
 * intruder counts equal adapterIntruders, the decomposition cache hits on the second run, spectra
 * and ESD metrics are consistent, mitigation writes a NEW verified adapter, and comparing the base
 * with a merged model gives ‖s·B·A‖_F / ‖W0‖_F computed independently.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { baseWeightFor, detectBaseModel, openBaseModel, readBaseWeight } from '../../src/core/base/basemodel';
import { adapterIntruders, readDelta } from '../../src/core/base/intruders';
import { fullSpectrum } from '../../src/core/base/rsvd';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { Engine } from '../../src/core/engine/ort';
import { CancelledError } from '../../src/core/formats/errors';
import { openAdapter } from '../../src/core/formats/open';
import { mergeIntoBase } from '../../src/core/surgery/combine';
import {
  compareJob, compareTensorJob, estimateJob, intrudersJob, mitigateJob, spectraJob,
} from '../../src/worker/jobs/base';
import type { JobContext } from '../../src/worker/jobs/registry';
import { Compare, CompareTensor, EstimateFull, Intruders, Mitigate, Spectra } from '../../src/shared/jobs';
import { createJobTable } from '../../src/worker/jobs/index';

const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-basejobs-'));
makeDemoWorkspace(ws);
const adapterDir = path.join(ws, 'adapters', 'demo-lora');
const baseDir = path.join(ws, 'tiny-llama');
const cacheDir = path.join(ws, 'cache');
const engine = new Engine();
after(async () => {
  await engine.dispose();
  fs.rmSync(ws, { recursive: true, force: true });
});

function ctx(cancelled = false): JobContext & { calls: number[] } {
  const calls: number[] = [];
  return { engine, token: { cancelled }, progress: (d) => calls.push(d), calls };
}

function close(a: number, b: number, rtol: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rtol * Math.max(Math.abs(a), Math.abs(b), 1e-30), `${what}: ${a} vs ${b}`);
}

test('jobs are registered under their kinds', () => {
  const jobs = createJobTable();
  for (const j of [Intruders, Mitigate, Spectra, EstimateFull, Compare, CompareTensor]) assert.ok(jobs.has(j), j.kind);
});

test('demo-lora detects its base model ../../tiny-llama', () => {
  const a = openAdapter(adapterDir);
  try {
    const loc = detectBaseModel(a);
    assert.equal(loc.dir, path.resolve(adapterDir, '../../tiny-llama'));
  } finally {
    a.store.close();
  }
});

test('intruders job equals adapterIntruders and hits the cache on the second run', async () => {
  const c1 = ctx();
  const r1 = await intrudersJob({ adapterPath: adapterDir, baseDir, k: 10, epsilon: 0.5, cacheDir }, c1);
  const a = openAdapter(adapterDir);
  const base = openBaseModel(baseDir);
  try {
    const direct = await adapterIntruders(engine, a, base, { k: 10, epsilon: 0.5 });
    assert.equal(r1.modules.length, 14);
    assert.equal(r1.errors.length, 0);
    assert.equal(r1.totals.intruders, direct.totals.intruders);
    assert.equal(r1.totals.possible, direct.totals.possible);
    for (const m of direct.modules) {
      const got = r1.modules.find((x) => x.name === m.name)!;
      assert.equal(got.count, m.count, m.name);
      assert.equal(got.mode, 'exact');
      assert.deepEqual(got.vectors.map((v) => v.status), m.vectors.map((v) => v.status), m.name);
      got.vectors.forEach((v, i) => close(v.maxCos, m.vectors[i].maxCos, 1e-9, `${m.name} maxCos ${i}`));
    }
  } finally {
    a.store.close();
    base.store.close();
  }
  assert.equal(r1.cache.hits, 0);
  assert.deepEqual(r1.modules.map((m) => m.layer).filter((l) => l !== undefined).sort(), [...Array(7).fill(0), ...Array(7).fill(1)]);
  assert.ok(c1.calls.length >= 14);
  const r2 = await intrudersJob({ adapterPath: adapterDir, baseDir, k: 10, epsilon: 0.5, cacheDir }, ctx());
  assert.equal(r2.cache.hits, 14);
  assert.equal(r2.totals.intruders, r1.totals.intruders);
});

test('a cancelled intruders job rejects with CancelledError', async () => {
  await assert.rejects(intrudersJob({ adapterPath: adapterDir, baseDir }, ctx(true)), (e) => e instanceof CancelledError);
});

test('spectra job: σ(W0) and σ(W0+ΔW) equal the exact spectra; σ(ΔW) has rank r; metrics present; cached', async () => {
  const module = 'model.layers.0.mlp.down_proj';
  const r = await spectraJob({ adapterPath: adapterDir, baseDir, module, cacheDir }, ctx());
  const a = openAdapter(adapterDir);
  const base = openBaseModel(baseDir);
  try {
    const mod = a.modules.find((m) => m.name === module)!;
    const ref = baseWeightFor(mod, base);
    const W0 = readBaseWeight(base, ref);
    const exact = await fullSpectrum(engine, W0, ref.out, ref.in);
    assert.equal(r.m, 64);
    assert.equal(r.n, 176);
    assert.equal(r.sigma.base.length, 64);
    r.sigma.base.forEach((s, i) => close(s, exact[i], 1e-9, `σ0[${i}]`));
    const d = readDelta(a, mod);
    const W = new Float32Array(W0.length);
    for (let i = 0; i < ref.out; i++) for (let j = 0; j < ref.in; j++) {
      let s = 0;
      for (let q = 0; q < d.r; q++) s += d.B[i * d.r + q] * d.A[q * ref.in + j];
      W[i * ref.in + j] = W0[i * ref.in + j] + d.scale * s;
    }
    const exactW = await fullSpectrum(engine, W, ref.out, ref.in);
    r.sigma.merged.forEach((s, i) => close(s, exactW[i], 1e-4, `σ[${i}]`));
    assert.equal(r.sigma.delta.length, 8);
    // ‖ΔW‖_F² = Σσ²(ΔW)
    let fro = 0;
    for (let i = 0; i < W.length; i++) fro += (W[i] - W0[i]) ** 2;
    close(r.sigma.delta.reduce((x, y) => x + y * y, 0), fro, 1e-4, '‖ΔW‖_F²');
  } finally {
    a.store.close();
    base.store.close();
  }
  assert.ok(Number.isFinite(r.metrics.base.alpha) && Number.isFinite(r.metrics.merged.stable_rank));
  assert.ok(r.metrics.base.warnings.some((w) => /< 50/.test(w)), 'few eigenvalues warning');
  assert.equal(r.esd.base.counts.reduce((x, y) => x + y, 0), 64);
  assert.equal(r.baseCached, false);
  const again = await spectraJob({ adapterPath: adapterDir, baseDir, module, cacheDir }, ctx());
  assert.equal(again.baseCached, true);
  assert.deepEqual(again.sigma.base, r.sigma.base);
  const est = await estimateJob({ m: 4096, n: 4096 });
  assert.ok(est.seconds > 0 && est.maxDim === 1024);
});

test('mitigate job writes a NEW verified adapter and never touches the input', async () => {
  const before = fs.readFileSync(path.join(adapterDir, 'adapter_model.safetensors'));
  const outDir = path.join(ws, 'adapters', 'demo-lora-intruders-mitigated');
  const r = await mitigateJob({ adapterPath: adapterDir, baseDir, k: 10, epsilon: 0.5, lambda: 0.5, outDir, cacheDir }, ctx());
  assert.equal(r.outDir, outDir);
  assert.ok(r.verified);
  assert.ok(fs.existsSync(path.join(outDir, 'adapter_model.safetensors')));
  assert.deepEqual(fs.readFileSync(path.join(adapterDir, 'adapter_model.safetensors')), before);
  const re = openAdapter(outDir);
  try {
    assert.equal(re.modules.length, 14);
  } finally {
    re.store.close();
  }
  assert.equal(r.changed.length + r.unchanged, 14);
  // the demo has intruders (ε = 0.5) in 13 of 14 modules: those are rewritten
  assert.ok(r.changed.length >= 10, `changed ${r.changed.length}`);
  for (const c of r.changed) assert.ok(c.intruders.length > 0 && c.truncationError >= 0);
  for (const c of r.changed) assert.ok(c.maxRelErr < 1e-5, `${c.name} ${c.maxRelErr}`);
  await assert.rejects(mitigateJob({ adapterPath: adapterDir, baseDir, lambda: 0.5, outDir }, ctx()), /already exists/);
});

test('compare base vs merged: relative change = ‖s·B·A‖_F/‖W0‖_F; ΔW spectrum and intruders of W1 vs W0', async () => {
  const merged = path.join(ws, 'merged.safetensors');
  const a = openAdapter(adapterDir);
  const base = openBaseModel(baseDir);
  try {
    await mergeIntoBase(base.store, a, engine, merged);
    const r = await compareJob({ a: baseDir, b: merged }, ctx());
    assert.equal(r.skipped.length, 0);
    const changed = r.rows.filter((x) => x.relChange > 0);
    assert.equal(changed.length, 14);
    for (const mod of a.modules) {
      const ref = baseWeightFor(mod, base);
      const W0 = readBaseWeight(base, ref);
      const d = readDelta(a, mod);
      let s0 = 0, sd = 0;
      for (let i = 0; i < ref.out; i++) for (let j = 0; j < ref.in; j++) {
        let s = 0;
        for (let q = 0; q < d.r; q++) s += d.B[i * d.r + q] * d.A[q * ref.in + j];
        sd += (d.scale * s) ** 2;
        s0 += W0[i * ref.in + j] ** 2;
      }
      const row = r.rows.find((x) => x.name === ref.tensorName)!;
      // merged weights are rounded to F32: relative agreement to ~1e-5
      close(row.relChange, Math.sqrt(sd / s0), 1e-4, ref.tensorName);
    }
    const t = await compareTensorJob({ a: baseDir, b: merged, tensor: 'model.layers.1.self_attn.q_proj.weight', cacheDir }, ctx());
    assert.equal(t.m, 64);
    assert.equal(t.sigma.base.length, 64);
    // ΔW = W1 − W0 has rank 8 (up to F32 rounding)
    assert.ok(t.sigma.delta[7] > 1e3 * t.sigma.delta[8], `rank-8 gap ${t.sigma.delta[7]} vs ${t.sigma.delta[8]}`);
    assert.equal(t.intruders.mode, 'exact');
    assert.equal(t.intruders.vectors.length, 10);
    // same rule as adapterIntruders on the adapter module (W1 = merged)
    const direct = await adapterIntruders(engine, a, base, { k: 10, filter: (m) => m.name === 'model.layers.1.self_attn.q_proj' });
    assert.equal(t.intruders.count, direct.modules[0].count);
    t.intruders.vectors.forEach((v, i) => close(v.maxCos, direct.modules[0].vectors[i].maxCos, 1e-3, `maxCos ${i}`));
  } finally {
    a.store.close();
    base.store.close();
  }
});
