/**
 * llama.cpp as the judge of the GGUF files LoRA Lens writes (src/core/convert/ggufModel.ts for base
 * models, src/core/convert/convert.ts + gguf.ts for LoRA adapters).
 *
 * The demo tiny Llama (GQA: 4 heads, 2 KV heads) is converted with `lora-lens convert MODEL_DIR --to gguf`
 * (F32 and F16) and the demo LoRA adapter (all seven Llama projections, r 8, α 16) with
 * `lora-lens convert ADAPTER --to gguf`. Both are loaded by llama.cpp through node-llama-cpp (prebuilt
 * CPU binary, pinned 3.21.1): the base alone and base + adapter at scale 1. llama.cpp's next-token
 * distribution at every position of a few prompts is compared with LoRA Lens's own forward pass
 * (src/core/train/hf.ts on onnxruntime, float64; itself checked against torch in train-hf.test.ts) of
 * the same weights: the base, and the base with s·B·A added (s = α/r).
 *
 * Metric: max over positions and vocabulary of |log p_llama.cpp − log p_LoRA Lens|. llama.cpp runs with
 * F32 KV cache and no flash attention, so an F32 GGUF must agree to fp32 rounding. An F16 GGUF is
 * compared with the forward pass of the F16-rounded weights; llama.cpp's CPU kernels also round the
 * activations to F16 in F16 matrix products, so that tolerance is fp16-sized.
 *
 * A negative control checks that the metric sees a wrong q/k row order: the same base written with
 * the q/k rows left in Hugging Face order disagrees by orders of magnitude more than the tolerance.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { DEMO_CONFIG, writeDemoAdapter, writeTinyLlama } from '../../src/core/demo/makeDemo';
import { writeDemoTokenizerAndData } from '../../src/core/demo/tokenizer';
import { SafetensorsStore, encodeSafetensors } from '../../src/core/formats/safetensors';
import { fromFloats } from '../../src/core/formats/dtype';
import { HfTrainer } from '../../src/core/train/hfTrainer';
import { LLAMA_TARGETS } from '../../src/core/train/hf';
import { loadTokenizer, makeBatch, type PackedData } from '../../src/core/train/data';
import type { ParamSet } from '../../src/core/train/models';
import { convertModelToGguf } from '../../src/core/convert/ggufModel';
import { GgufStore } from '../../src/core/formats/gguf';
import { ropePermutation } from '../../src/core/convert/gguf';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-llamacpp-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const baseDir = path.join(tmp, 'tiny-llama');
writeTinyLlama(baseDir);
writeDemoTokenizerAndData(baseDir, path.join(tmp, 'data', 'train.jsonl'));
const adapterDir = path.join(tmp, 'demo-lora');
writeDemoAdapter(adapterDir, '../tiny-llama', { r: 8, alpha: 16, targets: LLAMA_TARGETS, dtype: 'F32', seed: 11, bScale: 1 });
const SCALE = 16 / 8;

const PROMPTS = ['the red cat sees the big tree near the', 'q : what color is the sky ? answer :', 'count : three four five six seven eight'];
const T = 9;

/** The same folder with every 2-D tensor rounded to F16 (what an F16 GGUF holds). */
function f16Copy(dir: string, out: string): void {
  fs.mkdirSync(out, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(dir, f), path.join(out, f));
  const st = SafetensorsStore.openFile(path.join(dir, 'model.safetensors'));
  const ts = [...st.tensors.values()].map((t) => {
    const dtype = t.shape.length >= 2 ? ('F16' as const) : ('F32' as const);
    return { name: t.name, shape: t.shape, dtype, data: fromFloats(st.readF32(t.name), dtype) };
  });
  st.close();
  fs.writeFileSync(path.join(out, 'model.safetensors'), encodeSafetensors(ts, { format: 'pt' }));
}

