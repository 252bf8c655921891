/**
 * The fuzz campaign itself (used by test/unit/fuzz.test.ts for CI and bench/fuzz-long.ts for
 * longer runs): readers, harness and the seeded case generator. See fuzz.test.ts for the contract.
 */
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { FormatError } from '../../src/core/formats/errors';
import { detectCheckpoints, describeWeights, openAdapter, openStore } from '../../src/core/formats/open';
import { encodeSafetensors, SafetensorsStore, TensorStore } from '../../src/core/formats/safetensors';
import { GgufStore, GgufTensorInfo } from '../../src/core/formats/gguf';
import { openTorchCheckpoint, readZipDirectory } from '../../src/core/formats/torchzip';
import { RangeFile } from '../../src/core/formats/fileio';
import { openBaseModel } from '../../src/core/base/basemodel';
import {
  BAD_ALIGNMENTS, BAD_ALPHA_JSON, badJsonText, bigShardIndex, catastrophicPatterns, deepHeaderSafetensors, deepJson, deleteBytes, f32, flipBytes,
  ggufAdapterSeed, hostileKohya, hugeFactorFile, insertBytes, interestingU64, kohyaTensors, LFS_POINTER, makeZip, mutateGgufField,
  mutateSafetensorsHeader, overRankTensors, peftConfigWith, peftTensors, pickleFlood, pickleInjection, protoNamedPeftTensors, Prng, put,
  rankZeroHugeTensors, safetensorsRaw, safetensorsWithRawMetadata, setU32, setU64, splitSafetensors, StTensor, symlinkLoop, tinyObjectHeader,
  truncateAt, writeGguf,
} from './fuzzlib';

const ROOT = path.resolve(__dirname, '../../..');
const FIX = path.join(ROOT, 'test', 'fixtures');
const REAL = '/work/shared/realdata';

export const CASE_TIME_LIMIT_MS = 2000;
export const CAMPAIGN_HEAP_CAP = 64 * 1024 * 1024;
export const CASE_ALLOC_SLACK = 32 * 1024 * 1024;

export type Outcome = 'ok' | 'rejected' | 'crash';
export interface CaseResult { reader: string; label: string; outcome: Outcome; ms: number; error?: string; abDelta: number; size: number }

/** Known crashes left for the lead to decide (reader:label prefix -> reason). Empty when all are fixed. */
export const KNOWN_TODO: Record<string, string> = {};

// ---------------------------------------------------------------- readers (open + read every tensor)

function readAll(store: TensorStore): void {
  for (const t of store.tensors.values()) {
    if ((t as GgufTensorInfo).readable === false) continue;
    if (t.numel > 16_000_000) continue;
    store.readF32(t.name);
  }
}
function withStore(s: TensorStore): void { try { readAll(s); } finally { s.close(); } }

export const READERS: Record<string, (target: string) => void> = {
  safetensors: (p) => { withStore(SafetensorsStore.openFile(p)); describeWeights(p); },
  'sharded-index': (p) => { withStore(openStore(p)); describeWeights(p); },
  'base-model': (p) => { const b = openBaseModel(p); withStore(b.store); },
  'peft-folder': (p) => { const a = openAdapter(p); withStore(a.store); },
  'mlx-folder': (p) => { const a = openAdapter(p); withStore(a.store); },
  'kohya-file': (p) => { const a = openAdapter(p); withStore(a.store); },
  'gguf-store': (p) => { withStore(GgufStore.openFile(p)); describeWeights(p); },
  'gguf-adapter': (p) => { const a = openAdapter(p); withStore(a.store); },
  'torch-zip': (p) => { withStore(openTorchCheckpoint(p)); describeWeights(p); },
  'peft-bin-folder': (p) => { const a = openAdapter(p); withStore(a.store); },
  'torchtune-pt': (p) => { const a = openAdapter(p); withStore(a.store); },
  realdata: (p) => {
    // Whatever the seed is: adapter first (folders), then the store.
    if (fs.statSync(p).isDirectory()) { const a = openAdapter(p); withStore(a.store); return; }
    withStore(openStore(p));
  },
};

// ---------------------------------------------------------------- harness

let gcFn: (() => void) | undefined;
export function gc(): void {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  gcFn();
}

export class Campaign {
  readonly results: CaseResult[] = [];
  private n = 0;
  constructor(readonly tmpRoot: string, readonly seed: number) {}

