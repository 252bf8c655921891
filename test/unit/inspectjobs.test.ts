/**
 * The reader jobs behind the UI (tree, hovers, pickers, viewer) and the one base-model resolver:
 * checked against the demo workspace's known layout and against the readers they wrap.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { baseWeightsFile, resolveBase } from '../../src/core/base/resolve';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { describeWeights, openAdapter } from '../../src/core/formats/open';
import { describeJob, scanJob, viewerJob } from '../../src/worker/jobs/inspect';

const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-inspect-'));
makeDemoWorkspace(ws);
after(() => fs.rmSync(ws, { recursive: true, force: true }));
const LORA = path.join(ws, 'adapters', 'demo-lora');
const BASE = path.join(ws, 'tiny-llama');

test('inspect.scan finds the demo adapters, described like openAdapter reads them', async () => {
  const { entries, errors } = await scanJob({ folders: [ws] });
  assert.deepEqual(errors, []);
  const lora = entries.find((e) => e.ref.path === LORA);
  assert.ok(lora && lora.isAdapter && lora.adapter && 'value' in lora.adapter);
  const a = openAdapter(LORA);
  try {
    const s = (lora.adapter as { value: { modules: { name: string; rank: number; outFeatures: number }[] } }).value;
    assert.deepEqual(s.modules.map((m) => [m.name, m.rank, m.outFeatures]), a.modules.map((m) => [m.name, m.rank, m.outFeatures]));
  } finally {
    a.store.close();
  }
  const base = entries.find((e) => !e.isAdapter && e.ref.path.startsWith(BASE));
  assert.ok(base?.file && 'value' in base.file && !('tensors' in base.file.value), 'weights described without their tensor list');
  const only = await scanJob({ folders: [ws], adaptersOnly: true });
  assert.ok(only.entries.length > 0 && only.entries.every((e) => e.isAdapter && !e.adapter));
});

test('inspect.describe: tensors equal describeWeights; a missing path is an error naming it', async () => {
  const file = path.join(BASE, 'model.safetensors');
  const r = await describeJob({ file, adapter: path.join(ws, 'nope') });
  assert.ok(r.file && 'value' in r.file);
  assert.deepEqual(r.file.value.tensors.map((t) => t.name), describeWeights(file).tensors.map((t) => t.name));
  assert.ok(r.adapter && 'error' in r.adapter && r.adapter.error.includes('nope'));
});

test('inspect.viewer: a Git LFS pointer is reported, not parsed', async () => {
  const ptr = path.join(ws, 'lfs.safetensors');
  fs.writeFileSync(ptr, 'version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n');
  const d = await viewerJob({ file: ptr });
  assert.match(d.error ?? '', /Git LFS pointer/);
  const ok = await viewerJob({ file: path.join(LORA, 'adapter_model.safetensors') });
  assert.equal(ok.error, undefined);
  assert.equal(ok.adapter?.moduleCount, 14);
});

test('resolveBase: demo-lora → tiny-llama (config.json folder and its weights); hub ids are explained', () => {
  const r = resolveBase(LORA);
  assert.equal(r.dir, BASE);
  assert.equal(r.weights, baseWeightsFile(BASE));
  assert.ok(r.weights && fs.existsSync(r.weights));
  const hub = path.join(ws, 'hub-adapter');
  fs.cpSync(LORA, hub, { recursive: true });
  const cfg = JSON.parse(fs.readFileSync(path.join(hub, 'adapter_config.json'), 'utf8'));
  cfg.base_model_name_or_path = 'meta-llama/Llama-3.2-1B';
  fs.writeFileSync(path.join(hub, 'adapter_config.json'), JSON.stringify(cfg));
  const h = resolveBase(hub);
  assert.equal(h.dir, undefined);
  assert.equal(h.id, 'meta-llama/Llama-3.2-1B');
  assert.match(h.message ?? '', /hub id/);
});
