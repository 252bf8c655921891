import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FormatError } from '../../src/core/formats/errors';
import { collectTensors, parsePickle } from '../../src/core/formats/pickle';
import { openTorchCheckpoint, readZipDirectory } from '../../src/core/formats/torchzip';
import { RangeFile } from '../../src/core/formats/fileio';
import { openPeftBinAdapter } from '../../src/core/formats/peftbin';
import { SafetensorsStore } from '../../src/core/formats/safetensors';
import { makeZip } from './fuzzlib';

const REAL = '/work/shared/realdata';
const FIX = path.resolve(__dirname, '../../../test/fixtures');
const hasReal = fs.existsSync(REAL);


function tmpFile(name: string, data: Uint8Array): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-pkl-'));
  const f = path.join(dir, name);
  fs.writeFileSync(f, data);
  return f;
}

const OS_SYSTEM = Buffer.concat([
  Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n', 'latin1'),
  Buffer.from([0x58, 2, 0, 0, 0]), Buffer.from('ls'), Buffer.from([0x85, 0x52, 0x2e]),
]);

test('malicious pickle (GLOBAL os.system + REDUCE) is refused by name, nothing runs', () => {
  assert.throws(() => parsePickle(OS_SYSTEM, 'evil.pkl'), (e: unknown) =>
    e instanceof FormatError && /refuses to load: the pickle references os\.system, which could run code/.test(e.message));
  // Same through a torch-style zip, and via STACK_GLOBAL (protocol 4) with builtins.eval.
  const f = tmpFile('evil.pt', makeZip([{ name: 'evil/data.pkl', data: OS_SYSTEM }]));
  assert.throws(() => openTorchCheckpoint(f), /evil\.pt: .*os\.system/);
  const sg = Buffer.concat([Buffer.from([0x80, 0x04, 0x8c, 8]), Buffer.from('builtins'), Buffer.from([0x8c, 4]), Buffer.from('eval'), Buffer.from([0x93, 0x2e])]);
  assert.throws(() => parsePickle(sg, 'x'), /builtins\.eval/);
  // REDUCE on an allowed but non-callable-as-used global, and INST, are refused too.
  assert.throws(() => parsePickle(Buffer.from('\x80\x02ctorch\nFloatStorage\n)R.', 'latin1'), 'x'), /not a callable/);
  assert.throws(() => parsePickle(Buffer.from('(ios\nsystem\n.', 'latin1'), 'x'), /os\.system/);
});

test('truncated / garbage pickles give FormatErrors, not crashes', () => {
  const cases = [
    Buffer.from([0x80, 0x02, 0x7d]), // no STOP
    Buffer.from([0x80, 0x02, 0x58, 0xff, 0xff, 0xff, 0x7f]), // 2 GB string in 7 bytes
    Buffer.from([0x80, 0x02, 0x68, 5, 0x2e]), // BINGET of undefined memo
    Buffer.from([0x80, 0x02, 0x2e]), // STOP on empty stack
    Buffer.from([0x80, 0x02, 0xff]), // unknown opcode
    Buffer.from([0x80, 0x02, 0x7d, 0x4b, 1, 0x73, 0x2e]), // SETITEM with one operand
  ];
  for (const c of cases) assert.throws(() => parsePickle(c, 'bad.pkl'), (e: unknown) => e instanceof FormatError && e.message.startsWith('bad.pkl: pickle byte'));
});

test('a DAG of shared dicts (2^30 paths) is walked once per dict, not exponentially', () => {
  const p: number[] = [0x80, 0x02, 0x7d, 0x71, 0]; // {} -> memo 0
  for (let i = 1; i <= 30; i++) p.push(0x7d, 0x8c, 1, 0x61, 0x68, i - 1, 0x73, 0x8c, 1, 0x62, 0x68, i - 1, 0x73, 0x71, i);
  p.push(0x2e);
  const t0 = Date.now();
  const { tensors, ignored } = collectTensors(parsePickle(Uint8Array.from(p), 'dag.pkl'), 'dag.pkl');
  assert.equal(tensors.length, 0);
  assert.equal(ignored.length, 30); // one 'dict seen before' per level (the second reference)
  assert.ok(Date.now() - t0 < 1000);
});