  /** Runs one case: `build` writes the input into a fresh folder and returns the path to open. */
  run(reader: string, label: string, build: (dir: string) => string): CaseResult {
    const dir = path.join(this.tmpRoot, `c${this.n++}`);
    fs.mkdirSync(dir, { recursive: true });
    const target = build(dir);
    let size = 0;
    try { size = fs.lstatSync(target).size; } catch { /* dangling etc. */ }
    const ab0 = process.memoryUsage().arrayBuffers;
    const t0 = performance.now();
    let outcome: Outcome = 'ok';
    let error: string | undefined;
    try {
      READERS[reader](target);
    } catch (e) {
      if (e instanceof FormatError && e.message.includes(e.file) && (e.file.startsWith(dir) || dir.startsWith(e.file))) outcome = 'rejected';
      else {
        outcome = 'crash';
        error = `${(e as Error)?.constructor?.name}: ${String((e as Error)?.message ?? e).slice(0, 300)}${e instanceof FormatError ? ` [file=${e.file}]` : ''}`;
      }
    }
    const ms = performance.now() - t0;
    const abDelta = process.memoryUsage().arrayBuffers - ab0;
    // The tree walker must never throw, whatever is in the folder.
    try {
      detectCheckpoints(dir);
    } catch (e) {
      this.results.push({ reader: 'detectCheckpoints', label, outcome: 'crash', ms: 0, abDelta: 0, size, error: String(e) });
    }
    const r: CaseResult = { reader, label, outcome, ms, error, abDelta, size };
    this.results.push(r);
    fs.rmSync(dir, { recursive: true, force: true });
    return r;
  }

  table(): Record<string, Record<Outcome, number>> {
    const t: Record<string, Record<Outcome, number>> = {};
    for (const r of this.results) {
      t[r.reader] ??= { ok: 0, rejected: 0, crash: 0 };
      t[r.reader][r.outcome]++;
    }
    return t;
  }
}

// ---------------------------------------------------------------- campaign

const ST_MUTATORS = ['truncate', 'flip-header', 'flip-data', 'header-len', 'structural', 'structural', 'structural', 'bad-json', 'insert-delete'] as const;

/** Byte/structure mutation of a safetensors file. */
export function mutateSafetensors(r: Prng, b: Uint8Array): [string, Uint8Array] {
  const n = Number(Buffer.from(b).readBigUInt64LE(0));
  const m = r.pick(ST_MUTATORS);
  switch (m) {
    case 'truncate': { const at = r.chance(0.5) ? r.int(8 + n + 1) : r.int(b.length); return [`truncate@${at}`, truncateAt(b, at)]; }
    case 'flip-header': return ['flip-header', flipBytes(r, b, 0, 8 + n, r.range(1, 6))];
    case 'flip-data': return ['flip-data', flipBytes(r, b, 8 + n, b.length, r.range(1, 16))];
    case 'header-len': { const v = interestingU64(r, b.length); return [`header-len=${v}`, setU64(b, 0, v)]; }
    case 'structural': return mutateSafetensorsHeader(r, b);
    case 'bad-json': {
      const { data } = splitSafetensors(b);
      const [label, text] = badJsonText(r, Buffer.from(b.subarray(8, 8 + n)).toString('utf8'));
      const hb = Buffer.from(text, 'utf8');
      const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(hb.length));
      return [`bad-json:${label}`, Buffer.concat([len, hb, data])];
    }
    default: return r.chance(0.5)
      ? ['insert', insertBytes(b, r.int(b.length), Uint8Array.from({ length: r.range(1, 9) }, () => r.int(256)))]
      : ['delete', deleteBytes(b, r.int(b.length), r.range(1, 9))];
  }
}

function mlxTensors(r: Prng): StTensor[] {
  const ts: StTensor[] = [];
  for (let i = 0; i < 2; i++) {
    ts.push({ name: `model.layers.${i}.self_attn.q_proj.lora_a`, dtype: 'F32', shape: [8, 2], data: f32(r.normals(16)) });
    ts.push({ name: `model.layers.${i}.self_attn.q_proj.lora_b`, dtype: 'BF16', shape: [2, 8], data: new Uint8Array(32).fill(0x3f) });
  }
  return ts;
}

