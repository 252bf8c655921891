/**
 * Hardening checks beyond the fuzz campaign (issue 5 part 3):
 *  (a) writers never overwrite and leave inputs byte-identical; temp files are removed on failure;
 *  (b) cancellation stops analysis and surgery with CancelledError, leaving no output;
 *  (c) NaN/Inf factors give a per-module error naming the tensor and the count;
 *  (d) missing alpha gives a warning in every format that can lack it;
 *  (e) webview → host messages are validated;
 *  (f) the webview CSP is strict (default-src 'none', nonce, no unsafe-inline, no remote origins).
 */
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Engine } from '../../src/core/engine/ort';
import { CancelledError, FormatError } from '../../src/core/formats/errors';
import { openAdapter, openStore } from '../../src/core/formats/open';
import { matchPattern } from '../../src/core/formats/peft';
import { analyzeAdapter } from '../../src/core/analysis/lora';
import { makeDemoWorkspace } from '../../src/core/demo/makeDemo';
import { rebalanceAdapter } from '../../src/core/surgery/balora';
import { reduceRankAdapter } from '../../src/core/surgery/rank';
import { combineAdapters, mergeIntoBase, rescaleAdapter } from '../../src/core/surgery/combine';
import { OutputExistsError, writeAdapterFolder, writeNewFileAtomic } from '../../src/core/formats/writer';
import { encodeSafetensors } from '../../src/core/formats/safetensors';
import { parseWebviewToHost as parseReport } from '../../src/shared/reportView';
import { parseWebviewToHost as parseViewer } from '../../src/shared/viewer';
import { f32, ggufAdapterSeed, makeZip, Prng } from './fuzzlib';

const ROOT = path.resolve(__dirname, '../../..');
const engine = new Engine({ provider: 'cpu' });
after(() => engine.dispose());
const ws = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-harden-'));
makeDemoWorkspace(ws);
const LORA = path.join(ws, 'adapters', 'demo-lora');
const RSLORA = path.join(ws, 'adapters', 'demo-rslora');
const BASE = path.join(ws, 'tiny-llama', 'model.safetensors');

