/**
 * LoRA / BaLoRA fine-tuning of HF models (src/core/train/{hf,data,hfTrainer}.ts, src/core/demo/tokenizer.ts):
 * forward logits / loss and LoRA-factor gradients against a plain-torch float64 reference
 * (test/fixtures/hf/gen.py) for the demo tiny Llama and a tiny random GPT-2, the demo tokenizer,
 * short LoRA / BaLoRA runs on the demo JSONL, and PEFT save → openAdapter → reload.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openAdapter } from '../../src/core/formats/open';
import { SafetensorsStore } from '../../src/core/formats/safetensors';
import { writeTinyLlama } from '../../src/core/demo/makeDemo';
import { demoVocab, writeDemoTokenizerAndData } from '../../src/core/demo/tokenizer';
import { LLAMA_TARGETS, GPT2_TARGETS, hfArchFromConfig, loadHfModel } from '../../src/core/train/hf';
import { loadTokenizer, loadPackedDataset, makeBatch, PackedData, batchIndices, readTextDataset } from '../../src/core/train/data';
import { HfTrainer, trainHfAdapter, loadHfAdapter } from '../../src/core/train/hfTrainer';
import type { ParamSet } from '../../src/core/train/models';
import type { FloatType } from '../../src/core/train/autodiff';

const FIX = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'hf');
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-hf-'));
process.on('exit', () => fs.rmSync(tmpRoot, { recursive: true, force: true }));

const llamaDir = path.join(tmpRoot, 'tiny-llama');
const dataFile = path.join(tmpRoot, 'data', 'train.jsonl');
writeTinyLlama(llamaDir);
writeDemoTokenizerAndData(llamaDir, dataFile);
const gpt2Dir = path.join(FIX, 'tiny-gpt2');

interface Ref { meta: Record<string, string>; get(n: string): Float64Array; names: string[] }
function readRef(file: string): Ref {
  const st = SafetensorsStore.openFile(file);
  const names = [...st.tensors.keys()];
  const cache = new Map(names.map((n) => [n, st.readF64(n)]));
  st.close();
  return { meta: st.metadata, names, get: (n) => cache.get(n)! };
}

function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return d / m;
}

function refBatch(ref: Ref) {
  const ids = ref.get('ids'), attn = ref.get('attn');
  const data: PackedData = { n: 2, seqLen: 8, ids: Int32Array.from(ids), attn: Uint8Array.from(attn), loss: Uint8Array.from(attn) };
  return makeBatch(data, [0, 1]);
}

function refLora(ref: Ref): { params: ParamSet; grads: Record<string, Float64Array> } {
  const params: ParamSet = {}, grads: Record<string, Float64Array> = {};
  for (const n of ref.names) {
    if (n.startsWith('lora.')) params[n.slice(5)] = { shape: [], data: ref.get(n) };
    if (n.startsWith('grad.')) grads[n.slice(5)] = ref.get(n);
  }
  return { params, grads };
}

async function checkAgainstTorch(modelDir: string, refFile: string, targets: string[], dtype: FloatType, tol: number): Promise<void> {
  const ref = readRef(path.join(FIX, refFile));
  const { params, grads } = refLora(ref);
  const tr = await HfTrainer.create({ model: modelDir, spec: { targets, r: 2, alpha: 4 }, batchSize: 2, seqLen: 8, dtype, loraInit: params, threads: 2 });
  try {
    assert.equal(tr.loraNames.length, Object.keys(params).length, 'same LoRA modules as the reference');
    const out = await tr.evaluate(refBatch(ref), { grads: true });
    const eL = relErr(out.logits, ref.get('logits'));
    const eLoss = Math.abs(out.loss - ref.get('loss')[0]) / Math.abs(ref.get('loss')[0]);
    assert.ok(eL < tol, `logits rel err ${eL}`);
    assert.ok(eLoss < tol, `loss rel err ${eLoss} (${out.loss} vs ${ref.get('loss')[0]})`);
    let worst = 0;
    for (const [n, g] of Object.entries(grads)) worst = Math.max(worst, relErr(out.grads![n].data, g));
    console.log(`${refFile} ${dtype}: logits rel ${eL.toExponential(2)}, loss rel ${eLoss.toExponential(2)}, LoRA grads rel ${worst.toExponential(2)}`);
    assert.ok(worst < (dtype === 'float64' ? tol : 1e-3), `LoRA grad rel err ${worst}`);
  } finally {
    await tr.dispose();
  }
}

test('demo tiny Llama is the model the torch reference was generated from', () => {
  const ref = readRef(path.join(FIX, 'llama_ref.safetensors'));
  const sha = crypto.createHash('sha256').update(fs.readFileSync(path.join(llamaDir, 'model.safetensors'))).digest('hex');
  assert.equal(sha, ref.meta.model_sha256, 'writeTinyLlama changed: regenerate with /usr/bin/python3 test/fixtures/hf/gen.py');
  const a = hfArchFromConfig(JSON.parse(fs.readFileSync(path.join(llamaDir, 'config.json'), 'utf8')));
  assert.deepEqual([a.kind, a.hidden, a.heads, a.kvHeads, a.headDim, a.eps, a.ropeTheta, a.tie], ['llama', 64, 4, 2, 16, 1e-5, 10000, false]);
});

test('Llama forward, loss and LoRA gradients match torch (fp64 1e-9, fp32 1e-4)', async () => {
  await checkAgainstTorch(llamaDir, 'llama_ref.safetensors', LLAMA_TARGETS, 'float64', 1e-9);
  await checkAgainstTorch(llamaDir, 'llama_ref.safetensors', LLAMA_TARGETS, 'float32', 1e-4);
});

test('GPT-2 forward, loss and LoRA gradients match torch (fp64 1e-9, fp32 1e-4)', async () => {
  const m = loadHfModel(gpt2Dir, 'float32');
  assert.deepEqual(m.params['transformer.h.0.attn.c_attn.weight'].shape, [32, 96], 'Conv1D kept as [in, out]');
  await checkAgainstTorch(gpt2Dir, 'gpt2_ref.safetensors', GPT2_TARGETS, 'float64', 1e-9);
  await checkAgainstTorch(gpt2Dir, 'gpt2_ref.safetensors', GPT2_TARGETS, 'float32', 1e-4);
});

test('demo tokenizer.json: expected ids, prompt tokens masked in packing', () => {
  const tok = loadTokenizer(llamaDir);
  const v = demoVocab();
  assert.ok(tok.vocabSize <= 128);
  assert.deepEqual([tok.bosId, tok.eosId, tok.padId], [1, 2, 0]);
  const ids = tok.encode('The red cats chase the Ball!');
  assert.deepEqual(ids, [1, 47, 9, 15, 99, 3, 47, 30, 8]);
  assert.deepEqual(ids, [v['<s>'], v.the, v.red, v.cat, v['##s'], v['<unk>'], v.the, v.ball, v['!']]);
  const ex = readTextDataset(dataFile);
  assert.ok(ex.length === 160 && ex.some((e) => e.prompt) && ex.some((e) => e.text));
  const p = loadPackedDataset(dataFile, tok, 32);
  assert.ok(p.n > 20);
  // third example is a prompt/completion: "q : what color is the X ? answer :" + " Y ." → only completion + </s> are targets
  const third = tok.encode(ex[2].prompt!).length;
  const start = [ex[0], ex[1]].reduce((s, e) => s + tok.encode(e.text!).length + 1, 0);
  const mask = Array.from(p.loss.slice(start, start + third + 3));
  assert.deepEqual(mask, [...new Array(third).fill(0), 1, 1, 1]);
  assert.deepEqual(batchIndices(p.n, 4, 3, 7), batchIndices(p.n, 4, 3, 7), 'deterministic shuffling');
  const idx = Array.from({ length: 3 }, (_, k) => batchIndices(p.n, 4, k, 7)).flat();
  assert.equal(new Set(idx.slice(0, Math.min(12, p.n))).size, Math.min(12, p.n), 'no repeats within an epoch');
  const txt = path.join(tmpRoot, 'plain.txt');
  fs.writeFileSync(txt, 'the cat sees the dog .\n\nthe dog sees the cat .\n');
  assert.deepEqual(readTextDataset(txt), [{ text: 'the cat sees the dog .' }, { text: 'the dog sees the cat .' }]);
  assert.throws(() => hfArchFromConfig({ model_type: 'llama', hidden_size: 8, num_attention_heads: 2, num_hidden_layers: 1, vocab_size: 8, intermediate_size: 8, rope_scaling: { rope_type: 'llama3' } }), /rope_scaling/);
});

test('LoRA on the demo JSONL lowers the loss; adapter re-opens in PEFT layout and reloads to identical logits', async () => {
  const out = path.join(tmpRoot, 'adapters', 'llama-lora');
  const tr = await HfTrainer.create({ model: llamaDir, spec: { targets: LLAMA_TARGETS, r: 4, alpha: 8 }, batchSize: 4, seqLen: 32, lr: 1e-2, seed: 1, metricsEvery: 0 });
  const data = loadPackedDataset(dataFile, loadTokenizer(llamaDir), 32);
  const losses: number[] = [], ms: number[] = [];
  for (let k = 0; k < 40; k++) {
    const s = await tr.trainStep(makeBatch(data, batchIndices(data.n, 4, k, 1)));
    losses.push(s.loss);
    ms.push(s.ms);
  }
  const mean = (a: number[]): number => a.reduce((x, y) => x + y, 0) / a.length;
  const head = mean(losses.slice(0, 5)), tail = mean(losses.slice(-5));
  console.log(`llama LoRA (7 targets, r 4, B 4×32): loss ${head.toFixed(3)} → ${tail.toFixed(3)} in ${losses.length} steps, ${mean(ms.slice(1)).toFixed(1)} ms/step (${tr.provider.used})`);
  assert.ok(tail < head - 0.5, `loss ${head} → ${tail}`);
  assert.equal(tr.save(out), path.resolve(out));
  assert.throws(() => tr.save(out), /already exists/);
  await assert.rejects(trainHfAdapter({ modelDir: llamaDir, data: dataFile, steps: 1, outDir: out }), /already exists/);
  const a = openAdapter(out);
  assert.equal(a.format, 'peft');
  assert.equal(a.summary.rank, 4);
  assert.equal(a.summary.alpha, 8);
  assert.deepEqual([...a.summary.targetModules].sort(), [...LLAMA_TARGETS].sort());
  assert.equal(a.summary.taskType, 'CAUSAL_LM');
  assert.equal(a.summary.fanInFanOut, false);
  assert.equal(a.modules.length, 14);
  const k = a.modules.find((m) => m.name === 'model.layers.0.self_attn.k_proj')!;
  assert.deepEqual([k.rank, k.outFeatures, k.inFeatures, k.scale], [4, 32, 64, 2]);
  const cfg = JSON.parse(fs.readFileSync(path.join(out, 'adapter_config.json'), 'utf8'));
  assert.equal(cfg.base_model_name_or_path, path.join('..', '..', 'tiny-llama'));

  const batch = makeBatch(data, [0, 1, 2, 3]);
  const mem = await tr.evaluate(batch);
  const reloaded: ParamSet = {};
  for (const m of a.modules) {
    reloaded[`${m.name}.lora_A.weight`] = { shape: [m.rank, m.inFeatures], data: a.store.readF32(m.A.tensor.name) };
    reloaded[`${m.name}.lora_B.weight`] = { shape: [m.outFeatures, m.rank], data: a.store.readF32(m.B.tensor.name) };
  }
  const disk = await tr.evaluate(batch, { lora: reloaded });
  assert.deepEqual(Array.from(disk.logits), Array.from(mem.logits));
  const zero = await tr.evaluate(batch, { lora: Object.fromEntries(Object.entries(reloaded).map(([n, p]) => [n, { shape: p.shape, data: new Float32Array(p.data.length) }])) });
  assert.ok(zero.loss > disk.loss + 0.3, `the adapter matters: ${zero.loss} vs ${disk.loss}`);
  assert.equal(loadHfAdapter(out).spec.r, 4);
  a.store.close();
  await tr.dispose();
});

test('BaLoRA keeps the balance gap ≈ 0 and still learns', async () => {
  const res = await trainHfAdapter({ modelDir: llamaDir, data: dataFile, targets: ['q_proj', 'v_proj', 'down_proj'], r: 4, alpha: 8, lr: 1e-2, steps: 15, batchSize: 4, seqLen: 32, mode: 'balora', seed: 2 });
  const gaps = res.steps.map((s) => s.balanceGap!);
  assert.ok(Math.max(...gaps) < 1e-4, `gaps ${gaps}`);
  const lora = await trainHfAdapter({ modelDir: llamaDir, data: dataFile, targets: ['q_proj', 'v_proj', 'down_proj'], r: 4, alpha: 8, lr: 1e-2, steps: 15, batchSize: 4, seqLen: 32, mode: 'lora', seed: 2 });
  assert.ok(lora.steps[14].balanceGap! > 100 * Math.max(...gaps), 'plain LoRA drifts off the balanced manifold');
  assert.ok(res.losses[14] < res.losses[0] - 0.3, `balora loss ${res.losses[0]} → ${res.losses[14]}`);
});

test('GPT-2 LoRA: fan_in_fan_out adapter, reload gives identical logits', async () => {
  // synthetic token data with structure (repeating 4-cycles)
  const T = 12, n = 16, ids = new Int32Array(n * T);
  for (let i = 0; i < n; i++) for (let t = 0; t < T; t++) ids[i * T + t] = (5 * i + [3, 17, 40, 9][t % 4]) % 64;
  const data: PackedData = { n, seqLen: T, ids, attn: new Uint8Array(n * T).fill(1), loss: new Uint8Array(n * T).fill(1) };
  const out = path.join(tmpRoot, 'adapters', 'gpt2-lora');
  const res = await trainHfAdapter({ modelDir: gpt2Dir, data, targets: GPT2_TARGETS, r: 2, alpha: 4, useRslora: true, lr: 2e-2, steps: 25, batchSize: 4, seqLen: T, outDir: out, baseModelName: 'tiny-gpt2' });
  assert.ok(res.losses[24] < res.losses[0] - 0.5, `loss ${res.losses[0]} → ${res.losses[24]}`);
  const a = openAdapter(out);
  assert.equal(a.summary.fanInFanOut, true);
  assert.equal(a.summary.useRslora, true);
  assert.equal(a.summary.baseModel, 'tiny-gpt2');
  assert.equal(a.modules.length, 8);
  const c = a.modules.find((m) => m.name.endsWith('h.1.attn.c_attn'))!;
  assert.deepEqual([c.rank, c.outFeatures, c.inFeatures, c.fanInFanOut], [2, 96, 32, true]);
  assert.ok(Math.abs(c.scale - 4 / Math.SQRT2) < 1e-12);
  const ac = new AbortController();
  ac.abort();
  const aborted = await trainHfAdapter({ modelDir: gpt2Dir, data, steps: 5, batchSize: 4, seqLen: T, outDir: path.join(tmpRoot, 'adapters', 'aborted'), signal: ac.signal });
  assert.ok(aborted.aborted && aborted.losses.length === 0 && aborted.adapterDir === undefined && !fs.existsSync(path.join(tmpRoot, 'adapters', 'aborted')));
  const own = loadHfAdapter(out);
  const tr = await HfTrainer.create({ model: gpt2Dir, spec: own.spec, batchSize: 2, seqLen: T, loraInit: own.params });
  const batch = makeBatch(data, [0, 1]);
  const viaInit = await tr.evaluate(batch);
  const reloaded: ParamSet = {};
  for (const m of a.modules) {
    const name = m.name.startsWith('transformer.') ? m.name : `transformer.${m.name}`;
    reloaded[`${name}.lora_A.weight`] = { shape: [m.rank, m.inFeatures], data: a.store.readF32(m.A.tensor.name) };
    reloaded[`${name}.lora_B.weight`] = { shape: [m.outFeatures, m.rank], data: a.store.readF32(m.B.tensor.name) };
  }
  const viaOpen = await tr.evaluate(batch, { lora: reloaded });
  assert.deepEqual(Array.from(viaOpen.logits), Array.from(viaInit.logits));
  a.store.close();
  await tr.dispose();
});