const PEFT_CONFIG_JSON = JSON.stringify({
  peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'], rank_pattern: { 'layers.1.self_attn.q_proj': 2 }, alpha_pattern: {},
  fan_in_fan_out: false, use_rslora: false, base_model_name_or_path: '../base',
});
const MLX_CONFIG_JSON = JSON.stringify({ fine_tune_type: 'lora', lora_parameters: { rank: 2, scale: 20, keys: ['self_attn.q_proj'] } });

/** Mutations of a JSON config: invalid JSON, deep nesting, wrong field types. */
function mutateConfig(r: Prng, valid: string): [string, string] {
  if (r.chance(0.5)) return badJsonText(r, valid);
  const cfg = JSON.parse(valid) as Record<string, unknown>;
  const keys = ['r', 'lora_alpha', 'rank_pattern', 'alpha_pattern', 'target_modules', 'peft_type', 'use_rslora', 'fan_in_fan_out', 'lora_parameters', 'modules_to_save', 'base_model_name_or_path', 'init_lora_weights'];
  const k = r.pick(keys);
  const v = r.pick<unknown>([null, 0, -1, 1e308, '8', [], {}, { '.*': 'x' }, { '(': 1 }, { 'q_proj': 0 }, true, 'ADALORA', 'PREFIX_TUNING', 'pissa', [1, [2]], 2 ** 53 + 1]);
  if (r.chance(0.2)) delete cfg[k]; else cfg[k] = v;
  return [`config:${k}=${JSON.stringify(v)?.slice(0, 20)}`, JSON.stringify(cfg)];
}

/** Corruptions of a torch zip checkpoint (pickle bytes, zip structures, truncation). */
function mutateTorchZip(r: Prng, seed: Uint8Array, entries: { name: string; data: Uint8Array }[]): [string, Uint8Array] {
  const pklIdx = entries.findIndex((e) => e.name.endsWith('/data.pkl'));
  const pkl = entries[pklIdx].data;
  const rebuilt = (data: Uint8Array): Uint8Array => makeZip(entries.map((e, i) => (i === pklIdx ? { name: e.name, data } : e)));
  const eocd = seed.length - 22;
  switch (r.int(8)) {
    case 0: return ['pickle-flip', rebuilt(flipBytes(r, pkl, 0, pkl.length, r.range(1, 4)))];
    case 1: { const at = r.int(pkl.length); return [`pickle-truncate@${at}`, rebuilt(truncateAt(pkl, at))]; }
    case 2: { const [label, bytes] = pickleInjection(r); return [label, rebuilt(bytes)]; }
    case 3: { // opcode replaced
      const out = Uint8Array.from(pkl); const at = r.int(out.length);
      out[at] = r.pick([0x63, 0x69, 0x52, 0x81, 0x62, 0x51, 0x93, 0x8d, 0x8e, 0x58, 0x2e, 0x28, 0x65, 0x75, 0x31, 0x6a, 0x72, 0x94]);
      return [`pickle-opcode@${at}=${out[at].toString(16)}`, rebuilt(out)];
    }
    case 4: { // EOCD fields: count, cd size, cd offset
      const field = r.pick([8, 10, 12, 16]);
      const v = field < 12 ? r.pick([0, 1, 0xffff, 0xfffe]) : r.pick([0, 1, seed.length, seed.length + 1, 0xffffffff, 0x7fffffff]);
      const b = Buffer.from(seed);
      if (field < 12) b.writeUInt16LE(v, eocd + field); else b.writeUInt32LE(v >>> 0, eocd + field);
      return [`zip-eocd+${field}=${v}`, b];
    }
    case 5: { // central directory bytes
      const cdOff = Buffer.from(seed).readUInt32LE(eocd + 16);
      return ['zip-cd-flip', flipBytes(r, seed, cdOff, eocd, r.range(1, 8))];
    }
    case 6: { const at = r.int(seed.length); return [`zip-truncate@${at}`, truncateAt(seed, at)]; }
    default: { // local header name/extra length fields
      const b = Buffer.from(seed);
      const lho = r.pick([...Array(entries.length).keys()].map((i) => {
        let off = 0; for (let j = 0; j < i; j++) off += 30 + Buffer.byteLength(entries[j].name) + entries[j].data.length; return off;
      }));
      b.writeUInt16LE(r.pick([0xffff, 0, 1, 500]), lho + r.pick([26, 28]));
      return ['zip-local-header', b];
    }
  }
}

