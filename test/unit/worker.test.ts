/**
 * The analysis worker thread: same results as in-process analysis, errors carried back as
 * rejections, cancellation honoured, unknown jobs rejected.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import * as jobs from '../../src/shared/jobs';
import { Analyze, Describe, job } from '../../src/shared/jobs';
import { createJobTable } from '../../src/worker/jobs/index';
import { WorkerClient } from '../../src/worker/client';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { Engine } from '../../src/core/engine/ort';
import { CancelledError } from '../../src/core/formats/errors';
import { openAdapter } from '../../src/core/formats/open';

const workerScript = path.resolve(__dirname, '../../src/worker/analysisWorker.js');
const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-worker-'));
makeDemoWorkspace(ws);
const client = new WorkerClient(workerScript, 500);
after(async () => {
  await client.dispose();
  fs.rmSync(ws, { recursive: true, force: true });
});

test('worker analysis equals in-process analysis and reports progress', async () => {
  const adapterDir = path.join(ws, 'adapters', 'demo-lora');
  const progress: number[] = [];
  const viaWorker = await client.run(Analyze, { path: adapterDir }, { onProgress: (d) => progress.push(d) });
  const engine = new Engine();
  const a = openAdapter(adapterDir);
  try {
    const direct = await analyzeAdapter(a, { engine });
    assert.equal(viaWorker.modules.length, 14);
    viaWorker.modules.forEach((m, i) => assert.deepEqual(m.sigma, direct.modules[i].sigma, m.name));
  } finally {
    a.store.close();
    await engine.dispose();
  }
  assert.ok(progress.length > 0 && progress[progress.length - 1] === 28, `progress ${progress}`);
});

test('errors from the worker reject with the FormatError message naming the file', async () => {
  const bad = path.join(ws, 'broken.safetensors');
  fs.writeFileSync(bad, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7b]));
  await assert.rejects(client.run(Analyze, { path: bad }), (e: Error) => e.message.includes(bad) && /header length/.test(e.message));
});

test('a cancelled analysis rejects with CancelledError and the worker stays usable', async () => {
  const token = { cancelled: true };
  await assert.rejects(client.run(Analyze, { path: path.join(ws, 'adapters', 'demo-rslora') }, { token }), (e) => e instanceof CancelledError);
  const again = await client.run(Analyze, { path: path.join(ws, 'adapters', 'demo-rslora') });
  assert.equal(again.modules.length, 6);
});

test('unknown job kinds are rejected', async () => {
  await assert.rejects(client.run(job<object, unknown>('no-such-job'), {}), /unknown job kind "no-such-job"/);
});

test('analyzeAdapter stops between batches once its token is cancelled', async () => {
  const engine = new Engine();
  const a = openAdapter(path.join(ws, 'adapters', 'demo-lora'));
  const token = { cancelled: false };
  let calls = 0;
  try {
    await assert.rejects(
      analyzeAdapter(a, { engine, token, onProgress: () => { calls++; token.cancelled = true; } }),
      (e) => e instanceof CancelledError,
    );
    assert.equal(calls, 1, 'no batch ran after the cancellation');
  } finally {
    a.store.close();
    await engine.dispose();
  }
});

test('every job declared in src/shared/jobs.ts has exactly one handler, and every handler a declared job', () => {
  const declared = Object.values(jobs)
    .filter((v): v is { kind: string } => typeof v === 'object' && v !== null && typeof (v as { kind?: unknown }).kind === 'string')
    .map((j) => j.kind)
    .sort();
  assert.ok(declared.length >= 20, `${declared.length} descriptors`);
  assert.deepEqual(createJobTable().kinds().sort(), declared);
});

test('a typed job runs through the worker thread: inspect.describe reports a broken file by name, without rejecting', async () => {
  const bad = path.join(ws, 'broken2.safetensors');
  fs.writeFileSync(bad, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7b]));
  const r = await client.run(Describe, { file: bad });
  assert.ok(r.file && 'error' in r.file && r.file.error.includes(bad) && /header length/.test(r.file.error), JSON.stringify(r));
});
