import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { floatToHalf, halfToFloat } from '../../src/core/formats/dtype';
import { FormatError } from '../../src/core/formats/errors';
import { GgufStore, openGgufAdapter, readGgufHeader } from '../../src/core/formats/gguf';

const REAL = '/work/shared/realdata';
const hasReal = fs.existsSync(REAL);

// ---- a small GGUF writer (test-only) ----
type KV = [string, 'u32' | 'f32' | 'string' | 'str[]', number | string | string[]];
interface WT { name: string; ne: number[]; type: number; data: Uint8Array }
function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const l = Buffer.alloc(8);
  l.writeBigUInt64LE(BigInt(b.length));
  return Buffer.concat([l, b]);
}
function u32(v: number): Buffer { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; }
function u64(v: number): Buffer { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; }
function writeGguf(kvs: KV[], tensors: WT[], align = 32): Buffer {
  const parts: Buffer[] = [Buffer.from('GGUF'), u32(3), u64(tensors.length), u64(kvs.length)];
  for (const [k, t, v] of kvs) {
    parts.push(str(k));
    if (t === 'u32') parts.push(u32(4), u32(v as number));
    else if (t === 'f32') { const b = Buffer.alloc(4); b.writeFloatLE(v as number); parts.push(u32(6), b); }
    else if (t === 'string') parts.push(u32(8), str(v as string));
    else parts.push(u32(9), u32(8), u64((v as string[]).length), ...(v as string[]).map(str));
  }
  let off = 0;
  const offs: number[] = [];
  for (const t of tensors) {
    offs.push(off);
    parts.push(str(t.name), u32(t.ne.length), ...t.ne.map(u64), u32(t.type), u64(off));
    off = Math.ceil((off + t.data.length) / align) * align;
  }
  let head = Buffer.concat(parts);
  head = Buffer.concat([head, Buffer.alloc(Math.ceil(head.length / align) * align - head.length)]);
  const data = Buffer.alloc(off);
  tensors.forEach((t, i) => data.set(t.data, offs[i]));
  return Buffer.concat([head, data]);
}
function tmp(name: string, data: Uint8Array): string {
  const f = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'lora-lens-gguf-')), name);
  fs.writeFileSync(f, data);
  return f;
}
const f32bytes = (v: number[]): Uint8Array => new Uint8Array(Float32Array.from(v).buffer);
const f16bytes = (v: number[]): Uint8Array => new Uint8Array(Uint16Array.from(v.map(floatToHalf)).buffer);

/** Q8_0 block: f16 d + 32 int8. Expected value = d * q (d chosen exactly representable in f16). */
function q8block(d: number, q: number[]): { bytes: Buffer; values: number[] } {
  const b = Buffer.alloc(34);
  b.writeUInt16LE(floatToHalf(d), 0);
  q.forEach((x, i) => b.writeInt8(x, 2 + i));
  return { bytes: b, values: q.map((x) => d * x) };
}
/** Q4_0 block: f16 d + 16 bytes; element j is the low nibble of byte j, element j+16 the high nibble; value (nib-8)*d. */
function q4block(d: number, nib: number[]): { bytes: Buffer; values: number[] } {
  const b = Buffer.alloc(18);
  b.writeUInt16LE(floatToHalf(d), 0);
  for (let j = 0; j < 16; j++) b[2 + j] = nib[j] | (nib[j + 16] << 4);
  return { bytes: b, values: nib.map((x) => (x - 8) * d) };
}