function zipEntries(file: string): { name: string; data: Uint8Array }[] {
  const f = RangeFile.open(file);
  try {
    return readZipDirectory(f).map((e) => ({ name: e.name, data: f.read(e.dataOffset, e.size) }));
  } finally { f.close(); }
}

const sha = (p: string): string => crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');

/** Small realdata seed files (< 4 MB), when /work/shared/realdata is present. */
function realSeeds(): string[] {
  if (!fs.existsSync(REAL)) return [];
  const out: string[] = [];
  const walk = (d: string, depth: number): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory() && depth < 3 && !e.name.startsWith('_')) walk(p, depth + 1);
      else if (e.isFile() && /\.(safetensors|gguf|pt|bin|pth)$/.test(e.name) && !/^(training_args|optimizer|scheduler|rng_state)/.test(e.name)) {
        if (fs.statSync(p).size < 4_000_000) out.push(p);
      }
    }
  };
  walk(REAL, 0);
  return out.sort();
}

/**
 * Runs the campaign: `per` scales the number of cases per reader (1 = CI size, ~2000 cases).
 */
export function runCampaign(seed: number, per = 1): Campaign {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-fuzz-'));
  const c = new Campaign(tmp, seed);
  const r = new Prng(seed);
  const N = (k: number): number => Math.round(k * per);

  // --- safetensors (PEFT-keyed) ---
  const st = encodeSafetensors(peftTensors(r), { format: 'pt' });
  for (let i = 0; i < N(320); i++) {
    const [label, bytes] = mutateSafetensors(r, st);
    c.run('safetensors', label, (d) => put(d, 'w.safetensors', bytes));
  }
  // --- PEFT folder: weights or config mutated ---
  for (let i = 0; i < N(240); i++) {
    const weights = r.chance(0.5);
    const [label, bytes] = weights ? mutateSafetensors(r, st) : ['config', st] as [string, Uint8Array];
    const [clabel, cfg] = weights ? ['', PEFT_CONFIG_JSON] : mutateConfig(r, PEFT_CONFIG_JSON);
    c.run('peft-folder', weights ? label : clabel, (d) => {
      put(d, 'adapter_config.json', cfg);
      put(d, 'adapter_model.safetensors', bytes);
      return r.chance(0.2) ? path.join(d, 'adapter_model.safetensors') : d;
    });
  }
  // --- mlx folder ---
  const mlx = encodeSafetensors(mlxTensors(r));
  for (let i = 0; i < N(100); i++) {
    const weights = r.chance(0.6);
    const [label, bytes] = weights ? mutateSafetensors(r, mlx) : ['config', mlx] as [string, Uint8Array];
    const [clabel, cfg] = weights ? ['', MLX_CONFIG_JSON] : mutateConfig(r, MLX_CONFIG_JSON);
    c.run('mlx-folder', weights ? label : clabel, (d) => { put(d, 'adapter_config.json', cfg); put(d, 'adapters.safetensors', bytes); return d; });
  }
  // --- kohya single file (alpha scalars, F16 down) ---
  const ko = encodeSafetensors(kohyaTensors(r), { ss_network_dim: '2', ss_network_alpha: '2' });
  for (let i = 0; i < N(200); i++) {
    const [label, bytes] = mutateSafetensors(r, ko);
    c.run('kohya-file', label, (d) => put(d, 'lora.safetensors', bytes));
  }
  // --- sharded index + base model folder ---
  const shard1 = encodeSafetensors([{ name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'F32', shape: [8, 8], data: f32(r.normals(64)) }]);
  const shard2 = encodeSafetensors([{ name: 'model.layers.1.self_attn.q_proj.weight', dtype: 'BF16', shape: [8, 8], data: new Uint8Array(128) }]);
  const S1 = 'model-00001-of-00002.safetensors', S2 = 'model-00002-of-00002.safetensors';
  const index = { metadata: { total_size: 384 }, weight_map: { 'model.layers.0.self_attn.q_proj.weight': S1, 'model.layers.1.self_attn.q_proj.weight': S2 } };
  for (let i = 0; i < N(180); i++) {
    const reader = r.chance(0.6) ? 'sharded-index' : 'base-model';
    let s1: Uint8Array = shard1, idxText = JSON.stringify(index), cfgText = JSON.stringify({ model_type: 'llama', hidden_size: 8, num_attention_heads: 2 });
    let label: string;
    const k = r.int(4);
    if (k === 0) [label, s1] = mutateSafetensors(r, shard1);
    else if (k === 1) [label, idxText] = badJsonText(r, idxText);
    else if (k === 2) {
      const wm = { ...index.weight_map } as Record<string, unknown>;
      const v = r.pick<unknown>(['../escape.safetensors', '/etc/passwd', '', '.', 'sub', 'missing.safetensors', 3, null, S2, 'w.safetensors\u0000x']);
      wm[r.pick(Object.keys(wm))] = v;
      const top = r.chance(0.2) ? { weight_map: r.pick<unknown>([null, [], 'x', 5]) } : { ...index, weight_map: wm };
      label = `weight_map=${JSON.stringify(v)}`;
      idxText = JSON.stringify(top);
    } else [label, cfgText] = badJsonText(r, cfgText);
    c.run(reader, label, (d) => {
      put(d, 'config.json', cfgText);
      put(d, S1, s1); put(d, S2, shard2);
      fs.mkdirSync(path.join(d, 'sub'));
      const idx = put(d, 'model.safetensors.index.json', idxText);
      return reader === 'sharded-index' ? idx : d;
    });
  }
  // --- GGUF store + adapter ---
  const gg = ggufAdapterSeed(r);
  const ggNoAlpha = ggufAdapterSeed(r, { alpha: false });
  for (let i = 0; i < N(420); i++) {
    const reader = r.chance(0.6) ? 'gguf-store' : 'gguf-adapter';
    const seedG = r.chance(0.15) ? ggNoAlpha : gg;
    const k = r.int(10);
    let label: string, bytes: Uint8Array;
    if (k < 6) [label, bytes] = mutateGgufField(r, seedG);
    else if (k === 6) { const at = r.int(seedG.bytes.length); [label, bytes] = [`truncate@${at}`, truncateAt(seedG.bytes, at)]; }
    else if (k === 7) [label, bytes] = ['flip', flipBytes(r, seedG.bytes, 0, seedG.bytes.length, r.range(1, 8))];
    else if (k === 8) {
      // invalid UTF-8 in a key / string value
      const f = r.pick(seedG.fields.filter((x) => x.kind === 'strLen'));
      const out = Buffer.from(seedG.bytes); if (f.at + 9 < out.length) out[f.at + 8] = r.pick([0xff, 0xc0, 0x80, 0xed]);
      [label, bytes] = ['gguf:bad-utf8', out];
    } else {
      // crafted headers: huge counts, nested arrays, alignment values
      const kvs = r.pick([
        [{ key: 'general.alignment', type: 'u32', value: r.pick([0, 3, 1, 2 ** 31, 48]) }],
        [{ key: 'general.type', type: 'u32', value: 7 }],
        [{ key: 'general.type', type: 'string', value: 'adapter' }, { key: 'adapter.type', type: 'string', value: 'ia3' }],
        [{ key: 'general.type', type: 'string', value: 'adapter' }, { key: 'a', type: 'u32[]', value: Array.from({ length: 2000 }, (_, j) => j) }],
      ] as Parameters<typeof writeGguf>[0][]);
      const ts = [{ name: 'blk.0.attn_q.weight.lora_a', ne: r.pick([[32, 2], [32, 2, 1, 1], [31, 2], [2]]), type: r.pick([0, 8, 16]), data: new Uint8Array(256) },
        { name: r.pick(['blk.0.attn_q.weight.lora_b', 'blk.0.attn_q.weight.lora_a']), ne: [3, 32], type: 0, data: new Uint8Array(384) }];
      [label, bytes] = ['gguf:crafted', writeGguf(kvs, ts).bytes];
    }
    c.run(reader, label, (d) => put(d, 'x.gguf', bytes));
  }
  // --- torch zip (.pt store), legacy PEFT .bin folder, torchtune .pt adapter ---
  const tinyPt = fs.readFileSync(path.join(FIX, 'torch_tiny.pt'));
  const tinyEntries = zipEntries(path.join(FIX, 'torch_tiny.pt'));
  const ttPt = fs.readFileSync(path.join(FIX, 'torchtune_lora.pt'));
  const ttEntries = zipEntries(path.join(FIX, 'torchtune_lora.pt'));
  for (let i = 0; i < N(300); i++) {
    const [label, bytes] = mutateTorchZip(r, tinyPt, tinyEntries);
    c.run('torch-zip', label, (d) => put(d, 'ckpt.pt', bytes));
  }
  for (let i = 0; i < N(100); i++) {
    const [label, bytes] = mutateTorchZip(r, tinyPt, tinyEntries);
    c.run('peft-bin-folder', label, (d) => { put(d, 'adapter_config.json', PEFT_CONFIG_JSON); put(d, 'adapter_model.bin', bytes); return d; });
  }
  for (let i = 0; i < N(100); i++) {
    const [label, bytes] = mutateTorchZip(r, ttPt, ttEntries);
    c.run('torchtune-pt', label, (d) => put(d, 'lora.pt', bytes));
  }
  // --- placeholders: LFS pointers, symlink text, dangling links, loops, empty, dirs named like files ---
  const targets: [string, string, (d: string, f: string) => string][] = [
    ['safetensors', 'w.safetensors', (_d, f) => f],
    ['gguf-store', 'x.gguf', (_d, f) => f],
    ['torch-zip', 'ckpt.pt', (_d, f) => f],
    ['kohya-file', 'lora.safetensors', (_d, f) => f],
    ['sharded-index', 'model.safetensors.index.json', (_d, f) => f],
    ['peft-folder', 'adapter_model.safetensors', (d) => { put(d, 'adapter_config.json', PEFT_CONFIG_JSON); return d; }],
    ['peft-folder', 'adapter_config.json', (d) => { put(d, 'adapter_model.safetensors', st); return d; }],
    ['peft-bin-folder', 'adapter_model.bin', (d) => { put(d, 'adapter_config.json', PEFT_CONFIG_JSON); return d; }],
    ['base-model', 'model.safetensors', (d) => { put(d, 'config.json', '{}'); return d; }],
    ['base-model', 'config.json', (d) => { put(d, 'model.safetensors', shard1); return d; }],
  ];
  const specials: [string, (f: string) => void][] = [
    ['lfs-pointer', (f) => put(path.dirname(f), path.basename(f), LFS_POINTER)],
    ['symlink-text', (f) => put(path.dirname(f), path.basename(f), '../../../blobs/4d7a214614ab2935c943f9e0ff69d22eadbb8f32')],
    ['dangling-symlink', (f) => fs.symlinkSync('/nonexistent/lora-lens/blob', f)],
    ['symlink-loop', (f) => fs.symlinkSync(path.basename(f), f)],
    ['symlink-to-dir', (f) => { fs.mkdirSync(`${f}.d`); fs.symlinkSync(`${f}.d`, f); }],
    ['empty', (f) => put(path.dirname(f), path.basename(f), '')],
    ['crlf-2-bytes', (f) => put(path.dirname(f), path.basename(f), '\r\n')],
    ['html-page', (f) => put(path.dirname(f), path.basename(f), '<!DOCTYPE html><html><body>404</body></html>')],
    ['directory', (f) => fs.mkdirSync(f)],
    ['missing', () => undefined],
  ];
  for (let rep = 0; rep < Math.max(1, Math.round(per)); rep++) {
    for (const [reader, name, finish] of targets) {
      for (const [label, make] of specials) {
        c.run(reader, `special:${label}:${name}`, (d) => { const f = path.join(d, name); make(f); return finish(d, f); });
      }
    }
  }
  // --- hostile inputs by class (issue 9): every class of docs/reliability.md "Limits" gets seeded cases ---
  runHostile(c, r, N, st, tinyEntries);
  // --- real data seeds ---
  const seeds = realSeeds();
  const before = new Map(seeds.map((s) => [s, sha(s)]));
  for (const s of seeds) {
    const b = fs.readFileSync(s);
    const isSt = s.endsWith('.safetensors');
    const isGguf = s.endsWith('.gguf');
    for (let i = 0; i < N(6); i++) {
      let label: string, bytes: Uint8Array;
      if (isSt && b.length >= 8 && Number(b.readBigUInt64LE(0)) + 8 <= b.length) [label, bytes] = mutateSafetensors(r, b);
      else if (isGguf && b.length > 24) {
        const k = r.int(3);
        if (k === 0) [label, bytes] = [`setu64@8`, setU64(b, 8, interestingU64(r, b.length))];
        else if (k === 1) [label, bytes] = ['flip-head', flipBytes(r, b, 0, Math.min(b.length, 4096), r.range(1, 4))];
        else { const at = r.int(b.length); [label, bytes] = [`truncate@${at}`, truncateAt(b, at)]; }
      } else if (b.length > 4 && b[0] === 0x50 && b[1] === 0x4b) {
        const k = r.int(3);
        if (k === 0) [label, bytes] = ['zip-cd-flip', flipBytes(r, b, Math.max(0, b.length - 4096), b.length, r.range(1, 6))];
        else if (k === 1) [label, bytes] = ['setu32-eocd', setU32(b, b.length - 6, r.pick([0, 0xffffffff, b.length]))];
        else { const at = r.int(b.length); [label, bytes] = [`truncate@${at}`, truncateAt(b, at)]; }
      } else { const at = r.int(b.length + 1); [label, bytes] = [`truncate@${at}`, truncateAt(b, at)]; }
      const rel = path.relative(REAL, s);
      const cfg = path.join(path.dirname(s), 'adapter_config.json');
      const asFolder = fs.existsSync(cfg) && r.chance(0.5);
      c.run('realdata', `${rel}:${label}`, (d) => {
        const f = put(d, path.basename(s), bytes);
        if (asFolder) { fs.copyFileSync(cfg, path.join(d, 'adapter_config.json')); return d; }
        return f;
      });
    }
  }
  for (const s of seeds) assert.equal(sha(s), before.get(s), `real-data seed ${s} must not be modified`);
  fs.rmSync(tmp, { recursive: true, force: true });
  return c;
}


