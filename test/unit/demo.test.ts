/**
 * The demo workspace's trained adapters (made by LoRA Lens's own ONNX training engine): BaLoRA's
 * factors come out balanced, plain LoRA's do not, both lower the loss, and the files are
 * reproducible byte for byte.
 */
import assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { addModularDemo, addTrainedDemoAdapters } from '../../src/core/demo/trainedDemo';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';

const dirs: string[] = [];
const engine = new Engine();
after(async () => {
  await engine.dispose();
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

async function trainedWorkspace(): Promise<{ root: string; logs: string[] }> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-demo-'));
  dirs.push(root);
  makeDemoWorkspace(root);
  const logs: string[] = [];
  await addTrainedDemoAdapters(root, (s) => logs.push(s));
  return { root, logs };
}

const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

test('trained demo adapters: BaLoRA balanced, LoRA not, loss decreases, reproducible', async () => {
  const a = await trainedWorkspace();
  const b = await trainedWorkspace();
  for (const mode of ['lora', 'balora']) {
    const f = (root: string): string => path.join(root, 'adapters', `demo-trained-${mode}`, 'adapter_model.safetensors');
    assert.equal(sha(f(a.root)), sha(f(b.root)), `${mode} adapter is byte-identical across runs`);
  }
  for (const line of a.logs) {
    const m = /loss ([\d.]+) → ([\d.]+)/.exec(line);
    assert.ok(m && Number(m[2]) < Number(m[1]) - 0.2, `loss decreased: ${line}`);
  }
  const gaps = async (mode: string): Promise<number[]> => {
    const ad = openAdapter(path.join(a.root, 'adapters', `demo-trained-${mode}`));
    try {
      const rep = await analyzeAdapter(ad, { engine });
      assert.equal(rep.modules.length, 8);
      return rep.modules.map((m) => m.balanceGap);
    } finally {
      ad.store.close();
    }
  };
  const bal = await gaps('balora');
  const lor = await gaps('lora');
  assert.ok(Math.max(...bal) < 1e-6, `BaLoRA gaps ${bal}`);
  assert.ok(Math.min(...lor) > 0.05, `LoRA gaps ${lor}`);
});

test('modular demo (papers.md §5.3): base learns addition, LoRA/BaLoRA adapters for subtraction open and analyse', async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-modular-'));
  dirs.push(root);
  const logs: string[] = [];
  const written = await addModularDemo(root, (s) => logs.push(s));
  assert.equal(written.length, 3);
  const acc = Number(/accuracy ([\d.]+) %/.exec(logs[0])?.[1]);
  assert.ok(acc > 90, `pre-training reached ${acc} % on (x + y) mod p`);
  for (const mode of ['lora', 'balora']) {
    const ad = openAdapter(path.join(root, 'modular', `sub-${mode}`));
    try {
      assert.equal(ad.summary.baseModel, '../base');
      const rep = await analyzeAdapter(ad, { engine });
      assert.equal(rep.modules.length, 4);
      const gap = Math.max(...rep.modules.map((m) => m.balanceGap));
      if (mode === 'balora') assert.ok(gap < 1e-6, `BaLoRA gap ${gap}`);
      else assert.ok(gap > 0.01, `LoRA gap ${gap}`);
    } finally {
      ad.store.close();
    }
  }
  assert.deepEqual(await addModularDemo(root), [], 'an existing demo folder is kept, never overwritten');
});
