/**
 * The issue-11 worker jobs the editor runs (src/worker/jobs/{doctor,similarity,fleet,merge,extract,report}.ts)
 * called directly, and the panels' message parser (src/shared/peers.ts). References: the doctor
 * fixtures' expected codes (test/fixtures/doctor/gen_doctor.py), the demo workspace's construction
 * (tuned = base + the rank-8 ΔW of demo-lora, so a rank-8 extraction is exact up to rounding), the
 * paths on disk, and the similarity's definition on identical inputs (cos = 1).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { openBaseModel } from '../../src/core/base/basemodel';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { Engine } from '../../src/core/engine/ort';
import { CancelledError } from '../../src/core/formats/errors';
import { openAdapter } from '../../src/core/formats/open';
import { mergeIntoBase } from '../../src/core/surgery/combine';
import type { FleetEntryView } from '../../src/shared/fleet';
import { Doctor, ExportReport, Extract, Fleet, MergePreview, MergeWrite, Similarity } from '../../src/shared/jobs';
import { parsePeersMessage } from '../../src/shared/peers';
import { doctorJob } from '../../src/worker/jobs/doctor';
import { extractJob } from '../../src/worker/jobs/extract';
import { fleetJob } from '../../src/worker/jobs/fleet';
import { createJobTable } from '../../src/worker/jobs/index';
import { mergePreviewJob, mergeWriteJob } from '../../src/worker/jobs/merge';
import type { JobContext } from '../../src/worker/jobs/registry';
import { reportJob } from '../../src/worker/jobs/report';
import { similarityJob } from '../../src/worker/jobs/similarity';

const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-peersjobs-'));
makeDemoWorkspace(ws);
const engine = new Engine();
after(async () => {
  await engine.dispose();
  fs.rmSync(ws, { recursive: true, force: true });
});
const A = (n: string): string => path.join(ws, 'adapters', n);
const FIX = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'doctor');

function ctx<D = unknown>(cancelled = false): JobContext<D> & { data: D[] } {
  const data: D[] = [];
  return { engine, token: { cancelled }, progress: (_d, _t, _m, x) => { if (x !== undefined) data.push(x); }, data };
}

test('every issue-11 job is in the worker table', () => {
  const t = createJobTable();
  for (const j of [Doctor, Similarity, Fleet, MergePreview, MergeWrite, Extract, ExportReport]) assert.ok(t.has(j), j.kind);
});

test('panel messages: valid requests parse, malformed ones are dropped', () => {
  assert.deepEqual(parsePeersMessage({ type: 'openFile', requestId: 1, file: '/a/b.json', line: 3 }), { type: 'openFile', requestId: 1, file: '/a/b.json', line: 3 });
  assert.deepEqual(parsePeersMessage({ type: 'openFile', requestId: 1, file: '/a', line: -2 }), { type: 'openFile', requestId: 1, file: '/a', line: undefined });
  assert.deepEqual(parsePeersMessage({ type: 'export', requestId: 2, format: 'html' }), { type: 'export', requestId: 2, format: 'html' });
  assert.deepEqual(parsePeersMessage({ type: 'preview', requestId: 3, density: 0.3 }), { type: 'preview', requestId: 3, density: 0.3 });
  assert.deepEqual(parsePeersMessage({ type: 'ready' }), { type: 'ready' });
  for (const bad of [
    { type: 'export', requestId: 2, format: 'pdf' }, { type: 'export', format: 'md' }, { type: 'preview', requestId: 1, density: 0 },
    { type: 'preview', requestId: 1, density: 1.5 }, { type: 'openFile', requestId: 1 }, { type: 'analyze', requestId: 1, path: 3 }, { type: 'nope', requestId: 1 }, null, 'x',
  ]) assert.equal(parsePeersMessage(bad), undefined, JSON.stringify(bad));
});

test('doctor job: the fixtures\' expected codes, each finding on a file of the adapter', async () => {
  const expected = JSON.parse(fs.readFileSync(path.join(FIX, 'expected.json'), 'utf8')) as Record<string, { must: [string, string][] }>;
  for (const name of ['rslora', 'untrained', 'healthy']) {
    const r = await doctorJob({ path: path.join(FIX, name) }, ctx());
    const got = new Set(r.findings.map((f) => `${f.code}|${f.module}`));
    for (const [code, mod] of expected[name].must) assert.ok(got.has(`${code}|${mod}`), `${name}: ${code} ${mod} missing`);
    if (!expected[name].must.length) assert.equal(r.summary.error + r.summary.warning, 0, name);
    for (const f of r.findings) {
      assert.ok([r.adapter.weightsFile, r.adapter.configFile].includes(f.file), f.file);
      assert.ok(r.codeInfo[f.code], f.code);
    }
  }
});

test('similarity job: an adapter against itself is 1 on every measure', async () => {
  const r = await similarityJob({ paths: [A('demo-lora'), A('demo-lora'), A('demo-rslora')] }, ctx());
  for (const k of ['matrix', 'signed', 'columnSpace', 'rowSpace'] as const) assert.ok(Math.abs(r[k][0][1] - 1) < 1e-9, `${k} ${r[k][0][1]}`);
  await assert.rejects(similarityJob({ paths: [A('demo-lora')] }, ctx()), /at least two/);
});

test('fleet job: every candidate streamed exactly once, in walk order; cancellation stops it', async () => {
  const c = ctx<{ entries: FleetEntryView[] }>();
  const r = await fleetJob({ dir: ws }, c);
  const streamed = c.data.flatMap((d) => d.entries);
  assert.equal(streamed.length, r.count);
  assert.equal(new Set(streamed.map((e) => e.path)).size, r.count);
  const adapters = fs.readdirSync(path.join(ws, 'adapters')).map((n) => A(n));
  for (const a of adapters) assert.ok(streamed.some((e) => e.path === a && e.ok), a);
  assert.equal(streamed.filter((e) => !e.ok).length, r.failed);
  await assert.rejects(fleetJob({ dir: ws }, ctx(true)), CancelledError);
  await assert.rejects(fleetJob({ dir: path.join(ws, 'nope') }, ctx()), /is not a folder/);
});

test('merge jobs: preview writes nothing; write makes a NEW verified folder; existing output refused', async () => {
  const p = { paths: [A('demo-lora'), A('demo-rslora')], weights: [1, 0.5], method: 'ties' as const, density: 0.5 };
  const pv = await mergePreviewJob(p, ctx());
  assert.equal(pv.modules.length, openAdapter(A('demo-lora')).modules.length);
  for (const m of pv.modules) assert.ok(m.signConflict >= 0 && m.signConflict <= 1 && m.retainedEnergy > 0 && m.retainedEnergy <= 1 + 1e-12, m.name);
  const out = path.join(ws, 'merged-ties');
  const w = await mergeWriteJob({ ...p, outDir: out }, ctx());
  assert.ok(w.verification.passed);
  assert.ok(fs.existsSync(path.join(out, 'adapter_model.safetensors')));
  await assert.rejects(mergeWriteJob({ ...p, outDir: out }, ctx()), /exists/);
  await assert.rejects(mergePreviewJob({ ...p, weights: [1] }, ctx()), /2 adapters but 1 weights/);
});

test('extract job: rank 8 from base + demo-lora\'s rank-8 ΔW is exact up to rounding', async () => {
  const tuned = path.join(ws, 'tuned');
  const a = openAdapter(A('demo-lora'));
  const base = openBaseModel(path.join(ws, 'tiny-llama'));
  fs.mkdirSync(tuned);
  try { await mergeIntoBase(base.store, a, engine, path.join(tuned, 'model.safetensors')); } finally { a.store.close(); base.store.close(); }
  fs.copyFileSync(path.join(ws, 'tiny-llama', 'config.json'), path.join(tuned, 'config.json'));
  const r = await extractJob({ base: path.join(ws, 'tiny-llama'), tuned, outDir: path.join(ws, 'extracted'), rule: { kind: 'rank', k: 8 } }, ctx());
  assert.equal(r.modules.length, 14);
  for (const m of r.modules) { assert.equal(m.rank, 8); assert.ok(m.relError < 1e-3, `${m.name} ${m.relError}`); }
  assert.ok(fs.existsSync(path.join(ws, 'extracted', 'adapter_config.json')));
});

test('report job: Markdown with the model card, self-contained HTML, never overwrites', async () => {
  const md = path.join(ws, 'r.md'), html = path.join(ws, 'r.html');
  const r1 = await reportJob({ source: { kind: 'adapter', path: A('demo-lora') }, format: 'md', out: md }, ctx());
  const text = fs.readFileSync(md, 'utf8');
  assert.equal(text.length, r1.chars);
  assert.match(text, /### LoRA adapter/);
  const d = await doctorJob({ path: path.join(FIX, 'rslora') }, ctx());
  await reportJob({ source: { kind: 'doctor', result: d }, format: 'html', out: html }, ctx());
  const h = fs.readFileSync(html, 'utf8');
  assert.match(h, /rslora-alpha/);
  assert.doesNotMatch(h, /<script[^>]+src=|<link[^>]+href=/i);
  await assert.rejects(reportJob({ source: { kind: 'adapter', path: A('demo-lora') }, format: 'md', out: md }, ctx()), /exists/);
  await assert.rejects(reportJob({ source: { kind: 'extract', view: { kind: 'extract', params: { base: '', tuned: '', outDir: '', rule: { kind: 'rank', k: 1 } }, log: [], done: 0, total: 0 } }, format: 'md', out: path.join(ws, 'x.md') }, ctx()), /not finished/);
});
