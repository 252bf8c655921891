/**
 * Fuzzing helpers for the reader hardening campaign (test/unit/fuzz.test.ts, bench/fuzz-long.ts):
 * a seeded PRNG, byte-level mutators, and small writers for seed files (safetensors via
 * encodeSafetensors, GGUF with a map of every length/count field, torch zip + pickle) so that
 * structure-aware mutators can hit exactly the fields that matter (lengths near 2^64, counts, dims).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DType } from '../../src/core/formats/dtype';

// ---------------------------------------------------------------- PRNG

/** mulberry32: small, fast, deterministic 32-bit PRNG. */
export class Prng {
  private s: number;
  constructor(seed: number) { this.s = seed >>> 0 || 0x9e3779b9; }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number { return Math.floor(this.next() * n); }
  range(lo: number, hi: number): number { return lo + this.int(hi - lo + 1); }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]; }
  chance(p: number): boolean { return this.next() < p; }
  normals(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.next() + this.next() + this.next() - 1.5) * 0.8;
    return out;
  }
}

// ---------------------------------------------------------------- interesting values

/** 64-bit values that break length arithmetic: near 2^64, 2^63, 2^53, 2^32, and small. */
export function interestingU64(r: Prng, fileSize: number): bigint {
  const cands: bigint[] = [
    (1n << 64n) - 1n, (1n << 64n) - 2n, (1n << 63n), (1n << 63n) - 1n, (1n << 63n) + 1n,
    (1n << 53n), (1n << 53n) + 1n, (1n << 53n) - 1n, (1n << 32n), (1n << 32n) - 1n, (1n << 31n),
    0n, 1n, 2n, 7n, BigInt(fileSize), BigInt(fileSize) + 1n, BigInt(Math.max(0, fileSize - 1)),
    BigInt(Math.max(0, fileSize - 8)), BigInt(Math.max(0, fileSize - 9)), BigInt(fileSize) * 2n, 100_000_001n, 1_048_577n, 10_000_001n,
  ];
  return r.pick(cands);
}

/** JSON values for shape dims: huge, negative, float, wrong type. */
export function weirdDim(r: Prng): unknown {
  return r.pick<unknown>([
    2 ** 53, 2 ** 53 + 2, 2 ** 64, 1e300, -1, -(2 ** 31), 0.5, 1.5, NaN, null, '4', [], {}, true, 2 ** 31, 2 ** 32 + 1, 0, 1, 4096, 1e6,
  ]);
}

export const WEIRD_DTYPES: readonly unknown[] = ['F33', 'f32', '', 'Q4_K', 'F8_E4M3', 'BOOL', 'U64', 'I64', 'F64', 'BF16', null, 3, ['F32'], 'F32\u0000'];

// ---------------------------------------------------------------- byte mutators

export function truncateAt(b: Uint8Array, at: number): Uint8Array {
  return b.slice(0, Math.max(0, Math.min(b.length, at)));
}

export function flipBytes(r: Prng, b: Uint8Array, lo: number, hi: number, count: number): Uint8Array {
  const out = Uint8Array.from(b);
  hi = Math.min(hi, out.length);
  if (hi <= lo) return out;
  for (let i = 0; i < count; i++) {
    const p = lo + r.int(hi - lo);
    out[p] = r.chance(0.5) ? out[p] ^ (1 << r.int(8)) : r.int(256);
  }
  return out;
}

export function setU64(b: Uint8Array, at: number, v: bigint): Uint8Array {
  const out = Buffer.from(b);
  if (at + 8 <= out.length) out.writeBigUInt64LE(BigInt.asUintN(64, v), at);
  return out;
}

export function setU32(b: Uint8Array, at: number, v: number): Uint8Array {
  const out = Buffer.from(b);
  if (at + 4 <= out.length) out.writeUInt32LE(v >>> 0, at);
  return out;
}

export function insertBytes(b: Uint8Array, at: number, ins: Uint8Array): Uint8Array {
  return Buffer.concat([b.subarray(0, at), ins, b.subarray(at)]);
}

export function deleteBytes(b: Uint8Array, at: number, n: number): Uint8Array {
  return Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + n))]);
}

// ---------------------------------------------------------------- safetensors