test('synthetic GGUF: F32, F16, Q8_0, Q4_0 tensors dequantise to the independently computed values; shapes reversed', () => {
  const a = Array.from({ length: 6 }, (_, i) => i * 0.25 - 1); // ne [3, 2] -> torch [2, 3]
  const h = [0.5, -1.25, 3.0, 65504, 6.1e-5, 0]; // F16 values
  const q8a = q8block(0.5, Array.from({ length: 32 }, (_, i) => i * 8 - 128 + (i % 3)));
  const q8b = q8block(-0.125, Array.from({ length: 32 }, (_, i) => 127 - i * 5));
  const q4a = q4block(0.75, Array.from({ length: 32 }, (_, i) => (i * 7) % 16));
  const q4b = q4block(2, Array.from({ length: 32 }, (_, i) => 15 - (i % 16)));
  const file = tmp('m.gguf', writeGguf(
    [['general.architecture', 'string', 'llama'], ['general.name', 'string', 'tiny'], ['llama.block_count', 'u32', 1], ['tokenizer.ggml.tokens', 'str[]', ['a', 'b', 'ü']]],
    [
      { name: 'f32', ne: [3, 2], type: 0, data: f32bytes(a) },
      { name: 'f16', ne: [6], type: 1, data: f16bytes(h) },
      { name: 'q8', ne: [32, 2], type: 8, data: Buffer.concat([q8a.bytes, q8b.bytes]) },
      { name: 'q4', ne: [64, 1], type: 2, data: Buffer.concat([q4a.bytes, q4b.bytes]) },
    ]));
  const s = GgufStore.openFile(file);
  assert.deepEqual(s.tensors.get('f32')!.shape, [2, 3]);
  assert.deepEqual(s.tensors.get('q8')!.shape, [2, 32]);
  assert.deepEqual(s.tensors.get('q4')!.shape, [1, 64]);
  assert.equal(s.tensors.get('q8')!.byteLength, 68);
  assert.equal(s.tensors.get('q4')!.ggmlType, 'Q4_0');
  assert.deepEqual(Array.from(s.readF32('f32')), a.map(Math.fround));
  assert.deepEqual(Array.from(s.readF32('f16')), h.map((x) => halfToFloat(floatToHalf(x))));
  assert.deepEqual(Array.from(s.readF32('q8')), [...q8a.values, ...q8b.values]);
  assert.deepEqual(Array.from(s.readF32('q4')), [...q4a.values, ...q4b.values]);
  assert.equal(s.metadata['general.architecture'], 'llama');
  assert.equal(s.metadata['tokenizer.ggml.tokens'], 'array<string>[3]');
  assert.deepEqual((s.kv.get('tokenizer.ggml.tokens') as { head: string[] }).head, ['a', 'b', 'ü']);
  s.close();
});

