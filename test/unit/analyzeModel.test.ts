/**
 * Analyze Model job (issue 10) and the UI-side contracts of issue 8, on the demo workspace:
 * - every module is streamed once, with intruder counts equal to the intruders job and ESD metrics
 *   whose ‖W‖_F² is the exact sum of squares (fp64, computed here independently);
 * - a cancel after the first streamed module stops the job, and a resumed run with `skip`
 *   computes exactly the rest (union = all modules, no duplicates);
 * - refusals: a forceable MismatchError reads as forceable without the CLI wording; a base that
 *   matches nothing is not forceable;
 * - writes carry `verification.maxAbsError` (merge job), and the rebalance job passes the core's κ_H.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { MismatchError } from '../../src/core/base/match';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';
import { rebalanceAdapter } from '../../src/core/surgery/balora';
import { refusalOf, type ModelModuleRow, type ModelProgressData } from '../../src/shared/base';
import { AnalyzeModel } from '../../src/shared/jobs';
import { analyzeModelJob, intrudersJob } from '../../src/worker/jobs/base';
import { createJobTable } from '../../src/worker/jobs/index';
import type { JobContext } from '../../src/worker/jobs/registry';
import { mergeJob, rebalanceJob } from '../../src/worker/jobs/surgery';
import { spawnSync } from 'node:child_process';
import { openStore } from '../../src/core/formats/open';

const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-analyzemodel-'));
makeDemoWorkspace(ws);
const adapterDir = path.join(ws, 'adapters', 'demo-lora');
const baseDir = path.join(ws, 'tiny-llama');
const engine = new Engine();
after(async () => {
  await engine.dispose();
  fs.rmSync(ws, { recursive: true, force: true });
});

function ctx(onData?: (d: ModelProgressData) => void, token = { cancelled: false }): JobContext<ModelProgressData> {
  return { engine, token, progress: (_d, _t, _m, data) => { if (data) onData?.(data); } };
}

test('AnalyzeModel is registered', () => {
  assert.ok(createJobTable().has(AnalyzeModel));
});

test('Analyze Model streams every module once; counts = intruders job; log_norm uses the exact ‖W‖_F²', async () => {
  const streamed: ModelModuleRow[] = [];
  const r = await analyzeModelJob({ adapterPath: adapterDir, baseDir }, ctx((d) => streamed.push(d.row)));
  assert.equal(r.total, 14);
  assert.equal(streamed.length, 14);
  assert.deepEqual(streamed.map((x) => x.name), r.rows.map((x) => x.name));
  assert.equal(new Set(streamed.map((x) => x.name)).size, 14);
  const intr = await intrudersJob({ adapterPath: adapterDir, baseDir }, ctx());
  for (const m of intr.modules) assert.equal(streamed.find((x) => x.name === m.name)?.intruders.count, m.count, m.name);
  // independent ‖W0‖_F² of one module from the raw base tensor
  const row = streamed.find((x) => x.name.endsWith('layers.0.self_attn.q_proj'))!;
  const st = openStore(path.join(baseDir, 'model.safetensors'));
  try {
    const W = st.readF32('model.layers.0.self_attn.q_proj.weight');
    let f = 0;
    for (const v of W) f += v * v;
    assert.ok(Math.abs(row.esd.base.log_norm - Math.log10(f)) < 1e-9, `${row.esd.base.log_norm} vs ${Math.log10(f)}`);
  } finally {
    st.close();
  }
  // 64×64 module, full spectrum of 64 eigenvalues ≥ 50: alpha fitted; the status travels with it
  assert.equal(row.full, true);
  assert.equal(row.esd.base.full_spectrum, true);
  assert.ok(['fitted', 'not fittable'].includes(row.esd.base.alpha_status));
});

test('Analyze Model: cancel after the first module, resume with skip computes exactly the rest', async () => {
  const token = { cancelled: false };
  const first: string[] = [];
  await assert.rejects(analyzeModelJob({ adapterPath: adapterDir, baseDir }, ctx((d) => { first.push(d.row.name); token.cancelled = true; }, token)), /cancelled/);
  assert.equal(first.length, 1);
  const rest: string[] = [];
  const r = await analyzeModelJob({ adapterPath: adapterDir, baseDir, skip: first }, ctx((d) => rest.push(d.row.name)));
  assert.equal(r.skipped, 1);
  assert.equal(rest.length, 13);
  assert.ok(!rest.includes(first[0]));
  assert.equal(new Set([...first, ...rest]).size, 14);
});

test('refusals: forceable sentence without the CLI wording; non-forceable as is', () => {
  const f = refusalOf(new MismatchError('/x/base', 'matches only 13 of 14 modules of adapter a', true).message);
  assert.deepEqual(f, { sentence: '/x/base: matches only 13 of 14 modules of adapter a', forceable: true });
  const n = refusalOf(new MismatchError('/x/base', 'does not match adapter a: none of its 14 modules has a base weight', false).message);
  assert.equal(n.forceable, false);
  assert.equal(n.sentence, '/x/base: does not match adapter a: none of its 14 modules has a base weight');
});

test('merge job reports verification.maxAbsError; rebalance job passes the core κ_H', async () => {
  const out = path.join(ws, 'merged.safetensors');
  const m = await mergeJob({ adapterPath: adapterDir, basePath: path.join(baseDir, 'model.safetensors'), outFile: out }, { engine, token: { cancelled: false }, progress: () => undefined });
  assert.ok(Number.isFinite(m.verification.maxAbsError) && m.verification.maxAbsError >= 0 && m.verification.maxAbsError < 1e-5, String(m.verification.maxAbsError));
  assert.equal(m.verification.checked, 14);
  const r = await rebalanceJob({ adapterPath: adapterDir, outDir: path.join(ws, 'bal-job') }, { engine, token: { cancelled: false }, progress: () => undefined });
  const a = openAdapter(adapterDir);
  try {
    const c = await rebalanceAdapter(a, engine, path.join(ws, 'bal-core'));
    for (const row of r.modules) {
      const cm = c.perModule.find((x) => x.name === row.name)!;
      assert.equal(row.hessianKappaBefore, cm.hessianKappaBefore, row.name);
      assert.equal(row.hessianKappaAfter, cm.hessianKappaAfter, row.name);
    }
    assert.ok(Number.isFinite(r.verification.maxAbsError));
  } finally {
    a.store.close();
  }
});

test('rebalance --json: κ_H of an all-zero factor is "Infinity" (toJson), never null', async () => {

  const zb = path.join(ws, 'zero-b');
  fs.cpSync(adapterDir, zb, { recursive: true });
  // zero the B factor of one module in place (same dtype/shape: only its bytes change)
  const f = path.join(zb, 'adapter_model.safetensors');
  const buf = fs.readFileSync(f);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, { data_offsets: [number, number] }>;
  const key = Object.keys(header).find((k) => k.includes('layers.0.self_attn.q_proj.lora_B'))!;
  const [s, e] = header[key].data_offsets;
  buf.fill(0, 8 + n + s, 8 + n + e);
  fs.writeFileSync(f, buf);
  // the compiled CLI as a process (node --test reports through this process's stdout)
  const r = spawnSync(process.execPath, [path.resolve(__dirname, '../../src/core/cli.js'), 'rebalance', zb, path.join(ws, 'zero-b-out'), '--json'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = r.stdout;
  const j = JSON.parse(out) as { perModule: { name: string; hessianKappaBefore: unknown; hessianKappaAfter: unknown }[] };
  const m = j.perModule.find((x) => x.name.endsWith('layers.0.self_attn.q_proj'))!;
  assert.equal(m.hessianKappaBefore, 'Infinity');
  assert.ok(!/\bnull\b/.test(out), 'no null in the JSON');
  assert.ok(j.perModule.filter((x) => x !== m).every((x) => typeof x.hessianKappaBefore === 'number'));
});