export interface StTensor { name: string; dtype: DType; shape: number[]; data: Uint8Array }

export function f32(a: ArrayLike<number>): Uint8Array { return new Uint8Array(Float32Array.from(a).buffer); }

/** A PEFT-keyed adapter with `mods` modules of rank `r` (F32). */
export function peftTensors(r: Prng, mods = 2, rank = 2, dim = 8): StTensor[] {
  const ts: StTensor[] = [];
  for (let i = 0; i < mods; i++) {
    const base = `base_model.model.model.layers.${i}.self_attn.q_proj`;
    ts.push({ name: `${base}.lora_A.weight`, dtype: 'F32', shape: [rank, dim], data: f32(r.normals(rank * dim)) });
    ts.push({ name: `${base}.lora_B.weight`, dtype: 'F32', shape: [dim, rank], data: f32(r.normals(dim * rank)) });
  }
  return ts;
}

/** kohya-keyed LoRA with alpha scalars. */
export function kohyaTensors(r: Prng, mods = 2, rank = 2, dim = 8): StTensor[] {
  const ts: StTensor[] = [];
  for (let i = 0; i < mods; i++) {
    const base = `lora_unet_down_blocks_0_attentions_${i}_transformer_blocks_0_attn1_to_q`;
    ts.push({ name: `${base}.lora_down.weight`, dtype: 'F16', shape: [rank, dim], data: new Uint8Array(rank * dim * 2).fill(0x3c) });
    ts.push({ name: `${base}.lora_up.weight`, dtype: 'F32', shape: [dim, rank], data: f32(r.normals(dim * rank)) });
    ts.push({ name: `${base}.alpha`, dtype: 'F32', shape: [], data: f32([rank]) });
  }
  return ts;
}

export function splitSafetensors(b: Uint8Array): { header: Record<string, unknown>; data: Uint8Array; n: number } {
  const n = Number(Buffer.from(b).readBigUInt64LE(0));
  const header = JSON.parse(Buffer.from(b.subarray(8, 8 + n)).toString('utf8')) as Record<string, unknown>;
  return { header, data: b.subarray(8 + n), n };
}

export function joinSafetensors(headerText: string, data: Uint8Array): Uint8Array {
  const hb = Buffer.from(headerText, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(hb.length));
  return Buffer.concat([len, hb, data]);
}

/** Structure-aware mutation of one tensor entry of a safetensors file. Returns [label, bytes]. */
export function mutateSafetensorsHeader(r: Prng, b: Uint8Array): [string, Uint8Array] {
  const { header, data } = splitSafetensors(b);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const name = r.pick(names);
  const e = { ...(header[name] as { dtype: unknown; shape: unknown[]; data_offsets: unknown[] }) };
  header[name] = e;
  const kind = r.int(9);
  let label: string;
  switch (kind) {
    case 0: { // shape dim
      const shape = [...e.shape];
      if (shape.length === 0) shape.push(weirdDim(r)); else shape[r.int(shape.length)] = weirdDim(r);
      e.shape = shape; label = 'shape-dim'; break;
    }
    case 1: e.dtype = r.pick(WEIRD_DTYPES); label = 'dtype'; break;
    case 2: { // offsets outside the file
      const big = r.pick([data.length + 1, data.length * 2, 2 ** 53, 2 ** 64, -1, 1.5]);
      e.data_offsets = r.chance(0.5) ? [e.data_offsets[0], big] : [big, big]; label = 'offsets-outside'; break;
    }
    case 3: { // overlap: copy another tensor's offsets
      const other = header[r.pick(names)] as { data_offsets: unknown[] };
      e.data_offsets = [...other.data_offsets];
      label = 'offsets-overlap'; break;
    }
    case 4: e.data_offsets = r.pick<unknown>([[1], [0, 0, 0], 'x', null, [5, 1], [0, -0], [[0], [4]]]) as unknown[]; label = 'offsets-shape'; break;
    case 5: e.shape = r.pick<unknown>(['4', null, {}, [[2]], new Array(70).fill(2), [2 ** 26, 2 ** 26, 2 ** 26]]) as unknown[]; label = 'shape-type'; break;
    case 6: header[name] = r.pick<unknown>([null, 3, 'x', [], true]); label = 'entry-type'; break;
    case 7: header.__metadata__ = r.pick<unknown>([3, 'x', [], { a: 1 }, { a: { b: [1] } }, null]); label = 'metadata'; break;
    default: { // move offsets by a small amount (holes/overlaps)
      const d = r.pick([-8, -4, -1, 1, 4, 8]);
      const [a0, a1] = e.data_offsets as number[];
      e.data_offsets = [a0 + d, a1 + d]; label = 'offsets-shift'; break;
    }
  }
  return [`st-header:${label}`, joinSafetensors(JSON.stringify(header), data)];
}