test('Q4_K and Q6_K: a block packed by hand decodes to d*scale*q - dmin*min per sub-block', () => {
  // Q4_K: 8 sub-blocks of 32, 6-bit scale sc[j] and min mn[j]; packed as in ggml (j<4 low 6 bits in
  // bytes j / j+4, j>=4 low nibbles in byte j+4 and top 2 bits in bytes j-4 / j).
  const sc = [1, 5, 17, 63, 2, 33, 48, 7], mn = [0, 3, 62, 9, 20, 1, 40, 16];
  const packed = new Uint8Array(12);
  for (let j = 0; j < 8; j++) {
    if (j < 4) { packed[j] |= sc[j]; packed[j + 4] |= mn[j]; }
    else {
      packed[j + 4] = (sc[j] & 0xf) | ((mn[j] & 0xf) << 4);
      packed[j - 4] |= (sc[j] >> 4) << 6;
      packed[j] |= (mn[j] >> 4) << 6;
    }
  }
  const q = Array.from({ length: 256 }, (_, i) => (i * 5 + 3) % 16);
  const blk = Buffer.alloc(144);
  blk.writeUInt16LE(floatToHalf(0.5), 0);
  blk.writeUInt16LE(floatToHalf(0.25), 2);
  blk.set(packed, 4);
  // Sub-block 2g uses the low nibbles of qs[32g..32g+31], sub-block 2g+1 the high nibbles.
  for (let g = 0; g < 4; g++) for (let l = 0; l < 32; l++) blk[16 + 32 * g + l] = q[64 * g + l] | (q[64 * g + 32 + l] << 4);
  const exp4 = q.map((x, i) => 0.5 * sc[i >> 5] * x - 0.25 * mn[i >> 5]);
  // Q6_K: ql[128] qh[64] scales[16] d; 6-bit q in [0,63], value d*scale[i/16]*(q-32).
  const q6 = Array.from({ length: 256 }, (_, i) => (i * 11 + 5) % 64);
  const s6 = Array.from({ length: 16 }, (_, i) => i * 9 - 70);
  const b6 = Buffer.alloc(210);
  for (let n = 0; n < 2; n++) {
    for (let l = 0; l < 32; l++) {
      const base = 128 * n;
      const [v1, v2, v3, v4] = [q6[base + l], q6[base + l + 32], q6[base + l + 64], q6[base + l + 96]];
      b6[64 * n + l] = (v1 & 0xf) | ((v3 & 0xf) << 4);
      b6[64 * n + l + 32] = (v2 & 0xf) | ((v4 & 0xf) << 4);
      b6[128 + 32 * n + l] = (v1 >> 4) | ((v2 >> 4) << 2) | ((v3 >> 4) << 4) | ((v4 >> 4) << 6);
    }
  }
  s6.forEach((v, i) => b6.writeInt8(v, 192 + i));
  b6.writeUInt16LE(floatToHalf(0.125), 208);
  const exp6 = q6.map((x, i) => 0.125 * s6[i >> 4] * (x - 32));
  const file = tmp('k.gguf', writeGguf([], [
    { name: 'q4k', ne: [256], type: 12, data: blk },
    { name: 'q6k', ne: [256], type: 14, data: b6 },
  ]));
  const s = GgufStore.openFile(file);
  const got4 = s.readF32('q4k');
  exp4.forEach((v, i) => assert.ok(Math.abs(got4[i] - v) < 1e-5, `q4k[${i}] ${got4[i]} vs ${v}`));
  assert.deepEqual(Array.from(s.readF32('q6k')), exp6.map(Math.fround));
  s.close();
});