/** `lora-lens convert …` as a subprocess of the compiled CLI (out/src/core/cli.js), returning its stdout. */
async function cli(...args: string[]): Promise<string> {
  const r = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'src', 'core', 'cli.js'), ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `lora-lens ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Demo adapter factors keyed as HfTrainer's LoRA parameters; `zero` gives B = 0 (the base model). */
function adapterParams(zero = false): ParamSet {
  const st = SafetensorsStore.openFile(path.join(adapterDir, 'adapter_model.safetensors'));
  const out: ParamSet = {};
  for (const t of st.tensors.values()) {
    const d = Float64Array.from(st.readF32(t.name));
    if (zero && t.name.includes('lora_B')) d.fill(0);
    out[t.name.replace(/^base_model\.model\./, '')] = { shape: t.shape, data: d };
  }
  st.close();
  return out;
}

/** LoRA Lens's log-probabilities [prompt][position][vocab] (float64 forward on onnxruntime). */
async function ours(modelDir: string, ids: number[][], withAdapter: boolean): Promise<Float64Array[][]> {
  const tr = await HfTrainer.create({ model: modelDir, spec: { targets: LLAMA_TARGETS, r: 8, alpha: 16 }, batchSize: ids.length, seqLen: T, dtype: 'float64', loraInit: adapterParams(!withAdapter), threads: 2, metricsEvery: 0 });
  try {
    const data: PackedData = { n: ids.length, seqLen: T, ids: Int32Array.from(ids.flat()), attn: new Uint8Array(ids.length * T).fill(1), loss: new Uint8Array(ids.length * T).fill(1) };
    const { logits } = await tr.evaluate(makeBatch(data, ids.map((_, i) => i)));
    const V = logits.length / (ids.length * T);
    return ids.map((_, b) => Array.from({ length: T }, (_, t) => {
      const row = logits.subarray((b * T + t) * V, (b * T + t + 1) * V);
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
      return row.map((x) => x - lse);
    }));
  } finally {
    await tr.dispose();
  }
}

type Llama = Awaited<ReturnType<typeof import('node-llama-cpp', { with: { 'resolution-mode': 'import' } })['getLlama']>>;
let llamaP: Promise<Llama> | undefined;
async function llama(): Promise<Llama> {
  const { getLlama } = await import('node-llama-cpp');
  // Prebuilt CPU binary from @node-llama-cpp/linux-x64; never build or download.
  llamaP ??= getLlama({ gpu: false, build: 'never', skipDownload: true, logLevel: 'error' as never, progressLogs: false });
  return llamaP;
}

/** llama.cpp's log-probabilities [prompt][position][vocab], each prompt in a fresh sequence. */
async function theirs(gguf: string, ids: number[][], lora?: string): Promise<{ logp: Float64Array[][]; tokens: number[][] }> {
  const l = await llama();
  const model = await l.loadModel({ modelPath: gguf });
  try {
    const ctx = await model.createContext({
      contextSize: 32, batchSize: 32, sequences: 1, threads: 2, flashAttention: false,
      experimentalKvCacheKeyType: 'F32', experimentalKvCacheValueType: 'F32',
      ...(lora ? { lora: { adapters: [{ filePath: lora, scale: 1 }] } } : {}),
    });
    const V = DEMO_CONFIG.vocab;
    const logp: Float64Array[][] = [];
    const seq = ctx.getSequence();
    for (const p of ids) {
      await seq.clearHistory();
      const res = await seq.controlledEvaluate(p.map((tok) => [tok as never, { generateNext: { probabilities: true, options: { temperature: 1, topK: 0, topP: 1, minP: 0 } } }]));
      logp.push(res.map((r) => {
        const row = new Float64Array(V).fill(-Infinity);
        for (const [tok, pr] of r!.next.probabilities!) row[tok as unknown as number] = Math.log(pr);
        return row;
      }));
    }
    seq.dispose();
    await ctx.dispose();
    return { logp, tokens: PROMPTS.map((s) => Array.from(model.tokenize(s), Number)) };
  } finally {
    await model.dispose();
  }
}

function maxLogpDiff(a: Float64Array[][], b: Float64Array[][]): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) for (let t = 0; t < a[i].length; t++) for (let v = 0; v < a[i][t].length; v++) d = Math.max(d, Math.abs(a[i][t][v] - b[i][t][v]));
  return d;
}

const tok = loadTokenizer(baseDir);
const IDS = PROMPTS.map((p) => {
  const ids = tok.encode(p);
  assert.ok(ids.length >= T, `prompt "${p}" has ${ids.length} tokens`);
  return ids.slice(0, T);
});

const F32_TOL = 1e-5;
const F16_TOL = 3e-3;

test('F32 GGUF base and LoRA adapter: llama.cpp agrees with LoRA Lens to fp32 rounding', async () => {
  const base = path.join(tmp, 'base-f32.gguf'), lora = path.join(tmp, 'lora-f32.gguf');
  assert.match(await cli('convert', baseDir, '--to', 'gguf', base, '--gguf-type', 'f32'), /llama\.cpp llama, 21 tensors, F32, bert vocabulary of 128 tokens/);
  await cli('convert', adapterDir, '--to', 'gguf', lora, '--base', baseDir);
  const gs = GgufStore.openFile(base);
  assert.equal(gs.kv.get('general.architecture'), 'llama');
  assert.equal(gs.kv.get('llama.attention.head_count_kv'), 2);
  gs.close();

  const b = await theirs(base, IDS);
  // The WordPiece vocabulary tokenizes like the Hugging Face tokenizer (llama.cpp adds no BOS here).
  PROMPTS.forEach((p, i) => assert.deepEqual(b.tokens[i], tok.encode(p).slice(1), `llama.cpp tokenization of "${p}"`));
  const ob = await ours(baseDir, IDS, false);
  const dBase = maxLogpDiff(b.logp, ob);

  const a = await theirs(base, IDS, lora);
  const oa = await ours(baseDir, IDS, true);
  const dLora = maxLogpDiff(a.logp, oa);
  const effect = maxLogpDiff(ob, oa);
  console.log(`F32: max |Δ log p| base ${dBase.toExponential(2)}, base+LoRA(scale ${SCALE}) ${dLora.toExponential(2)}; the adapter itself moves log p by ${effect.toExponential(2)}`);
  assert.ok(dBase < F32_TOL, `base: max |Δ log p| ${dBase}`);
  assert.ok(dLora < F32_TOL, `base + LoRA: max |Δ log p| ${dLora}`);
  assert.ok(effect > 1000 * F32_TOL, `the adapter changes the model (${effect})`);
});

test('F16 GGUF base and LoRA adapter: llama.cpp agrees with LoRA Lens on the F16-rounded weights', async () => {
  const half = path.join(tmp, 'tiny-llama-f16');
  f16Copy(baseDir, half);
  const base = path.join(tmp, 'base-f16.gguf'), lora = path.join(tmp, 'lora-f16.gguf');
  // auto picks F16 for a 16-bit checkpoint
  assert.match(await cli('convert', half, '--to', 'gguf', base), /F16/);
  await cli('convert', adapterDir, '--to', 'gguf', lora, '--base', baseDir, '--gguf-type', 'f16');
  const dBase = maxLogpDiff((await theirs(base, IDS)).logp, await ours(half, IDS, false));
  // The F16 adapter's factors are F16-rounded too; the reference uses the F32 factors, so this also
  // bounds the effect of that rounding.
  const dLora = maxLogpDiff((await theirs(base, IDS, lora)).logp, await ours(half, IDS, true));
  console.log(`F16: max |Δ log p| base ${dBase.toExponential(2)}, base+LoRA ${dLora.toExponential(2)}`);
  assert.ok(dBase < F16_TOL, `base: max |Δ log p| ${dBase}`);
  assert.ok(dLora < F16_TOL, `base + LoRA: max |Δ log p| ${dLora}`);
});

test('negative control: q/k rows left in Hugging Face order are caught by the comparison', async () => {
  // Undo the RoPE permutation in a copy of the model so that the converter's permutation yields HF order.
  const wrong = path.join(tmp, 'tiny-llama-unpermuted');
  fs.mkdirSync(wrong);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(baseDir, f), path.join(wrong, f));
  const st = SafetensorsStore.openFile(path.join(baseDir, 'model.safetensors'));
  const ts = [...st.tensors.values()].map((t) => {
    let v = st.readF32(t.name);
    const m = /self_attn\.(q|k)_proj\.weight$/.exec(t.name);
    if (m) {
      const inv = ropePermutation(t.shape[0], m[1] === 'q' ? 4 : 2, true), cols = t.shape[1], o = new Float32Array(v.length);
      for (let r = 0; r < t.shape[0]; r++) o.set(v.subarray(inv[r] * cols, (inv[r] + 1) * cols), r * cols);
      v = o;
    }
    return { name: t.name, shape: t.shape, dtype: 'F32' as const, data: fromFloats(v, 'F32') };
  });
  st.close();
  fs.writeFileSync(path.join(wrong, 'model.safetensors'), encodeSafetensors(ts, { format: 'pt' }));
  const g = path.join(tmp, 'wrong.gguf');
  convertModelToGguf(wrong, g);
  const d = maxLogpDiff((await theirs(g, IDS)).logp, await ours(baseDir, IDS, false));
  console.log(`unpermuted q/k: max |Δ log p| ${d.toExponential(2)}`);
  assert.ok(d > 50 * F32_TOL, `a wrong q/k row order must be detected (${d})`);
});

test('convert MODEL_DIR --to gguf refuses what it cannot convert, naming the file, and leaves nothing behind', () => {
  const bad = (name: string, edit: (dir: string) => void): string => {
    const d = path.join(tmp, name);
    fs.cpSync(baseDir, d, { recursive: true });
    edit(d);
    return d;
  };
  const cfg = (d: string, patch: Record<string, unknown>): void => {
    const f = path.join(d, 'config.json');
    fs.writeFileSync(f, JSON.stringify({ ...JSON.parse(fs.readFileSync(f, 'utf8')), ...patch }));
  };
  const tokJson = (d: string, edit: (t: Record<string, unknown>) => void): void => {
    const f = path.join(d, 'tokenizer.json');
    const t = JSON.parse(fs.readFileSync(f, 'utf8'));
    edit(t);
    fs.writeFileSync(f, JSON.stringify(t));
  };
  const cases: [string, (d: string) => void, RegExp][] = [
    ['gpt2-type', (d) => cfg(d, { model_type: 'gpt2', architectures: ['GPT2LMHeadModel'] }), /config\.json.*model_type "gpt2"/],
    ['rope-scaled', (d) => cfg(d, { rope_scaling: { rope_type: 'llama3', factor: 8 } }), /rope_scaling/],
    ['no-tokenizer', (d) => fs.rmSync(path.join(d, 'tokenizer.json')), /no tokenizer\.json/],
    ['wrong-heads', (d) => cfg(d, { num_key_value_heads: 3 }), /inconsistent sizes/],
    ['wrong-shape', (d) => cfg(d, { intermediate_size: 100 }), /model\.safetensors.*shape/],
    ['big-id', (d) => tokJson(d, (t) => { (t.model as { vocab: Record<string, number> }).vocab.zebra = 5000; }), /tokenizer\.json.*token id 5000 ≥ the model's vocab_size 128/],
    ['bad-id', (d) => tokJson(d, (t) => { (t.model as { vocab: Record<string, unknown> }).vocab.zebra = -1; }), /tokenizer\.json.*"zebra" has id -1/],
    ['unigram', (d) => tokJson(d, (t) => { (t.model as { type: string }).type = 'Unigram'; }), /tokenizer\.json.*"Unigram" is not converted/],
    ['not-json', (d) => fs.writeFileSync(path.join(d, 'tokenizer.json'), '{"model": '), /tokenizer\.json/],
  ];
  for (const [name, edit, re] of cases) {
    const d = bad(name, edit);
    const out = path.join(tmp, `${name}.gguf`);
    assert.throws(() => convertModelToGguf(d, out), re, name);
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.startsWith(`${name}.gguf`)), [], `${name}: nothing written`);
  }
  // F16 output of a value beyond F16's range: refused (half-written temp file removed)
  const big = bad('f16-overflow', (d) => {
    const st = SafetensorsStore.openFile(path.join(baseDir, 'model.safetensors'));
    const ts = [...st.tensors.values()].map((t) => {
      const v = st.readF32(t.name);
      if (t.name.endsWith('layers.1.mlp.up_proj.weight')) v[7] = 1e6;
      return { name: t.name, shape: t.shape, dtype: 'F32' as const, data: fromFloats(v, 'F32') };
    });
    st.close();
    fs.writeFileSync(path.join(d, 'model.safetensors'), encodeSafetensors(ts, { format: 'pt' }));
  });
  assert.throws(() => convertModelToGguf(big, path.join(tmp, 'f16-overflow.gguf'), { ggufType: 'F16' }), /up_proj\.weight" holds 1000000, beyond F16's range/);
  assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.startsWith('f16-overflow.gguf')), []);
  convertModelToGguf(big, path.join(tmp, 'f32-fine.gguf'), { ggufType: 'F32' });
  const exists = path.join(tmp, 'exists.gguf');
  fs.writeFileSync(exists, 'keep');
  assert.throws(() => convertModelToGguf(baseDir, exists), /already exists/);
  assert.equal(fs.readFileSync(exists, 'utf8'), 'keep');
});

test('byte-level BPE tokenizer.json → GGUF gpt2 vocabulary: llama.cpp tokenizes as the BPE merges say', async () => {
  // A tiny GPT-2-style tokenizer: the 256 byte symbols (GPT-2 bytes_to_unicode order) + 6 merges.
  const byteSyms: string[] = [];
  const printable = (b: number): boolean => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
  let extra = 0;
  for (let b = 0; b < 256; b++) byteSyms.push(String.fromCodePoint(printable(b) ? b : 256 + extra++));
  const merges = [['t', 'h'], ['th', 'e'], ['c', 'a'], ['ca', 't'], ['\u0120', 'cat'], ['\u0120', 'the']];
  const vocab: Record<string, number> = {};
  byteSyms.forEach((s, i) => (vocab[s] = i));
  for (const [a, b] of merges) vocab[a + b] = Object.keys(vocab).length;
  const eos = Object.keys(vocab).length;
  const dir = path.join(tmp, 'tiny-llama-bpe');
  writeTinyLlama(dir, { ...DEMO_CONFIG, vocab: 272 }, 3);
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: eos, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null, pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: null, decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab, merges: merges.map((m) => m.join(' ')) },
  }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|endoftext|>', bos_token: '<|endoftext|>', add_bos_token: false }));
  const g = path.join(tmp, 'bpe.gguf');
  assert.match(await cli('convert', dir, '--to', 'gguf', g), /gpt2 vocabulary of 272 tokens/);
  const text = 'the cat sat on the mat';
  // By hand from the merges: "the" | " cat" | " " "s" "a" "t" | " " "o" "n" | " the" | " " "m" "a" "t"
  const id = (s: string): number => vocab[s];
  const expected = [id('the'), id('\u0120cat'), id('\u0120'), id('s'), id('a'), id('t'), id('\u0120'), id('o'), id('n'), id('\u0120the'), id('\u0120'), id('m'), id('a'), id('t')];
  assert.deepEqual(loadTokenizer(dir).encode(text, false), expected, 'the Hugging Face tokenizer agrees with the hand tokenization');
  const l = await llama();
  const model = await l.loadModel({ modelPath: g });
  try {
    assert.deepEqual(Array.from(model.tokenize(text), Number), expected, 'llama.cpp tokenization');
    assert.equal(model.detokenize(model.tokenize(text)), text);
  } finally {
    await model.dispose();
  }
});

test('tied embeddings (no output.weight): llama.cpp agrees with LoRA Lens to fp32 rounding', async () => {
  const dir = path.join(tmp, 'tiny-llama-tied');
  fs.mkdirSync(dir);
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) fs.copyFileSync(path.join(baseDir, f), path.join(dir, f));
  const cfg = JSON.parse(fs.readFileSync(path.join(baseDir, 'config.json'), 'utf8'));
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, tie_word_embeddings: true }));
  const st = SafetensorsStore.openFile(path.join(baseDir, 'model.safetensors'));
  // Larger embeddings than the demo's (std 0.02) so that the tied head gives a visibly non-uniform distribution.
  const ts = [...st.tensors.values()].filter((t) => t.name !== 'lm_head.weight').map((t) => {
    const v = st.readF32(t.name);
    if (t.name === 'model.embed_tokens.weight') for (let i = 0; i < v.length; i++) v[i] *= 10;
    return { name: t.name, shape: t.shape, dtype: 'F32' as const, data: fromFloats(v, 'F32') };
  });
  st.close();
  fs.writeFileSync(path.join(dir, 'model.safetensors'), encodeSafetensors(ts, { format: 'pt' }));
  const g = path.join(tmp, 'tied.gguf');
  assert.match(await cli('convert', dir, '--to', 'gguf', g), /20 tensors/);
  const ob = await ours(dir, IDS, false);
  const d = maxLogpDiff((await theirs(g, IDS)).logp, ob);
  const spread = Math.max(...ob.flat().map((r) => Math.max(...r) - Math.min(...r)));
  console.log(`tied: max |Δ log p| ${d.toExponential(2)} (log p spread ${spread.toFixed(2)})`);
  assert.ok(spread > 1, 'the distribution is far from uniform');
  assert.ok(d < F32_TOL, `tied embeddings: max |Δ log p| ${d}`);
});