/** Invalid / pathological JSON headers (deep nesting, junk, wrong top-level types). */
export function badJsonText(r: Prng, valid: string): [string, string] {
  switch (r.int(8)) {
    case 0: { const d = r.pick([1000, 100_000, 200_000]); return [`deep-arrays-${d}`, `{"a":${'['.repeat(d)}${']'.repeat(d)}}`]; }
    case 1: { const d = r.pick([1000, 100_000]); return [`deep-objects-${d}`, `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`]; }
    case 2: { const d = 100_000; return ['deep-unclosed', `{"a":${'['.repeat(d)}`]; }
    case 3: return ['truncated-json', valid.slice(0, r.int(valid.length))];
    case 4: return ['top-level', r.pick(['null', '[]', '1', '"s"', 'true', '[{}]', 'null' + ' '.repeat(20), '[1,2,3]' + ' '.repeat(20)])];
    case 5: return ['not-json', r.pick(['{a:1}', "{'a':1}", '{"a":1,}', '{"a":NaN}', '{"a":1e999999}', '{"\\ud800":1}'])];
    case 6: { const at = r.int(valid.length); return ['json-byte', valid.slice(0, at) + String.fromCharCode(r.int(256)) + valid.slice(at + 1)]; }
    default: return ['huge-number', valid.replace(/\d+/, '1' + '0'.repeat(400))];
  }
}

// ---------------------------------------------------------------- GGUF writer with a field map

export type GgufField = { kind: 'tensorCount' | 'kvCount' | 'strLen' | 'arrCount' | 'arrType' | 'kvType' | 'nDims' | 'ne' | 'ggmlType' | 'offset' | 'version'; at: number; size: 4 | 8 };

export interface GgufKV { key: string; type: 'u32' | 'f32' | 'string' | 'str[]' | 'u32[]'; value: number | string | string[] | number[] }
export interface GgufTensorSpec { name: string; ne: number[]; type: number; data: Uint8Array }

export function writeGguf(kvs: GgufKV[], tensors: GgufTensorSpec[], align = 32): { bytes: Buffer; fields: GgufField[] } {
  const parts: Buffer[] = [];
  const fields: GgufField[] = [];
  let pos = 0;
  const push = (b: Buffer, f?: GgufField['kind']): void => {
    if (f) fields.push({ kind: f, at: pos, size: b.length as 4 | 8 });
    parts.push(b); pos += b.length;
  };
  const u32 = (v: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
  const u64 = (v: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
  const str = (s: string): void => { const b = Buffer.from(s, 'utf8'); push(u64(b.length), 'strLen'); push(b); };
  push(Buffer.from('GGUF'));
  push(u32(3), 'version');
  push(u64(tensors.length), 'tensorCount');
  push(u64(kvs.length), 'kvCount');
  for (const kv of kvs) {
    str(kv.key);
    if (kv.type === 'u32') { push(u32(4), 'kvType'); push(u32(kv.value as number)); }
    else if (kv.type === 'f32') { push(u32(6), 'kvType'); const b = Buffer.alloc(4); b.writeFloatLE(kv.value as number); push(b); }
    else if (kv.type === 'string') { push(u32(8), 'kvType'); str(kv.value as string); }
    else if (kv.type === 'str[]') {
      push(u32(9), 'kvType'); push(u32(8), 'arrType'); push(u64((kv.value as string[]).length), 'arrCount');
      for (const s of kv.value as string[]) str(s);
    } else {
      push(u32(9), 'kvType'); push(u32(4), 'arrType'); push(u64((kv.value as number[]).length), 'arrCount');
      for (const v of kv.value as number[]) push(u32(v));
    }
  }
  let off = 0;
  const offs: number[] = [];
  for (const t of tensors) {
    offs.push(off);
    str(t.name);
    push(u32(t.ne.length), 'nDims');
    for (const d of t.ne) push(u64(d), 'ne');
    push(u32(t.type), 'ggmlType');
    push(u64(off), 'offset');
    off = Math.ceil((off + t.data.length) / align) * align;
  }
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc(Math.ceil(head.length / align) * align - head.length)]);
  const data = Buffer.alloc(off);
  tensors.forEach((t, i) => data.set(t.data, offs[i]));
  return { bytes: Buffer.concat([head, data]), fields };
}

