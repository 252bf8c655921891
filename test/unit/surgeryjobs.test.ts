/**
 * Worker job handlers of the surgery and training UI (src/worker/jobs/{surgery,training}.ts), called
 * directly with a JobContext on a temp copy of the demo workspace: real outputs, never-overwrite,
 * input unchanged (sha256), cancellation, streamed training points, stop → resume, PEFT save.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { CancelledError } from '../../src/core/formats/errors';
import { openAdapter } from '../../src/core/formats/open';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import type { JobContext } from '../../src/worker/jobs/registry';
import { Combine, Merge, Plan, Rebalance, Reduce, Rescale, Train } from '../../src/shared/jobs';
import { createJobTable } from '../../src/worker/jobs/index';
import { combineJob, mergeJob, planJob, rebalanceJob, reduceJob, rescaleJob, sha256File } from '../../src/worker/jobs/surgery';
import { trainingJob } from '../../src/worker/jobs/training';
import type { TrainJobParams, TrainJobResult, TrainPoint, TrainProgressData } from '../../src/shared/training';

const engine = new Engine();
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-surgeryjobs-'));
after(async () => {
  await engine.dispose();
  fs.rmSync(root, { recursive: true, force: true });
});
makeDemoWorkspace(root);
const LORA = path.join(root, 'adapters', 'demo-lora');
const RSLORA = path.join(root, 'adapters', 'demo-rslora');
const WEIGHTS = path.join(LORA, 'adapter_model.safetensors');

function ctx(cancelAfter = Infinity, onData?: (d: unknown) => void): JobContext & { calls: number } {
  const c = {
    engine, calls: 0,
    token: { get cancelled() { return c.calls >= cancelAfter; } },
    progress: (_d: number, _t: number, _m: string, data?: unknown) => { c.calls++; if (data !== undefined) onData?.(data); },
  };
  return c;
}

test('jobs are registered under their kinds', () => {
  const jobs = createJobTable();
  for (const j of [Rebalance, Plan, Reduce, Merge, Combine, Rescale, Train]) {
    assert.ok(jobs.has(j), `missing job ${j.kind}`);
  }
});

test('rebalance job: gap after < 1e-6, products verified, Hessian κ at the balanced value, input unchanged, existing output refused', async () => {
  const sha = sha256File(WEIGHTS);
  const out = path.join(root, 'adapters', 'demo-lora-balanced');
  const c = ctx();
  const r = await rebalanceJob({ adapterPath: LORA, outDir: out }, c);
  assert.ok(fs.existsSync(path.join(out, 'adapter_model.safetensors')) && fs.existsSync(path.join(out, 'adapter_config.json')));
  assert.equal(r.outDir, out);
  assert.equal(r.modules.length, 14);
  assert.ok(c.calls >= 14, `progress reported ${c.calls} times`);
  for (const m of r.modules) {
    assert.ok(m.gapAfter < 1e-6, `${m.name}: gap after ${m.gapAfter}`);
    assert.ok(m.gapBefore > 1e-3, `${m.name}: demo adapter is unbalanced (gap before ${m.gapBefore})`);
    assert.ok(m.verified && m.maxRelErr <= m.tolerance, `${m.name}: ${m.maxRelErr} > ${m.tolerance}`);
    assert.ok(Math.abs(m.scaleAfter - 1) < 1e-5, `${m.name}: c after ${m.scaleAfter}`);
    assert.ok(Math.abs(m.hessianKappaAfter - m.hessianKappaBalanced) <= 1e-6 * m.hessianKappaBalanced, `${m.name}: κ(H) after ${m.hessianKappaAfter} vs 2σ1/σr ${m.hessianKappaBalanced}`);
    assert.ok(m.hessianKappaBefore >= m.hessianKappaAfter * (1 - 1e-9), `${m.name}: κ(H) before ${m.hessianKappaBefore} < after ${m.hessianKappaAfter}`);
  }
  assert.equal(sha256File(WEIGHTS), sha, 'input weights changed');
  assert.equal(r.inputSha256, sha);
  const re = openAdapter(out);
  assert.equal(re.modules.length, 14);
  re.store.close();
  const shaOut = sha256File(path.join(out, 'adapter_model.safetensors'));
  await assert.rejects(rebalanceJob({ adapterPath: LORA, outDir: out }, ctx()), /already exists/);
  assert.equal(sha256File(path.join(out, 'adapter_model.safetensors')), shaOut, 'existing output was modified');
});

test('rebalance job: cancellation writes nothing', async () => {
  const out = path.join(root, 'adapters', 'demo-lora-cancelled');
  await assert.rejects(rebalanceJob({ adapterPath: LORA, outDir: out }, ctx(3)), (e) => e instanceof CancelledError);
  assert.ok(!fs.existsSync(out));
  assert.deepEqual(fs.readdirSync(path.join(root, 'adapters')).filter((n) => n.includes('cancelled')), []);
});

test('rank plan → reduce job: plan ks match the written adapter, verified, scale kept', async () => {
  const plan = await planJob({ adapterPath: LORA, rule: { kind: 'rank', value: 4 } }, ctx());
  assert.equal(plan.modules.length, 14);
  for (const m of plan.modules) {
    assert.equal(m.k, 4);
    assert.equal(m.sigma.length, 8);
    assert.ok(m.energyKept > 0 && m.energyKept <= 1);
  }
  assert.ok(plan.paramsAfter * 2 === plan.paramsBefore, `${plan.paramsAfter} vs ${plan.paramsBefore}`);
  const out = path.join(root, 'adapters', 'demo-lora-r4');
  const r = await reduceJob({ adapterPath: LORA, outDir: out, rule: plan.rule }, ctx());
  for (const m of r.modules) {
    assert.equal(m.k, 4);
    assert.ok(m.relErrVsTruncated < 1e-5, `${m.name}: ${m.relErrVsTruncated}`);
    assert.ok(Math.abs(m.energyKept - plan.modules.find((x) => x.name === m.name)!.energyKept) < 1e-9);
  }
  const a = openAdapter(out);
  assert.ok(a.modules.every((m) => m.rank === 4));
  a.store.close();
  await assert.rejects(reduceJob({ adapterPath: LORA, outDir: out, rule: plan.rule }, ctx()), /already exists/);
  await assert.rejects(planJob({ adapterPath: LORA, rule: { kind: 'nope' as never, value: 1 } }, ctx()), /unknown rank rule/);
});

test('rescale, combine (cat), merge jobs write new outputs only', async () => {
  const rs = await rescaleJob({ adapterPath: LORA, factor: 0.5, outDir: path.join(root, 'adapters', 'demo-lora-x0.5') }, ctx());
  assert.equal(JSON.parse(fs.readFileSync(path.join(rs.output, 'adapter_config.json'), 'utf8')).lora_alpha, 8);
  const cb = await combineJob({ adapter1: LORA, weight1: 1, adapter2: path.join(root, 'adapters', 'demo-lora-balanced'), weight2: -1, outDir: path.join(root, 'adapters', 'zero'), mode: 'cat' }, ctx());
  assert.ok(fs.existsSync(cb.output) && cb.isAdapter);
  assert.equal(cb.rows.length, 14);
  const out = path.join(root, 'model-merged.safetensors');
  const mg = await mergeJob({ adapterPath: LORA, basePath: path.join(root, 'tiny-llama', 'model.safetensors'), outFile: out }, ctx());
  assert.ok(fs.statSync(out).size > 0);
  assert.equal(mg.rows.length, 14);
  await assert.rejects(mergeJob({ adapterPath: LORA, basePath: path.join(root, 'tiny-llama', 'model.safetensors'), outFile: out }, ctx()), /already exists/);
  await assert.rejects(rescaleJob({ adapterPath: RSLORA, factor: 2, outDir: RSLORA }, ctx()), /exists|input/);
});

test('training job: streams LoRA/BaLoRA points, stops with a resume state, resumes, saves PEFT adapters', async () => {
  const base = path.join(root, 'train', 'modular-base');
  const saveDirs = { lora: path.join(root, 'train', 'run-lora'), balora: path.join(root, 'train', 'run-balora') };
  const params: TrainJobParams = { form: { task: 'second-operand', r: 2, alpha: 4, lr: 1e-2, steps: 40, seed: 1 }, baseDir: base, provider: 'cpu', saveDirs };
  const pts: TrainPoint[] = [];
  let provider: TrainProgressData | undefined;
  const collect = (d: unknown) => {
    const x = d as TrainProgressData;
    if (x.kind === 'points') pts.push(...x.points);
    if (x.kind === 'provider') provider = x;
  };
  // stop: cancel once some points have streamed (after pre-training the base)
  let stopAt = Infinity;
  const c1: JobContext = { engine, token: { get cancelled() { return pts.length >= stopAt; } }, progress: (_a, _b, _m, d) => { if (d !== undefined) collect(d); if (pts.length === 0 && (d as TrainProgressData | undefined)?.kind === 'phase' && (d as { phase: string }).phase === 'train') stopAt = 10; } };
  const r1 = await trainingJob(params, c1);
  assert.ok(fs.existsSync(path.join(base, 'config.json')), 'base pre-trained and saved');
  assert.equal(r1.pretrained, true);
  assert.equal(r1.stopped, true);
  assert.ok(r1.resume && r1.step > 0 && r1.step < 40, `stopped at ${r1.step}`);
  assert.ok(!fs.existsSync(saveDirs.lora), 'nothing saved when stopped');
  assert.equal(provider && provider.kind === 'provider' ? provider.used : undefined, 'cpu');
  const r2: TrainJobResult = await trainingJob({ ...params, resume: r1.resume }, ctx(Infinity, collect));
  assert.equal(r2.stopped, false);
  assert.equal(r2.step, 40);
  assert.equal(r2.pretrained, false);
  const lora = pts.filter((p) => p.mode === 'lora'), balora = pts.filter((p) => p.mode === 'balora');
  assert.deepEqual(lora.map((p) => p.step), Array.from({ length: 40 }, (_, i) => i + 1));
  assert.deepEqual(balora.map((p) => p.step), Array.from({ length: 40 }, (_, i) => i + 1));
  assert.ok(lora[39].loss < lora[0].loss, `LoRA loss ${lora[0].loss} → ${lora[39].loss}`);
  assert.ok(balora.every((p) => p.balanceGap! < 1e-4), `BaLoRA gap ${Math.max(...balora.map((p) => p.balanceGap!))}`);
  assert.ok(lora[39].balanceGap! > 1e-3, `LoRA gap ${lora[39].balanceGap}`);
  for (const d of [saveDirs.lora, saveDirs.balora]) {
    const a = openAdapter(d);
    assert.equal(a.modules.length, 4);
    assert.ok(a.modules.every((m) => m.rank === 2));
    a.store.close();
  }
  assert.ok(r2.eval && r2.eval.lora.loss < r2.eval.base.loss, JSON.stringify(r2.eval));
  await assert.rejects(trainingJob({ ...params }, ctx()), /already exists/);
});
