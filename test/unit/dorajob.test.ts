/**
 * The `analysis.dora` worker job (src/worker/jobs/dora.ts) the DoRA panel runs: dispatched through
 * the job table, one module streamed per progress message, values equal to the numpy reference of
 * the DoRA fixture (test/fixtures/peers/lycoris/expected.json, written by test/fixtures/peers/lycoris_gen.py),
 * σ of s·B·A consistent with numpy's ‖s·B·A‖_F (Σσ² = ‖·‖_F², rank ≤ r), the refusal of an adapter
 * without DoRA modules, and the panel's message parser.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { Engine } from '../../src/core/engine/ort';
import type { DoraProgressData, DoraResult } from '../../src/shared/dora';
import { parseDoraMessage } from '../../src/shared/dora';
import { Dora } from '../../src/shared/jobs';
import { createJobTable } from '../../src/worker/jobs/index';

const FIX = path.resolve(__dirname, '../../../test/fixtures/peers');
const EXP = JSON.parse(fs.readFileSync(path.join(FIX, 'lycoris', 'expected.json'), 'utf8')) as Record<string, Record<string, number | number[]>>;
const engine = new Engine();
after(() => engine.dispose());
const table = createJobTable();

function run(params: unknown, streamed: DoraProgressData[] = []): Promise<DoraResult> {
  const h = table.get(Dora.kind);
  assert.ok(h, 'analysis.dora is in the job table');
  return h.run(params, { engine, token: { cancelled: false }, progress: (_d, _t, _m, data) => { if (data) streamed.push(data as DoraProgressData); } }) as Promise<DoraResult>;
}

test('analysis.dora: streamed module equals the numpy DoRA reference; σ(s·B·A) consistent with ‖s·B·A‖_F', async () => {
  const streamed: DoraProgressData[] = [];
  const r = await run({ adapterPath: path.join(FIX, 'dora', 'adapter'), basePath: path.join(FIX, 'dora', 'base.safetensors'), k: 4 }, streamed);
  assert.equal(r.modules.length, 1);
  assert.equal(streamed.length, 1);
  assert.deepEqual(streamed[0].module, r.modules[0]);
  const m = r.modules[0];
  const e = EXP[`dora:${m.name}`];
  const rel = (x: number, y: number, tol: number, what: string) => assert.ok(Math.abs(x - y) <= tol * Math.max(1, Math.abs(y)), `${what}: ${x} vs ${y}`);
  rel(m.trueDelta.fro, e.trueFro as number, 1e-5, '‖ΔW_true‖_F');
  rel(m.trueDelta.loraFro, e.loraFro as number, 1e-5, '‖s·B·A‖_F');
  (e.trueSigma as number[]).forEach((s, i) => rel(m.trueDelta.sigma[i], s, 1e-4, `true σ${i + 1}`));
  (e.cos as number[]).forEach((c, i) => rel(m.directionCos[i], c, 1e-5, `cos[${i}]`));
  const maxAngle = Math.max(...(e.cos as number[]).map((c) => (180 / Math.PI) * Math.acos(Math.min(1, c))));
  rel(m.summary.maxAngleDeg, maxAngle, 1e-3, 'max angle');
  assert.equal(m.outFeatures, (e.normBefore as number[]).length);
  assert.ok(m.loraSigma.length >= 1 && m.loraSigma.length <= m.rank, `rank ${m.loraSigma.length}`);
  rel(Math.sqrt(m.loraSigma.reduce((s, x) => s + x * x, 0)), e.loraFro as number, 1e-5, 'sqrt(Σσ²) of s·B·A');
});

test('analysis.dora: an adapter without DoRA modules is refused naming the adapter; a missing base names the base', async () => {
  await assert.rejects(run({ adapterPath: path.join(FIX, 'peft_loha'), basePath: path.join(FIX, 'dora', 'base.safetensors') }), /peft_loha: has no DoRA modules/);
  await assert.rejects(run({ adapterPath: path.join(FIX, 'dora', 'adapter'), basePath: path.join(FIX, 'nope.safetensors') }), /nope\.safetensors: does not exist/);
});

test('DoRA panel messages: rerun / changeBase with an id parse, anything else is dropped', () => {
  assert.deepEqual(parseDoraMessage({ type: 'rerun', requestId: 4 }), { type: 'rerun', requestId: 4 });
  assert.deepEqual(parseDoraMessage({ type: 'rerun', requestId: 5, force: true }), { type: 'rerun', requestId: 5, force: true });
  assert.deepEqual(parseDoraMessage({ type: 'rerun', requestId: 6, force: 'yes' }), { type: 'rerun', requestId: 6 });
  assert.deepEqual(parseDoraMessage({ type: 'changeBase', requestId: 7 }), { type: 'changeBase', requestId: 7 });
  assert.equal(parseDoraMessage({ type: 'changeBase' }), undefined);
  assert.equal(parseDoraMessage({ type: 'rerun' }), undefined);
  assert.equal(parseDoraMessage({ type: 'export', requestId: 1 }), undefined);
  assert.deepEqual(parseDoraMessage({ type: 'ready' }), { type: 'ready' });
});