/** Q8_0 blocks (f16 scale 1.0 + 32 int8). */
export function q8Blocks(r: Prng, nblocks: number): Uint8Array {
  const b = new Uint8Array(nblocks * 34);
  for (let i = 0; i < nblocks; i++) { b[i * 34] = 0x00; b[i * 34 + 1] = 0x3c; for (let j = 0; j < 32; j++) b[i * 34 + 2 + j] = r.int(256); }
  return b;
}

/** A small GGUF LoRA adapter (F32 + Q8_0 + F16 tensors, string array metadata). */
export function ggufAdapterSeed(r: Prng, opts: { alpha?: boolean; model?: boolean } = {}): { bytes: Buffer; fields: GgufField[] } {
  const kvs: GgufKV[] = [
    { key: 'general.architecture', type: 'string', value: 'llama' },
    { key: 'general.type', type: 'string', value: opts.model ? 'model' : 'adapter' },
    { key: 'adapter.type', type: 'string', value: 'lora' },
    { key: 'tokenizer.ggml.tokens', type: 'str[]', value: ['<s>', '</s>', 'a', 'b'] },
    { key: 'general.counts', type: 'u32[]', value: [1, 2, 3] },
  ];
  if (opts.alpha !== false) kvs.push({ key: 'adapter.lora.alpha', type: 'f32', value: 16 });
  const tensors: GgufTensorSpec[] = [
    // lora_a: ne [in=32, r=2]; lora_b: ne [r=2, out=32]
    { name: 'blk.0.attn_q.weight.lora_a', ne: [32, 2], type: 0, data: f32(r.normals(64)) },
    { name: 'blk.0.attn_q.weight.lora_b', ne: [2, 32], type: 0, data: f32(r.normals(64)) },
    { name: 'blk.1.attn_q.weight.lora_a', ne: [32, 2], type: 8, data: q8Blocks(r, 2) },
    { name: 'blk.1.attn_q.weight.lora_b', ne: [2, 32], type: 1, data: new Uint8Array(128).fill(0x3c) },
  ];
  return writeGguf(kvs, tensors);
}

/** Mutates one mapped GGUF field with a value chosen to break length arithmetic. */
export function mutateGgufField(r: Prng, g: { bytes: Buffer; fields: GgufField[] }): [string, Uint8Array] {
  const f = r.pick(g.fields);
  if (f.size === 8) {
    const v = f.kind === 'ne' ? r.pick([0n, 1n, 3n, 31n, 33n, 1n << 32n, 1n << 53n, (1n << 64n) - 1n, 1n << 63n, 1n << 40n])
      : interestingU64(r, g.bytes.length);
    return [`gguf:${f.kind}=${v}`, setU64(g.bytes, f.at, v)];
  }
  const v = f.kind === 'nDims' ? r.pick([0, 1, 3, 5, 8, 64, 0xffffffff])
    : f.kind === 'ggmlType' ? r.pick([2, 3, 6, 10, 12, 14, 16, 30, 31, 39, 40, 1000, 0xffffffff])
      : r.pick([0, 1, 7, 8, 9, 10, 12, 13, 100, 0xffff, 0x10000, 0xffffffff]);
  return [`gguf:${f.kind}=${v}`, setU32(g.bytes, f.at, v)];
}

// ---------------------------------------------------------------- zip + pickle

export interface ZipIn { name: string; data: Uint8Array; method?: number }