test('zip problems: compressed entry, missing storage, truncation, not a zip', () => {
  const fx = fs.readFileSync(path.join(FIX, 'torch_tiny.pt'));
  // Re-pack with data.pkl marked deflated.
  const pkl = Buffer.from('\x80\x02}q\x00.', 'latin1');
  assert.throws(() => openTorchCheckpoint(tmpFile('c.pt', makeZip([{ name: 'c/data.pkl', data: pkl, method: 8 }]))), /is compressed \(method 8\)/);
  assert.equal(openTorchCheckpoint(tmpFile('e.pt', makeZip([{ name: 'e/data.pkl', data: pkl }]))).tensors.size, 0);
  assert.throws(() => openTorchCheckpoint(tmpFile('t.pt', fx.subarray(0, fx.length - 30))), /end-of-central-directory|outside the file/);
  assert.throws(() => openTorchCheckpoint(tmpFile('p.pt', Buffer.concat([Buffer.from([0x80, 2]), Buffer.alloc(100)]))), /legacy \(pre-1\.6/);
  assert.throws(() => openTorchCheckpoint(tmpFile('n.pt', Buffer.alloc(100, 7))), /not a PyTorch zip checkpoint/);
  // Storage key referenced by the pickle but absent from the archive.
  const rf = RangeFile.open(path.join(FIX, 'torch_tiny.pt'));
  const e = readZipDirectory(rf).find((x) => x.name === 'torch_tiny/data.pkl')!;
  const zipNoStorage = makeZip([{ name: 'torch_tiny/data.pkl', data: rf.read(e.dataOffset, e.size) }]);
  rf.close();
  assert.throws(() => openTorchCheckpoint(tmpFile('m.pt', zipNoStorage)), /has no entry torch_tiny\/data\/\d/);
});

test('torch.save fixture (torch 1.13): dtypes, nested dict, storage offset, Parameter, exact values', () => {
  const s = openTorchCheckpoint(path.join(FIX, 'torch_tiny.pt'));
  const exp = JSON.parse(fs.readFileSync(path.join(FIX, 'torch_tiny.expected.json'), 'utf8')) as Record<string, { shape: number[]; dtype: string; values: number[] }>;
  const dmap: Record<string, string> = { 'torch.float32': 'F32', 'torch.float16': 'F16', 'torch.bfloat16': 'BF16', 'torch.float64': 'F64', 'torch.int64': 'I64' };
  assert.deepEqual([...s.tensors.keys()].sort(), Object.keys(exp).sort());
  for (const [k, e] of Object.entries(exp)) {
    const t = s.tensors.get(k)!;
    assert.deepEqual(t.shape, e.shape, k);
    assert.equal(t.dtype, dmap[e.dtype], k);
    const v = s.readF64(k);
    assert.equal(v.length, e.values.length, k);
    for (let i = 0; i < v.length; i++) assert.equal(v[i], e.values[i], `${k}[${i}]`);
  }
  assert.match(s.warnings.join('\n'), /2 non-tensor value\(s\) ignored/); // epoch, name
  // The slice shares the storage of "big" at element offset 12.
  assert.equal(s.tensors.get('model.slice')!.offset, s.tensors.get('model.big')!.offset + 12 * 4);
  s.close();
});

test('non-contiguous tensor is rejected with the shape and stride', () => {
  assert.throws(() => openTorchCheckpoint(path.join(FIX, 'torch_noncontig.pt')), (e: unknown) =>
    e instanceof FormatError && /tensor "t" is not contiguous \(shape \[4,3\], stride \[1,4\]\)/.test(e.message));
});

test('real: TheSotti legacy PEFT adapter_model.bin (cuda:0 storages) opens as an Adapter', { skip: !hasReal }, () => {
  const a = openPeftBinAdapter(path.join(REAL, 'TheSotti__Lightweight-Fine-Tuning-to-FM'));
  assert.equal(a.format, 'peft');
  assert.equal(a.modules.length, 24);
  assert.equal(a.store.tensors.size, 49);
  assert.deepEqual(a.otherTensors.map((t) => t.name), ['base_model.model.score.weight']);
  const m = a.modules.find((x) => x.name === 'transformer.h.11.attn.c_proj')!;
  assert.equal(m.rank, 8);
  assert.equal(m.scale, 4); // 32/8
  assert.equal(m.fanInFanOut, true);
  assert.match(a.warnings.join('\n'), /cuda:0/);
  // Values checked against torch.load(weights_only=True): sum, |sum|, first three.
  const b = a.store.readF64('base_model.model.transformer.h.11.attn.c_proj.lora_B.weight');
  let sum = 0, abs = 0;
  for (const x of b) { sum += x; abs += Math.abs(x); }
  assert.ok(Math.abs(sum - -0.09535900786585216) < 1e-12);
  assert.ok(Math.abs(abs - 22.743509887095854) < 1e-10);
  assert.deepEqual(Array.from(b.slice(0, 3)), [0.0028617202769964933, 0.001891888678073883, 0.0015364293940365314]);
  a.store.close();
});

test('real: torchtune .pt files and catundchat .bin match torch.load values and the .safetensors twin names and shapes', { skip: !hasReal }, () => {
  const tt = openTorchCheckpoint(path.join(REAL, 'pytorch__torchtune/tiny_fair_checkpoint.pt'));
  assert.equal(tt.tensors.size, 21);
  assert.deepEqual(tt.tensors.get('layers.1.feed_forward.w2.weight')!.shape, [32, 256]);
  let s = 0;
  for (const x of tt.readF64('layers.1.feed_forward.w2.weight')) s += x;
  assert.ok(Math.abs(s - 1638.4000244140625) < 1e-6);
  assert.deepEqual(openTorchCheckpoint(path.join(REAL, 'pytorch__torchtune/tiny_state_dict_with_one_key.pt')).tensors.get('test_key')!.shape, [10, 10]);
  // .bin twin of the .safetensors file (a different training run: same names and shapes, other values).
  const bin = openTorchCheckpoint(path.join(REAL, 'catundchat__stable-diffusion-v1.5-lora/pytorch_lora_weights.bin'));
  const st = SafetensorsStore.openFile(path.join(REAL, 'catundchat__stable-diffusion-v1.5-lora/pytorch_lora_weights.safetensors'));
  assert.equal(bin.tensors.size, 256);
  assert.deepEqual(bin.locations, ['cuda:0']);
  for (const [k, t] of st.tensors) {
    assert.deepEqual(bin.tensors.get(k)!.shape, t.shape, k);
    assert.equal(bin.tensors.get(k)!.dtype, t.dtype, k);
  }
  // Values against torch.load(weights_only=True).
  const sumOf = (k: string): number => bin.readF64(k).reduce((a, b) => a + b, 0);
  const k1 = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_k_lora.down.weight';
  assert.deepEqual(Array.from(bin.readF32(k1).slice(0, 3)), [-0.26483154296875, 0.11244168877601624, 0.03129984065890312]);
  assert.ok(Math.abs(sumOf(k1) - -2.8013707298086956) < 1e-9);
  assert.ok(Math.abs(sumOf('up_blocks.3.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.up.weight') - 0.016693360164595106) < 1e-9);
  bin.close(); st.close(); tt.close();
});

test('real: Trainer pickles with other classes are refused naming the class; plain dict pickle reads', { skip: !hasReal }, () => {
  const d = path.join(REAL, 'Tashu014__lora-imdb-distilbert');
  assert.throws(() => openTorchCheckpoint(path.join(d, 'training_args.bin')), (e: unknown) =>
    e instanceof FormatError && e.file.endsWith('training_args.bin') && /transformers\.training_args\.TrainingArguments, which could run code/.test(e.message));
  assert.throws(() => openTorchCheckpoint(path.join(d, 'rng_state.pth')), /references numpy\._core\.multiarray\._reconstruct/);
  const sch = openTorchCheckpoint(path.join(d, 'scheduler.pt'));
  assert.equal(sch.tensors.size, 0);
  assert.match(sch.warnings[0], /non-tensor value/);
});