test('GGUF LoRA adapter: lora_a ne [in, r] = PEFT A, lora_b ne [r, out] = PEFT B, s = alpha/r', () => {
  const A = Array.from({ length: 2 * 8 }, (_, i) => i / 10); // torch [2, 8]
  const B = Array.from({ length: 6 * 2 }, (_, i) => (i % 5) - 2); // torch [6, 2]
  const file = tmp('lora.gguf', writeGguf(
    [['general.type', 'string', 'adapter'], ['general.architecture', 'string', 'llama'], ['adapter.type', 'string', 'lora'], ['adapter.lora.alpha', 'f32', 16]],
    [
      { name: 'blk.0.attn_q.weight.lora_a', ne: [8, 2], type: 0, data: f32bytes(A) },
      { name: 'blk.0.attn_q.weight.lora_b', ne: [2, 6], type: 1, data: f16bytes(B) },
      { name: 'blk.1.ffn_down.weight.lora_a', ne: [8, 2], type: 0, data: f32bytes(A) },
    ]));
  const a = openGgufAdapter(file);
  assert.equal(a.format, 'gguf');
  assert.equal(a.modules.length, 1);
  const m = a.modules[0];
  assert.deepEqual([m.name, m.layer, m.kind, m.rank, m.inFeatures, m.outFeatures, m.scale, m.alpha], ['blk.0.attn_q', 0, 'attn_q', 2, 8, 6, 8, 16]);
  assert.deepEqual(m.A.tensor.shape, [2, 8]);
  assert.deepEqual(Array.from(a.store.readF32(m.A.tensor.name)), A.map(Math.fround));
  assert.deepEqual(Array.from(a.store.readF32(m.B.tensor.name)), B);
  assert.match(a.warnings.join('\n'), /blk\.1\.ffn_down\.weight" has only its lora_a/);
  assert.equal(a.summary.baseModel, 'llama');
  a.store.close();
  // A model file is not an adapter.
  const model = tmp('model.gguf', writeGguf([['general.architecture', 'string', 'llama']], []));
  assert.throws(() => openGgufAdapter(model), /not a LoRA adapter/);
});

test('corrupt GGUF headers give FormatErrors naming the file, quickly', () => {
  const ok = writeGguf([['general.architecture', 'string', 'x']], [{ name: 't', ne: [4], type: 0, data: f32bytes([1, 2, 3, 4]) }]);
  const patch = (fn: (b: Buffer) => void): Buffer => { const b = Buffer.from(ok); fn(b); return b; };
  const cases: [string, Uint8Array, RegExp][] = [
    ['magic', patch((b) => b.write('GGUX', 0)), /not a GGUF file/],
    ['v1', patch((b) => b.writeUInt32LE(1, 4)), /version 1/],
    ['tensors', patch((b) => b.writeBigUInt64LE(1n << 40n, 8)), /tensor count .* exceeds/],
    ['kvs', patch((b) => b.writeBigUInt64LE(1n << 40n, 16)), /metadata count .* exceeds/],
    ['keylen', patch((b) => b.writeBigUInt64LE(0xffffffffffn, 24)), /length .* exceeds the limit/],
    ['truncated', ok.subarray(0, ok.length - 20), /extends past the end of the file/],
    ['header-cut', ok.subarray(0, 40), /runs past the end of the file/],
  ];
  const tIdx = ok.indexOf(Buffer.concat([str('t')]));
  cases.push(['ndims', patch((b) => b.writeUInt32LE(9, tIdx + 9)), /9 dimensions/]);
  cases.push(['type', patch((b) => b.writeUInt32LE(77, tIdx + 9 + 4 + 8)), /unknown ggml type 77/]);
  cases.push(['misaligned', patch((b) => b.writeBigUInt64LE(4n, tIdx + 9 + 4 + 8 + 4)), /not a multiple of the alignment/]);
  for (const [n, data, re] of cases) {
    const f = tmp(`${n}.gguf`, data);
    assert.throws(() => readGgufHeader(f), (e: unknown) => e instanceof FormatError && e.file === f && re.test(e.message), n);
  }
});

test('real: Raudbjorn vocab-only GGUFs (0 tensors) read; uShure UTF-8-mangled copies fail fast', { skip: !hasReal }, () => {
  const exp: Record<string, [string, number, number]> = {
    'ggml-vocab-gpt-2.gguf': ['gpt2', 16, 50257], 'ggml-vocab-llama-spm.gguf': ['llama', 22, 32000], 'ggml-vocab-bert-bge.gguf': ['bert', 20, 30522],
  };
  for (const [f, [arch, nkv, ntok]] of Object.entries(exp)) {
    const h = readGgufHeader(path.join(REAL, 'Raudbjorn__ggml-llama.cpp', f));
    assert.equal(h.version, 3);
    assert.equal(h.tensors.length, 0);
    assert.equal(h.kv.size, nkv);
    assert.equal(h.kv.get('general.architecture'), arch);
    assert.equal((h.kv.get('tokenizer.ggml.tokens') as { length: number }).length, ntok);
  }
  const g = readGgufHeader(path.join(REAL, 'Raudbjorn__ggml-llama.cpp/ggml-vocab-gpt-2.gguf'));
  assert.equal(g.kv.get('gpt2.embedding_length'), 768);
  assert.equal(g.kv.get('tokenizer.ggml.bos_token_id'), 50256);
  assert.ok(Math.abs((g.kv.get('gpt2.attention.layer_norm_epsilon') as number) - 1e-5) < 1e-9);
  for (const f of Object.keys(exp)) {
    const p = path.join(REAL, 'uShure__llama-jni-bridge', f);
    const t0 = Date.now();
    assert.throws(() => readGgufHeader(p), (e: unknown) => e instanceof FormatError && e.file === p && /exceeds the limit|past the end|not valid UTF-8|unknown/.test(e.message));
    assert.ok(Date.now() - t0 < 2000);
  }
});