/** Minimal zip writer (stored entries, CRC 0, which the reader does not check). */
export function makeZip(entries: ZipIn[]): Buffer {
  const locals: Buffer[] = [];
  const central: Buffer[] = [];
  let off = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(e.method ?? 0, 8);
    lh.writeUInt32LE(e.data.length, 18);
    lh.writeUInt32LE(e.data.length, 22);
    lh.writeUInt16LE(name.length, 26);
    locals.push(lh, name, Buffer.from(e.data));
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(e.method ?? 0, 10);
    ch.writeUInt32LE(e.data.length, 20);
    ch.writeUInt32LE(e.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(off, 42);
    central.push(ch, name);
    off += 30 + name.length + e.data.length;
  }
  const cd = Buffer.concat(central);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(off, 16);
  return Buffer.concat([...locals, cd, eocd]);
}

/** Pickle opcodes worth injecting (forbidden globals, object construction, huge lengths...). */
export function pickleInjection(r: Prng): [string, Uint8Array] {
  const B = (...xs: (number[] | string)[]): Uint8Array => Buffer.concat(xs.map((x) => (typeof x === 'string' ? Buffer.from(x, 'latin1') : Buffer.from(x))));
  const choices: [string, () => Uint8Array][] = [
    ['global-os-system', () => B([0x80, 2], 'cos\nsystem\n', [0x58, 2, 0, 0, 0], 'ls', [0x85, 0x52, 0x2e])],
    ['stack-global-builtins-eval', () => B([0x80, 4, 0x8c, 8], 'builtins', [0x8c, 4], 'eval', [0x93, 0x8c, 1], '1', [0x85, 0x52, 0x2e])],
    ['inst-subprocess', () => B([0x80, 2], 'isubprocess\nPopen\n', [0x2e])],
    ['numpy-reconstruct', () => B([0x80, 2], 'cnumpy.core.multiarray\n_reconstruct\n', [0x29, 0x52, 0x2e])],
    ['obj', () => B([0x80, 2, 0x28, 0x6f, 0x2e])],
    ['newobj-ex', () => B([0x80, 4, 0x92, 0x2e])],
    ['ext', () => B([0x80, 2, 0x82, 1, 0x2e])],
    ['binunicode8-huge', () => B([0x80, 4, 0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x2e])],
    ['binbytes8-2^63', () => B([0x80, 4, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0x80, 0x2e])],
    ['binunicode-4G', () => B([0x80, 2, 0x58, 0xff, 0xff, 0xff, 0xff, 0x2e])],
    ['long4-huge', () => B([0x80, 2, 0x8b, 0xff, 0xff, 0xff, 0x7f, 0x2e])],
    ['frame-huge', () => B([0x80, 4, 0x95, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x4e, 0x2e])],
    ['memo-get-undefined', () => B([0x80, 2, 0x68, 7, 0x2e])],
    ['stop-empty-stack', () => B([0x80, 2, 0x2e])],
    ['no-stop', () => B([0x80, 2, 0x7d])],
    ['proto-99', () => B([0x80, 99, 0x4e, 0x2e])],
    ['pop-mark-underflow', () => B([0x80, 2, 0x31, 0x2e])],
    ['setitems-on-list', () => B([0x80, 2, 0x5d, 0x28, 0x4e, 0x4e, 0x75, 0x2e])],
    ['appends-200k', () => { const n = 200_000; return B([0x80, 2, 0x5d, 0x28], Buffer.alloc(n, 0x4e).toString('latin1'), [0x65, 0x2e]); }],
    ['tuple-200k', () => { const n = 200_000; return B([0x80, 2, 0x28], Buffer.alloc(n, 0x4e).toString('latin1'), [0x74, 0x2e]); }],
    ['setitems-200k', () => { const n = 100_000; let s = ''; for (let i = 0; i < n; i++) s += '\x4b' + String.fromCharCode(i & 0xff) + '\x4e'; return B([0x80, 2, 0x7d, 0x28], s, [0x75, 0x2e]); }],
    ['deep-lists-100k', () => { const n = 100_000; return B([0x80, 2], Buffer.alloc(n, 0x5d).toString('latin1'), Buffer.alloc(n - 1, 0x61).toString('latin1'), [0x2e]); }],
    ['deep-dicts-100k', () => { const n = 100_000; let s = ''; for (let i = 0; i < n; i++) s += '}\x8c\x01a'; s += 'N'; for (let i = 0; i < n; i++) s += 's'; return B([0x80, 4], s, [0x2e]); }],
    ['storage-bad-class', () => B([0x80, 2, 0x28, 0x58, 7, 0, 0, 0], 'storage', 'ctorch\nFooStorage\n', [0x58, 1, 0, 0, 0], '0', [0x58, 3, 0, 0, 0], 'cpu', [0x4b, 4, 0x74, 0x51, 0x2e])],
    ['storage-key-path', () => B([0x80, 2, 0x28, 0x58, 7, 0, 0, 0], 'storage', 'ctorch\nFloatStorage\n', [0x58, 5, 0, 0, 0], '../x/', [0x58, 3, 0, 0, 0], 'cpu', [0x4b, 4, 0x74, 0x51, 0x2e])],
  ];
  const [label, make] = r.pick(choices);
  return [`pickle:${label}`, make()];
}

