/**
 * `training.run` with task causal-lm: LoRA vs BaLoRA on the demo workspace's tiny-llama and
 * data/train.jsonl (src/worker/jobs/training.ts), called directly (no worker).
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { openAdapter } from '../../src/core/formats/open';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import type { JobContext } from '../../src/worker/jobs/registry';
import { splitPacked, trainingJob } from '../../src/worker/jobs/training';
import { DEFAULT_FORM, checkForm, type TrainForm, type TrainJobParams, type TrainPoint, type TrainProgressData } from '../../src/shared/training';
import { loadPackedDataset, loadTokenizer } from '../../src/core/train/data';

const engine = new Engine();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-trainingjobs-'));
after(async () => {
  await engine.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});
makeDemoWorkspace(root);
const MODEL = path.join(root, 'tiny-llama');
const DATA = path.join(root, 'data', 'train.jsonl');
const FORM: TrainForm = { task: 'causal-lm', r: 4, alpha: 8, lr: 1e-2, steps: 20, seed: 1, modelDir: MODEL, dataFile: DATA, seqLen: 32, batchSize: 4 };

function ctx(onData: (d: TrainProgressData) => void, cancelled: () => boolean = () => false): JobContext & { times: number[] } {
  const c = {
    engine, times: [] as number[],
    token: { get cancelled() { return cancelled(); } },
    progress: (_d: number, _t: number, _m: string, data?: unknown) => {
      if (data === undefined) return;
      if ((data as TrainProgressData).kind === 'points') c.times.push(performance.now());
      onData(data as TrainProgressData);
    },
  };
  return c;
}

test('checkForm validates per task', () => {
  assert.deepEqual(checkForm({ task: 'modular-subtraction', r: 2, alpha: 4, lr: 0.01, steps: 5, seed: 1, modelDir: 'x' }), { task: 'modular-subtraction', r: 2, alpha: 4, lr: 0.01, steps: 5, seed: 1 });
  assert.deepEqual(checkForm(DEFAULT_FORM), { task: 'second-operand', r: 4, alpha: 8, lr: 1e-2, steps: 400, seed: 1 });
  assert.equal(checkForm({ ...FORM, targets: ['q_proj', 'q_proj', 'v_proj'] }).targets?.length, 2);
  assert.throws(() => checkForm({ ...FORM, modelDir: '' }), /modelDir/);
  assert.throws(() => checkForm({ ...FORM, dataFile: undefined }), /dataFile/);
  assert.throws(() => checkForm({ ...FORM, seqLen: 2 }), /seqLen/);
  assert.throws(() => checkForm({ ...FORM, batchSize: 0.5 }), /batchSize/);
  assert.throws(() => checkForm({ ...FORM, targets: ['q_proj; rm'] }), /targets/);
  assert.throws(() => checkForm({ ...FORM, task: 'nope' }), /unknown task/);
});

test('held-out split: 10 % of the packed sequences, disjoint, deterministic', () => {
  const d = loadPackedDataset(DATA, loadTokenizer(MODEL), 32);
  const a = splitPacked(d, 1), b = splitPacked(d, 1);
  assert.equal(a.train.n + a.test.n, d.n);
  assert.equal(a.test.n, Math.max(1, Math.round(d.n * 0.1)));
  assert.deepEqual(a.test.ids, b.test.ids);
});

test('causal-lm: LoRA and BaLoRA stream points, LoRA loss decreases, BaLoRA stays balanced, two PEFT adapters saved + evaluated', async () => {
  const saveDirs = { lora: path.join(root, 'lora-lens-training', 'tiny-llama-lora-t1'), balora: path.join(root, 'lora-lens-training', 'tiny-llama-balora-t1') };
  const params: TrainJobParams = { form: FORM, provider: 'cpu', saveDirs };
  const pts: TrainPoint[] = [];
  const phases: string[] = [];
  let used: string | undefined;
  const c = ctx((d) => {
    if (d.kind === 'points') pts.push(...d.points);
    if (d.kind === 'phase') phases.push(d.phase);
    if (d.kind === 'provider') used = d.used;
  });
  const r = await trainingJob(params, c);
  assert.equal(r.task, 'causal-lm');
  assert.equal(r.stopped, false);
  assert.equal(r.step, 20);
  assert.equal(r.resume, undefined);
  assert.equal(used, 'cpu');
  assert.deepEqual(phases.slice(-1), ['save']);
  for (let i = 1; i < c.times.length - 1; i++) assert.ok(c.times[i] - c.times[i - 1] >= 49, `point batches ${c.times[i] - c.times[i - 1]} ms apart`);
  const lora = pts.filter((p) => p.mode === 'lora'), balora = pts.filter((p) => p.mode === 'balora');
  const steps = Array.from({ length: 20 }, (_, i) => i + 1);
  assert.deepEqual(lora.map((p) => p.step), steps);
  assert.deepEqual(balora.map((p) => p.step), steps);
  const mean = (a: TrainPoint[]) => a.reduce((s, p) => s + p.loss, 0) / a.length;
  assert.ok(mean(lora.slice(-5)) < mean(lora.slice(0, 5)), `LoRA loss ${lora[0].loss} → ${lora[19].loss}`);
  assert.ok(balora.every((p) => p.balanceGap! < 1e-4), `BaLoRA gap ${Math.max(...balora.map((p) => p.balanceGap!))}`);
  assert.ok(lora[19].balanceGap! > balora[19].balanceGap!, `LoRA gap ${lora[19].balanceGap}`);
  assert.deepEqual(r.saved, saveDirs);
  assert.ok(r.data && r.data.test >= 1 && r.data.train > r.data.test && r.data.seqLen === 32, JSON.stringify(r.data));
  for (const d of [saveDirs.lora, saveDirs.balora]) {
    const cfg = JSON.parse(fs.readFileSync(path.join(d, 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.base_model_name_or_path, '../../tiny-llama');
    const a = openAdapter(d);
    assert.equal(a.modules.length, 4, 'q_proj + v_proj × 2 layers');
    assert.ok(a.modules.every((m) => m.rank === 4));
    a.store.close();
  }
  const e = r.eval!;
  assert.ok(e && e.lora.loss < e.base.loss && e.balora.loss < e.base.loss, JSON.stringify(e));
  for (const x of [e.lora, e.balora, e.base]) assert.ok(x.acc >= 0 && x.acc <= 1 && Number.isFinite(x.loss));
  // one set of definitions: perplexity = exp(held-out loss) in the result and in each saved training_metrics.json
  for (const x of [e.lora, e.balora, e.base]) assert.ok(Math.abs(x.perplexity! - Math.exp(x.loss)) < 1e-9 * x.perplexity!);
  for (const mode of ['lora', 'balora'] as const) {
    const m = JSON.parse(fs.readFileSync(path.join(saveDirs[mode], 'training_metrics.json'), 'utf8'));
    assert.equal(m.heldOut.loss, e[mode].loss);
    assert.equal(m.heldOut.accuracy, e[mode].acc);
    assert.ok(Math.abs(m.heldOut.perplexity - Math.exp(e[mode].loss)) < 1e-9 * m.heldOut.perplexity);
    assert.match(m.definitions.accuracy, /next-token/);
    assert.equal(m.finalTrainingLoss, (mode === 'lora' ? lora : balora)[19].loss);
  }
  await assert.rejects(trainingJob(params, ctx(() => undefined)), /already exists/);
});

test('causal-lm: cancelled run returns stopped without a resume state and saves nothing; resume refused', async () => {
  const saveDirs = { lora: path.join(root, 'lora-lens-training', 'tiny-llama-lora-t2'), balora: path.join(root, 'lora-lens-training', 'tiny-llama-balora-t2') };
  const pts: TrainPoint[] = [];
  const r = await trainingJob({ form: { ...FORM, steps: 200, targets: ['q_proj', 'down_proj'] }, provider: 'cpu', saveDirs }, ctx((d) => { if (d.kind === 'points') pts.push(...d.points); }, () => pts.length >= 6));
  assert.equal(r.stopped, true);
  assert.ok(r.step >= 3 && r.step < 200, `stopped at ${r.step}`);
  assert.equal(r.resume, undefined);
  assert.equal(r.saved, undefined);
  assert.equal(r.eval, undefined);
  assert.ok(!fs.existsSync(saveDirs.lora) && !fs.existsSync(saveDirs.balora), 'nothing saved');
  assert.deepEqual(fs.readdirSync(path.join(root, 'lora-lens-training')).filter((n) => n.includes('t2')), []);
  await assert.rejects(trainingJob({ form: FORM, provider: 'cpu', saveDirs, resume: { lora: {}, balora: {} } }, ctx(() => undefined)), /cannot be resumed/);
  await assert.rejects(trainingJob({ form: { ...FORM, targets: ['c_attn'] }, provider: 'cpu', saveDirs }, ctx(() => undefined)), /not supported/);
});