/** sha256 of every file under `dir` (relative path -> hash), symlinks not followed. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) out.set(path.relative(dir, p), crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}
const leftovers = (dir: string): string[] => {
  const found: string[] = [];
  const walk = (d: string): void => { for (const e of fs.readdirSync(d, { withFileTypes: true })) { if (/\.tmp-\d+/.test(e.name)) found.push(path.join(d, e.name)); if (e.isDirectory()) walk(path.join(d, e.name)); } };
  walk(dir);
  return found;
};

// ---------------------------------------------------------------- (a) never overwrite, inputs untouched

test('(a) every surgery refuses to overwrite, refuses output == input, and leaves the workspace byte-identical', async () => {
  const before = snapshot(ws);
  const lora = openAdapter(LORA);
  const rs = openAdapter(RSLORA);
  const base = openStore(BASE);
  try {
    const reject = async (what: string, p: Promise<unknown> | (() => unknown), re: RegExp | Function): Promise<void> => {
      const run = typeof p === 'function' ? Promise.resolve().then(p) : p;
      await assert.rejects(run, re as RegExp, what);
    };
    const notInput = /is the input|folder of the input|already exists/;
    // output == input folder / weights file
    await reject('rebalance -> input folder', rebalanceAdapter(lora, engine, LORA), notInput);
    await reject('rebalance -> input weights', rebalanceAdapter(lora, engine, lora.weightsFile), notInput);
    await reject('reduce-rank -> input folder', reduceRankAdapter(lora, engine, LORA, { kind: 'rank', k: 2 }), notInput);
    await reject('rescale -> input folder', () => rescaleAdapter(lora, 2, LORA), notInput);
    await reject('combine -> input folder', combineAdapters(engine, lora, 1, rs, 1, LORA, { mode: 'cat' }), notInput);
    await reject('combine -> second input', combineAdapters(engine, lora, 1, rs, 1, RSLORA, { mode: 'cat' }), notInput);
    await reject('merge -> base file', mergeIntoBase(base, lora, engine, BASE), notInput);
    await reject('merge -> adapter weights', mergeIntoBase(base, lora, engine, lora.weightsFile), notInput);
    // output == some other existing file/folder
    await reject('rebalance -> existing folder', rebalanceAdapter(lora, engine, RSLORA), OutputExistsError);
    await reject('rescale -> existing folder', () => rescaleAdapter(lora, 2, path.join(ws, 'tiny-llama')), OutputExistsError);
    await reject('merge -> existing file', mergeIntoBase(base, lora, engine, path.join(ws, 'train.py')), OutputExistsError);
    await reject('merge -> existing config', mergeIntoBase(base, lora, engine, path.join(ws, 'tiny-llama', 'config.json')), /already exists|is the input|folder of the input/);
    assert.deepEqual(snapshot(ws), before, 'no input file changed after refused writes');

    // output inside the input folder: either refused, or written as a NEW sub-folder with every input byte unchanged
    const inside = path.join(LORA, 'rescaled');
    let insideWritten = false;
    try { rescaleAdapter(lora, 2, inside); insideWritten = true; } catch (e) { assert.ok(e instanceof Error); }
    for (const [k, v] of before) assert.equal(snapshot(ws).get(k), v, `${k} unchanged after writing inside the input folder`);
    if (insideWritten) {
      assert.ok(fs.existsSync(path.join(inside, 'adapter_model.safetensors')));
      fs.rmSync(inside, { recursive: true });
    }
    // successful writes to new paths leave inputs identical too, and never leave temp files
    const out1 = path.join(ws, 'out', 'rebalanced');
    await rebalanceAdapter(lora, engine, out1);
    const out2 = path.join(ws, 'out', 'merged.safetensors');
    await mergeIntoBase(base, lora, engine, out2);
    await reject('merge again -> same output', mergeIntoBase(base, lora, engine, out2), OutputExistsError);
    await reject('rebalance again -> same output', rebalanceAdapter(lora, engine, out1), OutputExistsError);
    const after1 = snapshot(ws);
    for (const [k, v] of before) assert.equal(after1.get(k), v, `${k} unchanged after surgery`);
    assert.deepEqual(leftovers(ws), []);
  } finally {
    lora.store.close(); rs.store.close(); base.close();
  }
});

test('(a) failed writes leave no temp files and no partial output', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-failwrite-'));
  // encodeSafetensors throws inside writeAdapterFolder (data length disagrees with the shape)
  const bad = [{ name: 'x', dtype: 'F32' as const, shape: [4], data: new Uint8Array(3) }];
  assert.throws(() => writeAdapterFolder(path.join(dir, 'out'), { r: 1 }, bad, {}));
  assert.equal(fs.existsSync(path.join(dir, 'out')), false);
  // parent "folder" is a regular file: mkdir fails
  const file = path.join(dir, 'plain');
  fs.writeFileSync(file, 'x');
  assert.throws(() => writeAdapterFolder(path.join(file, 'out'), { r: 1 }, [], {}));
  assert.throws(() => writeNewFileAtomic(path.join(file, 'w.safetensors'), new Uint8Array(4)));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['plain'], 'only the pre-existing file remains');
  assert.equal(fs.readFileSync(file, 'utf8'), 'x');
});

// ---------------------------------------------------------------- (b) cancellation

test('(b) analyzeAdapter stops with CancelledError when cancelled after the first progress', async () => {
  const a = openAdapter(LORA);
  try {
    const token = { cancelled: false };
    let progress = 0;
    await assert.rejects(analyzeAdapter(a, { engine, token, onProgress: () => { progress++; token.cancelled = true; } }), CancelledError);
    assert.equal(progress, 1, 'no batch ran after the cancel');
  } finally { a.store.close(); }
});

test('(b) surgery honours tokens: no output is left behind', async () => {
  const lora = openAdapter(LORA);
  const rs = openAdapter(RSLORA);
  const base = openStore(BASE);
  const before = snapshot(ws);
  try {
    const outRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-cancel-'));
    const cancelAfterFirst = (): { token: { cancelled: boolean }; onProgress: () => void } => {
      const token = { cancelled: false };
      return { token, onProgress: () => { token.cancelled = true; } };
    };
    await assert.rejects(rebalanceAdapter(lora, engine, path.join(outRoot, 'rb'), cancelAfterFirst()), CancelledError);
    await assert.rejects(reduceRankAdapter(lora, engine, path.join(outRoot, 'rr'), { kind: 'rank', k: 2 }, cancelAfterFirst()), CancelledError);
    await assert.rejects(mergeIntoBase(base, lora, engine, path.join(outRoot, 'm.safetensors'), cancelAfterFirst()), CancelledError);
    await assert.rejects(combineAdapters(engine, lora, 1, rs, 1, path.join(outRoot, 'cb'), { mode: 'svd', token: { cancelled: true } }), CancelledError);
    assert.deepEqual(fs.readdirSync(outRoot), [], 'no output and no temp file after cancellation');
    assert.deepEqual(snapshot(ws), before);
  } finally {
    lora.store.close(); rs.store.close(); base.close();
  }
});

// ---------------------------------------------------------------- (c) NaN / Inf

test('(c) NaN/Inf in a factor: that module reports an error naming the tensor and count; others are analysed', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-nan-'));
  const r = new Prng(5);
  const a0 = r.normals(16); a0[1] = NaN; a0[5] = Infinity; a0[7] = -Infinity;
  const ts = [
    { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight', dtype: 'F32' as const, shape: [2, 8], data: f32(a0) },
    { name: 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight', dtype: 'F32' as const, shape: [8, 2], data: f32(r.normals(16)) },
    { name: 'base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight', dtype: 'F32' as const, shape: [2, 8], data: f32(r.normals(16)) },
    { name: 'base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight', dtype: 'F32' as const, shape: [8, 2], data: f32(r.normals(16)) },
  ];
  fs.writeFileSync(path.join(dir, 'adapter_model.safetensors'), encodeSafetensors(ts));
  fs.writeFileSync(path.join(dir, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2, lora_alpha: 4 }));
  const a = openAdapter(dir);
  try {
    const rep = await analyzeAdapter(a, { engine });
    const bad = rep.modules.find((m) => m.name.includes('layers.0'))!;
    const good = rep.modules.find((m) => m.name.includes('layers.1'))!;
    assert.match(bad.error ?? '', /layers\.0\.self_attn\.q_proj\.lora_A\.weight has 3 NaN\/Inf values/);
    assert.equal(good.error, undefined);
    assert.ok(good.sigma.length === 2 && good.sigma.every(Number.isFinite));
  } finally { a.store.close(); }
});

// ---------------------------------------------------------------- (d) missing alpha

test('(d) missing alpha produces a warning in PEFT, kohya, GGUF and torchtune files', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-alpha-'));
  const r = new Prng(9);
  const peft = path.join(dir, 'peft');
  fs.mkdirSync(peft);
  fs.writeFileSync(path.join(peft, 'adapter_model.safetensors'), encodeSafetensors([
    { name: 'base_model.model.l.0.q.lora_A.weight', dtype: 'F32', shape: [2, 4], data: f32(r.normals(8)) },
    { name: 'base_model.model.l.0.q.lora_B.weight', dtype: 'F32', shape: [4, 2], data: f32(r.normals(8)) },
  ]));
  fs.writeFileSync(path.join(peft, 'adapter_config.json'), JSON.stringify({ peft_type: 'LORA', r: 2 }));
  const check = (p: string, re: RegExp): void => {
    const a = openAdapter(p);
    try { assert.ok(a.warnings.some((w) => re.test(w)), `${p}: ${JSON.stringify(a.warnings)}`); } finally { a.store.close(); }
  };
  check(peft, /no lora_alpha/);
  const ko = path.join(dir, 'k.safetensors');
  fs.writeFileSync(ko, encodeSafetensors([
    { name: 'lora_unet_a_to_q.lora_down.weight', dtype: 'F32', shape: [2, 4], data: f32(r.normals(8)) },
    { name: 'lora_unet_a_to_q.lora_up.weight', dtype: 'F32', shape: [4, 2], data: f32(r.normals(8)) },
  ]));
  check(ko, /no alpha tensor/);
  const gg = path.join(dir, 'a.gguf');
  fs.writeFileSync(gg, ggufAdapterSeed(r, { alpha: false }).bytes);
  check(gg, /adapter\.lora\.alpha is missing/);
  check(path.join(ROOT, 'test', 'fixtures', 'torchtune_lora.pt'), /no alpha recorded/);
});

test('(d) index files whose JSON is not an object are FormatErrors (regression: "null" crashed)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-idx-'));
  for (const text of ['null                    ', '[1, 2, 3]               ', '"model.safetensors"     ']) {
    const f = path.join(dir, 'model.safetensors.index.json');
    fs.writeFileSync(f, text);
    assert.throws(() => openStore(f), (e: unknown) => e instanceof FormatError && e.message.includes(f));
    fs.rmSync(f);
  }
  // pickles with 200k APPENDS items (regression: spread overflowed the call stack)
  const pkl = Buffer.concat([Buffer.from([0x80, 2, 0x5d, 0x28]), Buffer.alloc(200_000, 0x4e), Buffer.from([0x65, 0x2e])]);
  const pt = path.join(dir, 'x.pt');
  fs.writeFileSync(pt, makeZip([{ name: 'x/data.pkl', data: pkl }]));
  const s = openStore(pt); // a list root holds no tensors: opens empty, with a warning
  try { assert.equal(s.tensors.size, 0); assert.ok(s.warnings.length > 0); } finally { s.close(); }
});

// ---------------------------------------------------------------- (e) webview messages

test('(e) webview → host messages are validated (malformed ones are dropped)', () => {
  const junk: unknown[] = [
    undefined, null, 0, 'ready', [], [{ type: 'ready' }], {}, { type: 'nope' }, { type: 42 }, { type: 'export' },
    { type: 'export', requestId: '1', format: 'json' }, { type: 'export', requestId: 1, format: 'xlsx' }, { type: 'export', requestId: 1 },
    { type: 'log', level: 'debug', message: 'x' }, { type: 'log', level: 'info' }, { type: 'log', level: 'info', message: { toString: 1 } },
    { type: 'analyze' }, { type: 'analyze', requestId: null }, { type: 'reopenDefault', requestId: '7' }, { __proto__: { type: 'ready' } },
    Object.create(null),
  ];
  for (const m of junk) {
    const r = parseReport(m);
    const v = parseViewer(m);
    if (r) assert.equal(r.type, 'ready', `report parser accepted ${JSON.stringify(m)}`);
    if (v) assert.equal(v.type, 'ready', `viewer parser accepted ${JSON.stringify(m)}`);
  }
  assert.equal(parseReport({ type: 'export', requestId: 1, format: 'json' })?.type, 'export');
  assert.equal(parseViewer({ type: 'analyze', requestId: 3 })?.type, 'analyze');
  // huge payloads: extra fields are dropped, log text is capped
  const huge = 'x'.repeat(5_000_000);
  const log = parseReport({ type: 'log', level: 'warn', message: huge, extra: huge });
  assert.ok(log && log.type === 'log' && log.message.length <= 2000);
  assert.deepEqual(Object.keys(parseReport({ type: 'export', requestId: 2, format: 'csv', payload: huge })!).sort(), ['format', 'requestId', 'type']);
  assert.deepEqual(Object.keys(parseViewer({ type: 'ready', payload: huge })!), ['type']);
});

// ---------------------------------------------------------------- (f) CSP

test('(f) webview HTML: CSP default-src none, nonce scripts, no unsafe-inline, no remote origins', () => {
  const src = fs.readFileSync(path.join(ROOT, 'src', 'host', 'webviewHtml.ts'), 'utf8');
  assert.match(src, /default-src 'none'/);
  assert.doesNotMatch(src, /unsafe-inline|unsafe-eval|https?:\/\/(?!www\.w3\.org)/);
  // Render it with a stub `vscode` module (the file imports vscode at runtime).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const Module = require('node:module') as { _load: (req: string, ...rest: unknown[]) => unknown };
  const stub = {
    Uri: { joinPath: (u: { p: string }, ...parts: string[]) => ({ p: [u.p, ...parts].join('/'), toString() { return this.p; } }) },
  };
  const orig = Module._load;
  Module._load = function (req: string, ...rest: unknown[]) { return req === 'vscode' ? stub : orig.call(this, req, ...rest); };
  let html: string;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const mod = require('../../src/host/webviewHtml') as { webviewHtml: (w: unknown, u: unknown, o: unknown) => string };
    const webview = { cspSource: 'vscode-webview://abc', asWebviewUri: (u: { p: string }) => `vscode-webview://abc/${u.p}` };
    html = mod.webviewHtml(webview, { p: 'ext' }, { title: '<script>alert(1)</script>', script: 'report.js', styles: ['report.css'], bodyClass: '"x' });
  } finally {
    Module._load = orig;
  }
  const csp = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)![1];
  assert.match(csp, /^default-src 'none';/);
  const nonce = /script-src 'nonce-([A-Za-z0-9]+)'/.exec(csp)?.[1];
  assert.ok(nonce && nonce.length >= 16, csp);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*|https?:/);
  const scripts = html.match(/<script\b[^>]*>/g) ?? [];
  assert.ok(scripts.length >= 1 && scripts.every((s) => s.includes(`nonce="${nonce}"`)), 'every script tag carries the nonce');
  assert.doesNotMatch(html, /<script>alert/, 'title is escaped');
  assert.doesNotMatch(html, /class=""x"/, 'attributes are escaped');
});

test('rank_pattern keys that could backtrack catastrophically are matched as PEFT does, in linear time', () => {
  const t0 = performance.now();
  const hostile = { '(a+)+b': 4 };
  assert.equal(matchPattern(hostile, 'model.' + 'a'.repeat(40) + 'c'), undefined);
  assert.equal(matchPattern(hostile, 'model.layers.' + 'a'.repeat(40) + 'b'), '(a+)+b');
  assert.equal(matchPattern(hostile, 'model.layers.(a+)+b'), undefined, 're.match(r"(.*\\.)?((a+)+b)$") does not match this name');
  assert.ok(performance.now() - t0 < 100, 'no catastrophic backtracking');
  assert.equal(matchPattern({ 'q_proj|v_proj': 8 }, 'model.layers.0.self_attn.v_proj'), 'q_proj|v_proj');
});