// ---------------------------------------------------------------- placeholders

export const LFS_POINTER = 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345678\n';

/** Writes a case file, creating parents. */
export function put(dir: string, rel: string, data: Uint8Array | string): string {
  const f = path.join(dir, rel);
  fs.mkdirSync(path.dirname(f), { recursive: true });
  fs.writeFileSync(f, data);
  return f;
}

// ---------------------------------------------------------------- hostile inputs by class (issue 9)
// Each generator builds the hostile input in memory from a seed; nothing is stored. Used by
// fuzzcampaign.ts (seeded "hostile" section) and safety.test.ts (one test per class).

/** JSON text nested `depth` levels deep (arrays or objects). */
export function deepJson(depth: number, kind: 'array' | 'object' = 'array'): string {
  return kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '0' + '}'.repeat(depth);
}

/** A safetensors file from raw header text and data bytes (header padded to 8). */
export function rawSafetensors(headerText: string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  let h = headerText;
  while ((8 + Buffer.byteLength(h)) % 8 !== 0) h += ' ';
  return joinSafetensors(h, data);
}

const PEFT_A = (m: string): string => `base_model.model.${m}.lora_A.weight`;
const PEFT_B = (m: string): string => `base_model.model.${m}.lora_B.weight`;

/** Class "deep JSON": a safetensors header with deep nesting in a tensor's shape or in __metadata__. */
export function deepHeaderSafetensors(r: Prng, depth: number): [string, Uint8Array] {
  const where = r.pick(['shape', 'metadata', 'offsets', 'dtype'] as const);
  const d = deepJson(depth, r.chance(0.5) ? 'array' : 'object');
  const t = (over: Record<string, string>): string => `"${PEFT_A('m')}":{"dtype":${over.dtype ?? '"F32"'},"shape":${over.shape ?? '[1,2]'},"data_offsets":${over.offsets ?? '[0,8]'}}`;
  const header = where === 'metadata' ? `{"__metadata__":{"x":${d}},${t({})}}` : `{${t({ [where]: d })}}`;
  return [`deep-${where}@${depth}`, rawSafetensors(header, new Uint8Array(8))];
}

/** Class "rank 0 with a 2^40 dim": A [0, 2^40], B [2^40, 0] (0 bytes of data, a few hundred bytes of file). */
export function rankZeroHugeTensors(huge = 2 ** 40): StTensor[] {
  return [
    { name: PEFT_A('model.layers.0.self_attn.q_proj'), dtype: 'F32', shape: [0, huge], data: new Uint8Array(0) },
    { name: PEFT_B('model.layers.0.self_attn.q_proj'), dtype: 'F32', shape: [huge, 0], data: new Uint8Array(0) },
  ];
}

/** Class "r > min(in, out)": rank `r` factors on an out×in layer. */
export function overRankTensors(r: Prng, rank = 4096, out = 2, inF = 2): StTensor[] {
  return [
    { name: PEFT_A('model.layers.0.self_attn.q_proj'), dtype: 'F32', shape: [rank, inF], data: f32(r.normals(rank * inF)) },
    { name: PEFT_B('model.layers.0.self_attn.q_proj'), dtype: 'F32', shape: [out, rank], data: f32(r.normals(out * rank)) },
  ];
}

/** Module names that are Object.prototype members. */
export const PROTO_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'] as const;