/**
 * Seeded cases for each class of hostile input of issue 9 (see fuzzlib.ts "hostile inputs"). The
 * campaign contract applies (FormatError naming a file of the case, < 2 s, bounded memory);
 * safety.test.ts checks each class's specific promise (message, no output, warnings).
 */
export function runHostile(c: Campaign, r: Prng, N: (k: number) => number, st: Uint8Array, tinyEntries: { name: string; data: Uint8Array }[]): void {
  const cfg = PEFT_CONFIG_JSON;
  const folder = (d: string, weights: Uint8Array, config = cfg): string => { put(d, 'adapter_config.json', config); put(d, 'adapter_model.safetensors', weights); return d; };
  for (let i = 0; i < N(24); i++) {
    // deep JSON: header shape / __metadata__ / offsets / dtype, adapter_config.json field, shard index metadata
    const depth = r.pick([200, 5000, 20_000, 100_000]);
    const k = r.int(3);
    if (k === 0) { const [label, b] = deepHeaderSafetensors(r, depth); c.run('safetensors', `hostile:${label}`, (d) => put(d, 'w.safetensors', b)); }
    else if (k === 1) {
      const field = r.pick(['target_modules', 'rank_pattern', 'lora_alpha', 'r', 'modules_to_save', 'x']);
      c.run('peft-folder', `hostile:deep-config-${field}@${depth}`, (d) => folder(d, st, peftConfigWith(field, deepJson(depth, r.chance(0.5) ? 'array' : 'object'))));
    } else {
      const shard = encodeSafetensors([{ name: 't', dtype: 'F32', shape: [1], data: f32([1]) }]);
      c.run('sharded-index', `hostile:deep-index-metadata@${depth}`, (d) => { put(d, 's.safetensors', shard); return put(d, 'm.safetensors.index.json', `{"metadata":{"x":${deepJson(depth)}},"weight_map":{"t":"s.safetensors"}}`); });
    }
  }
  // rank 0 with a 2^40 dim; r > min(in, out); a factor over the per-factor cap (sparse file)
  for (const huge of [2 ** 40, 2 ** 31, 2 ** 53 - 1]) c.run('peft-folder', `hostile:rank0-dim${huge}`, (d) => folder(d, safetensorsRaw(rankZeroHugeTensors(huge))));
  for (let i = 0; i < N(4); i++) {
    const rank = r.pick([3, 64, 4096]);
    c.run('peft-folder', `hostile:rank${rank}-on-2x2`, (d) => folder(d, safetensorsRaw(overRankTensors(r, rank, 2, 2))));
  }
  c.run('peft-folder', 'hostile:factor-2^28-sparse', (d) => { hugeFactorFile(path.join(d, 'adapter_model.safetensors'), 2 ** 28); put(d, 'adapter_config.json', cfg); return d; });
  // names are data: modules named like Object.prototype members; kohya metadata of the wrong types
  for (let i = 0; i < N(4); i++) {
    c.run('peft-folder', 'hostile:proto-module-names', (d) => folder(d, safetensorsRaw(protoNamedPeftTensors(r))));
    const h = hostileKohya(r);
    c.run('kohya-file', `hostile:kohya-metadata ${h.headerExtra.slice(0, 30)}`, (d) => put(d, 'lora.safetensors', safetensorsWithRawMetadata(h.tensors, h.headerExtra)));
  }
  // config values: catastrophic pattern keys, lora_alpha of the wrong type
  for (let i = 0; i < N(4); i++) {
    const { keys } = catastrophicPatterns(r);
    const pats = Object.fromEntries(keys.map((k) => [k, 4]));
    c.run('peft-folder', 'hostile:catastrophic-patterns', (d) => folder(d, st, JSON.stringify({ ...JSON.parse(cfg), rank_pattern: pats, alpha_pattern: pats })));
  }
  for (const v of BAD_ALPHA_JSON) c.run('peft-folder', `hostile:lora_alpha=${v}`, (d) => folder(d, st, peftConfigWith('lora_alpha', v)));
  // huge headers of tiny objects (refused by the value cap before any object is built)
  // (just over the caps, so that the generated text stays small: 19 MB, 3 MB and 8 MB)
  for (let i = 0; i < N(3); i++) {
    const kind = r.pick(['metadata', 'shape', 'tensors'] as const);
    const [label, b] = tinyObjectHeader(r, kind === 'tensors' ? 140_000 : 1_600_000, kind);
    c.run('safetensors', `hostile:${label}`, (d) => put(d, 'w.safetensors', b));
  }
  // a shard index with many tensors (linear: one Map lookup per entry; safety.test.ts times 200k and refuses 300k)
  { const big = bigShardIndex(10_000); c.run('sharded-index', 'hostile:index-10k', (d) => { put(d, 's.safetensors', big.shard); return put(d, 'm.safetensors.index.json', big.index); }); }
  // pickle opcode floods inside a torch zip
  const pklIdx = tinyEntries.findIndex((e) => e.name.endsWith('/data.pkl'));
  for (const op of [0x7d, 0x5d, 0x4e, 0x28, 0x29, 0x88]) {
    const bytes = makeZip(tinyEntries.map((e, j) => (j === pklIdx ? { name: e.name, data: pickleFlood(op, 600_000) } : e)));
    c.run('torch-zip', `hostile:pickle-flood-0x${op.toString(16)}`, (d) => put(d, 'ckpt.pt', bytes));
  }
  // GGUF: alignments llama.cpp refuses, tensor names that are Object.prototype members
  for (const al of BAD_ALIGNMENTS) {
    const g = writeGguf([{ key: 'general.type', type: 'string', value: 'adapter' }, { key: 'general.alignment', type: al.type, value: al.value }],
      [{ name: 'blk.0.attn_q.weight.lora_a', ne: [32, 2], type: 0, data: new Uint8Array(256) }, { name: 'blk.0.attn_q.weight.lora_b', ne: [2, 32], type: 0, data: new Uint8Array(256) }], 32);
    c.run('gguf-store', `hostile:alignment=${al.type}:${al.value}`, (d) => put(d, 'x.gguf', g.bytes));
  }
  {
    const g = writeGguf([{ key: 'general.type', type: 'string', value: 'adapter' }, { key: 'adapter.type', type: 'string', value: 'lora' }],
      [{ name: 'blk.0.constructor.lora_a', ne: [32, 2], type: 0, data: f32(r.normals(64)) }, { name: 'blk.0.constructor.lora_b', ne: [2, 32], type: 0, data: f32(r.normals(64)) }]);
    c.run('gguf-adapter', 'hostile:gguf-constructor', (d) => put(d, 'x.gguf', g.bytes));
  }
  // symlink loops spanning two entries, for each kind of target
  for (const [reader, name, finish] of [
    ['safetensors', 'w.safetensors', (_d: string, f: string) => f],
    ['peft-folder', 'adapter_model.safetensors', (d: string) => { put(d, 'adapter_config.json', cfg); return d; }],
    ['peft-folder', 'adapter_config.json', (d: string) => { put(d, 'adapter_model.safetensors', st); return d; }],
    ['gguf-store', 'x.gguf', (_d: string, f: string) => f],
  ] as [string, string, (d: string, f: string) => string][]) {
    c.run(reader, `hostile:symlink-loop2:${name}`, (d) => finish(d, symlinkLoop(d, name)));
  }
}