/** Class "names are data": PEFT tensors whose module paths are `constructor`, `__proto__`, ... */
export function protoNamedPeftTensors(r: Prng, names: readonly string[] = PROTO_NAMES, rank = 2, dim = 4): StTensor[] {
  const ts: StTensor[] = [];
  for (const n of names) {
    ts.push({ name: PEFT_A(n), dtype: 'F32', shape: [rank, dim], data: f32(r.normals(rank * dim)) });
    ts.push({ name: PEFT_B(n), dtype: 'F32', shape: [dim, rank], data: f32(r.normals(dim * rank)) });
  }
  return ts;
}

/** Class "kohya metadata of the wrong type" + hostile module names: kohya tensors named constructor/__proto__. */
export function hostileKohya(r: Prng): { tensors: StTensor[]; metadata: Record<string, string>; headerExtra: string } {
  const tensors: StTensor[] = [];
  for (const n of ['constructor', '__proto__', 'lora_unet_toString']) {
    tensors.push({ name: `${n}.lora_down.weight`, dtype: 'F32', shape: [2, 4], data: f32(r.normals(8)) });
    tensors.push({ name: `${n}.lora_up.weight`, dtype: 'F32', shape: [4, 2], data: f32(r.normals(8)) });
    tensors.push({ name: `${n}.alpha`, dtype: 'F32', shape: [], data: f32([2]) });
  }
  // Non-string metadata values (objects where strings / string lists are expected).
  const headerExtra = r.pick([
    '"lora_lens.module_names":{"constructor":{"a":1},"__proto__":["x"]}',
    '"lora_lens.module_names":"{\\"constructor\\":{\\"split\\":1},\\"__proto__\\":7}"',
    '"ss_network_dim":{"toString":1},"ss_tag_frequency":[{"toString":1}]',
    '"unet":"[{\\"toString\\":1}]","text_encoder":"{\\"a\\":1}"',
  ]);
  return { tensors, metadata: {}, headerExtra };
}

/** Safetensors bytes with extra raw JSON members inside __metadata__ (values of any type). */
export function safetensorsWithRawMetadata(tensors: StTensor[], metadataMembers: string): Uint8Array {
  const enc = encodeSafetensorsLike(tensors);
  const header = enc.header.replace(/^\{/, `{"__metadata__":{${metadataMembers}},`);
  return rawSafetensors(header, enc.data);
}

function encodeSafetensorsLike(tensors: StTensor[]): { header: string; data: Uint8Array } {
  const parts: string[] = [];
  let pos = 0;
  for (const t of tensors) {
    parts.push(`${JSON.stringify(t.name)}:${JSON.stringify({ dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.data.byteLength] })}`);
    pos += t.data.byteLength;
  }
  const data = new Uint8Array(pos);
  let o = 0;
  for (const t of tensors) { data.set(t.data, o); o += t.data.byteLength; }
  return { header: `{${parts.join(',')}}`, data };
}

/** Safetensors bytes that keep every tensor name as written (`__proto__` included). */
export function safetensorsRaw(tensors: StTensor[]): Uint8Array {
  const e = encodeSafetensorsLike(tensors);
  return rawSafetensors(e.header, e.data);
}

/** Class "catastrophic regex": pattern keys with nested quantifiers / alternations under a star, and a name that makes them backtrack. */
export function catastrophicPatterns(r: Prng): { keys: string[]; name: string } {
  const n = r.range(28, 40);
  const keys = [
    '(a+)+b', '(a*)*b', '(a|a)*b', '(a|aa)+b', '((a+)+)+b', '(.*a){12}b', '(\\w+\\s?)+b', '(a+){2,}b', '(?:a|a?)+b', '([a-z]+)*b',
  ];
  for (let i = 0; i < 4; i++) keys.push(`(${'a'.repeat(r.range(1, 3))}${r.pick(['+', '*'])})${r.pick(['+', '*', '{1,}'])}b`);
  return { keys, name: `model.layers.0.${'a'.repeat(n)}c` };
}

/** Class "shard index with many tensors": one shard with `n` tiny tensors and an index listing them all. */
export function bigShardIndex(n: number): { shard: Uint8Array; index: string } {
  const parts: string[] = [];
  const wm: string[] = [];
  for (let i = 0; i < n; i++) {
    parts.push(`"t${i}":{"dtype":"F32","shape":[1],"data_offsets":[${4 * i},${4 * i + 4}]}`);
    wm.push(`"t${i}":"s.safetensors"`);
  }
  return { shard: rawSafetensors(`{${parts.join(',')}}`, new Uint8Array(4 * n)), index: `{"metadata":{},"weight_map":{${wm.join(',')}}}` };
}

/** Class "pickle op flood": `n` bytes of one opcode (EMPTY_DICT `}`, EMPTY_LIST `]`, NONE `N`, MARK `(`, ...) after PROTO 2. */
export function pickleFlood(op: number, n: number): Uint8Array {
  const b = new Uint8Array(n + 3);
  b[0] = 0x80; b[1] = 2;
  b.fill(op, 2, n + 2);
  b[n + 2] = 0x2e; // STOP
  return b;
}

/** Class "huge header of tiny objects": `n` tiny __metadata__ entries, empty shape arrays, or zero-size tensors. */
export function tinyObjectHeader(r: Prng, n: number, kind = r.pick(['metadata', 'shape', 'tensors'] as const)): [string, Uint8Array] {
  let h: string;
  if (kind === 'metadata') h = `{"__metadata__":{${Array.from({ length: n }, (_, i) => `"${i}":""`).join(',')}}}`;
  else if (kind === 'shape') h = `{"t":{"dtype":"F32","shape":[${new Array(n).fill('1').join(',')}],"data_offsets":[0,4]}}`;
  else h = `{${Array.from({ length: n }, (_, i) => `"${i}":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}`).join(',')}}`;
  return [`tiny-${kind}x${n}`, rawSafetensors(h, new Uint8Array(4))];
}

/** Class "one huge factor": header of a rank-1 PEFT module whose A is [1, cols] F32; the data is a sparse hole (ftruncate). */
export function hugeFactorFile(file: string, cols: number): void {
  const tensors = [
    { name: PEFT_A('model.layers.0.mlp.up_proj'), shape: [1, cols], bytes: 4 * cols },
    { name: PEFT_B('model.layers.0.mlp.up_proj'), shape: [4, 1], bytes: 16 },
  ];
  let pos = 0;
  const parts = tensors.map((t) => { const s = `"${t.name}":{"dtype":"F32","shape":${JSON.stringify(t.shape)},"data_offsets":[${pos},${pos + t.bytes}]}`; pos += t.bytes; return s; });
  const head = rawSafetensors(`{${parts.join(',')}}`);
  fs.writeFileSync(file, head);
  fs.truncateSync(file, head.length + pos);
}

/** Class "config values of the wrong type": lora_alpha and friends as strings, overflowing numbers, null. */
export const BAD_ALPHA_JSON = ['"16"', '1e400', '-1e400', 'null', '[16]', '{"v":16}', 'true'] as const;

/** A PEFT adapter_config.json with raw JSON for one field (lets 1e400 reach the parser). */
export function peftConfigWith(field: string, rawValue: string, base: Record<string, unknown> = { peft_type: 'LORA', r: 2, lora_alpha: 4, target_modules: ['q_proj'] }): string {
  const rest = Object.entries(base).filter(([k]) => k !== field).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
  return `{${[...rest, `${JSON.stringify(field)}:${rawValue}`].join(',')}}`;
}

/** Class "GGUF alignment": general.alignment values llama.cpp refuses. */
export const BAD_ALIGNMENTS: { type: 'u32' | 'f32'; value: number }[] = [
  { type: 'f32', value: 0.5 }, { type: 'f32', value: 64.5 }, { type: 'f32', value: 32 }, { type: 'u32', value: 0 }, { type: 'u32', value: 48 }, { type: 'u32', value: 2 ** 31 },
];

/** Class "symlink loop": `a` → `b` → `a` next to each other; returns the path of `a`. */
export function symlinkLoop(dir: string, name: string): string {
  const a = path.join(dir, name);
  const b = path.join(dir, `${name}.loop`);
  fs.symlinkSync(path.basename(b), a);
  fs.symlinkSync(path.basename(a), b);
  return a;
}
