/**
 * GGUF (llama.cpp) models and LoRA adapters: own header parser + fp32 dequantisation.
 *
 * Why not @huggingface/gguf: its API is async (fetch-style range views) while TensorStore is
 * synchronous, and we want every length bounded against the file size with errors naming the file.
 * The parser reads the header through a bounded window (never the tensor data), with caps:
 * string ≤ 1 MB, array ≤ 10M items (and never more items than bytes left), ≤ 1M tensors,
 * n_dims ≤ 4, tensor data inside the file and aligned.
 *
 * Layout (v2/v3, little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv, KVs
 * (string key, u32 type, value), tensor infos (string name, u32 n_dims, u64 ne[n_dims], u32 type,
 * u64 offset), padding to general.alignment (default 32), tensor data. ne[0] is the innermost
 * (contiguous) dimension, so the torch-order shape is ne reversed.
 *
 * Dequantised types: F32, F16, BF16, F64, I8/I16/I32/I64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K (block layouts of ggml-common.h). IQ*, TQ*, MXFP4: header only.
 */
import * as path from 'node:path';
import { Adapter, AdapterSummary, kindOf, layerOf, loraShapeProblem, LoraModule } from './adapter';
import { DType, halfToFloat, toFloat32 } from './dtype';
import { FormatError } from './errors';
import { RangeFile, sniffPlaceholder } from './fileio';
import { setOwn } from './safejson';
import { compareModules } from './peft';
import { TensorInfo, TensorStore } from './safetensors';

export const GGUF_MAX_STRING = 1 << 20;
export const GGUF_MAX_ARRAY = 10_000_000;
/** Same bound as safetensors' MAX_TENSORS (a GGUF model has hundreds to a few thousand; 1M tiny tensors took 920 MB). */
export const GGUF_MAX_TENSORS = 120_000;
/** Metadata entries (real files have ~20-60; vocabularies are single array values). */
export const GGUF_MAX_KV = 65_536;
export const GGUF_MAX_DIMS = 4;
/** Array items kept in memory per metadata value (the rest are skipped, the length is kept). */
const KEEP_ARRAY_ITEMS = 64;

interface GgmlType { name: string; block: number; size: number; dtype?: DType }
/** ggml type ids -> block size (elements) and bytes per block. */
export const GGML_TYPES: Readonly<Record<number, GgmlType>> = {
  0: { name: 'F32', block: 1, size: 4, dtype: 'F32' },
  1: { name: 'F16', block: 1, size: 2, dtype: 'F16' },
  2: { name: 'Q4_0', block: 32, size: 18 },
  3: { name: 'Q4_1', block: 32, size: 20 },
  6: { name: 'Q5_0', block: 32, size: 22 },
  7: { name: 'Q5_1', block: 32, size: 24 },
  8: { name: 'Q8_0', block: 32, size: 34 },
  9: { name: 'Q8_1', block: 32, size: 36 },
  10: { name: 'Q2_K', block: 256, size: 84 },
  11: { name: 'Q3_K', block: 256, size: 110 },
  12: { name: 'Q4_K', block: 256, size: 144 },
  13: { name: 'Q5_K', block: 256, size: 176 },
  14: { name: 'Q6_K', block: 256, size: 210 },
  15: { name: 'Q8_K', block: 256, size: 292 },
  16: { name: 'IQ2_XXS', block: 256, size: 66 },
  17: { name: 'IQ2_XS', block: 256, size: 74 },
  18: { name: 'IQ3_XXS', block: 256, size: 98 },
  19: { name: 'IQ1_S', block: 256, size: 50 },
  20: { name: 'IQ4_NL', block: 32, size: 18 },
  21: { name: 'IQ3_S', block: 256, size: 110 },
  22: { name: 'IQ2_S', block: 256, size: 82 },
  23: { name: 'IQ4_XS', block: 256, size: 136 },
  24: { name: 'I8', block: 1, size: 1, dtype: 'I8' },
  25: { name: 'I16', block: 1, size: 2, dtype: 'I16' },
  26: { name: 'I32', block: 1, size: 4, dtype: 'I32' },
  27: { name: 'I64', block: 1, size: 8, dtype: 'I64' },
  28: { name: 'F64', block: 1, size: 8, dtype: 'F64' },
  29: { name: 'IQ1_M', block: 256, size: 56 },
  30: { name: 'BF16', block: 1, size: 2, dtype: 'BF16' },
  34: { name: 'TQ1_0', block: 256, size: 54 },
  35: { name: 'TQ2_0', block: 256, size: 66 },
  39: { name: 'MXFP4', block: 32, size: 17 },
};

const DEQUANT = new Set(['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_K']);

export interface GgufArray { type: string; length: number; /** First items (up to 64). */ head: GgufScalar[] }
export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufArray;

export interface GgufTensorInfo extends TensorInfo {
  /** ggml type name (`Q4_K`, `F16`...). For quantised types `dtype` is F32 (what readF32 yields) and byteLength is the stored size. */
  ggmlType: string;
  /** Dimensions as stored (innermost first). `shape` is these reversed. */
  ne: number[];
  /** False for types we cannot dequantise (IQ*, TQ*, MXFP4, Q8_1). */
  readable: boolean;
}

export interface GgufHeader {
  file: string;
  fileSize: number;
  version: number;
  kv: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  alignment: number;
  dataStart: number;
  warnings: string[];
}

const KV_TYPES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'];
const KV_MIN_SIZE = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

/** Sequential reader over a file through a bounded window. */
class Cursor {
  pos = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  private dv = new DataView(this.buf.buffer);
  constructor(private readonly f: RangeFile) {}
  fail(problem: string, at = this.pos): never {
    throw new FormatError(this.f.path, `at byte ${at}: ${problem}`);
  }
  get remaining(): number { return this.f.size - this.pos; }
  private ensure(n: number): number {
    if (!Number.isSafeInteger(n) || n < 0 || this.pos + n > this.f.size) {
      this.fail(`needs ${n} bytes but the file ends at byte ${this.f.size} (truncated or corrupt header)`);
    }
    if (this.pos < this.bufStart || this.pos + n > this.bufStart + this.buf.length) {
      const len = Math.min(this.f.size - this.pos, Math.max(n, 1 << 20));
      this.buf = this.f.read(this.pos, len);
      this.bufStart = this.pos;
      this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    }
    const o = this.pos - this.bufStart;
    this.pos += n;
    return o;
  }
  u8(): number { return this.buf[this.ensure(1)]; }
  i8(): number { const o = this.ensure(1); return this.dv.getInt8(o); }
  u16(): number { const o = this.ensure(2); return this.dv.getUint16(o, true); }
  i16(): number { const o = this.ensure(2); return this.dv.getInt16(o, true); }
  u32(): number { const o = this.ensure(4); return this.dv.getUint32(o, true); }
  i32(): number { const o = this.ensure(4); return this.dv.getInt32(o, true); }
  f32(): number { const o = this.ensure(4); return this.dv.getFloat32(o, true); }
  f64(): number { const o = this.ensure(8); return this.dv.getFloat64(o, true); }
  u64big(): bigint { const o = this.ensure(8); return this.dv.getBigUint64(o, true); }
  i64big(): bigint { const o = this.ensure(8); return this.dv.getBigInt64(o, true); }
  /** u64 that must fit a safe integer and not exceed `max`. */
  count(what: string, max: number): number {
    const at = this.pos;
    const v = this.u64big();
    if (v > BigInt(max)) this.fail(`${what} ${v} exceeds the limit of ${max} (corrupt file?)`, at);
    return Number(v);
  }
  bytes(n: number): Uint8Array { const o = this.ensure(n); return this.buf.subarray(o, o + n); }
  string(what: string, fatal: boolean): string {
    const at = this.pos;
    const n = this.count(`${what} length`, GGUF_MAX_STRING);
    if (n > this.remaining) this.fail(`${what} length ${n} runs past the end of the file (${this.remaining} bytes left)`, at);
    const b = this.bytes(n);
    try {
      return new TextDecoder('utf-8', { fatal }).decode(b);
    } catch {
      return this.fail(`${what} is not valid UTF-8`, at);
    }
  }
}

function readScalar(c: Cursor, type: number): GgufScalar {
  switch (type) {
    case 0: return c.u8();
    case 1: return c.i8();
    case 2: return c.u16();
    case 3: return c.i16();
    case 4: return c.u32();
    case 5: return c.i32();
    case 6: return c.f32();
    case 7: {
      const at = c.pos;
      const b = c.u8();
      if (b > 1) c.fail(`bool value is ${b}, expected 0 or 1`, at);
      return b === 1;
    }
    case 8: return c.string('string value', false);
    case 10: { const v = c.u64big(); return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case 11: { const v = c.i64big(); return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v; }
    case 12: return c.f64();
    default: return c.fail(`unknown metadata value type ${type}`);
  }
}

function readValue(c: Cursor, type: number, depth: number): GgufValue {
  if (type !== 9) return readScalar(c, type);
  const at = c.pos;
  const itemType = c.u32();
  if (itemType > 12) c.fail(`unknown array item type ${itemType}`, at);
  if (itemType === 9 && depth >= 2) c.fail('arrays nested more than 2 deep', at);
  const n = c.count('array length', GGUF_MAX_ARRAY);
  if (n * KV_MIN_SIZE[itemType] > c.remaining) c.fail(`array of ${n} ${KV_TYPES[itemType]} cannot fit in the ${c.remaining} bytes left`, at);
  const head: GgufScalar[] = [];
  for (let i = 0; i < n; i++) {
    const v = readValue(c, itemType, depth + 1);
    if (i < KEEP_ARRAY_ITEMS && typeof v !== 'object') head.push(v);
  }
  return { type: KV_TYPES[itemType], length: n, head };
}

/** Reads and validates a GGUF header (metadata + tensor infos). Never reads tensor data. */
export function readGgufHeader(file: string): GgufHeader {
  const f = RangeFile.open(file);
  try {
    return parseGgufHeader(f);
  } finally {
    f.close();
  }
}

export function parseGgufHeader(f: RangeFile): GgufHeader {
  const file = f.path;
  const head = f.read(0, Math.min(512, f.size));
  const ph = sniffPlaceholder(head, f.size);
  if (ph) throw new FormatError(file, ph);
  if (f.size < 24 || Buffer.from(head.subarray(0, 4)).toString('latin1') !== 'GGUF') {
    throw new FormatError(file, `does not start with the GGUF magic (starts with ${JSON.stringify(Buffer.from(head.subarray(0, 4)).toString('latin1'))}): not a GGUF file`);
  }
  const c = new Cursor(f);
  c.pos = 4;
  const version = c.u32();
  if (version === 1) throw new FormatError(file, 'is GGUF version 1 (32-bit counts), which llama.cpp no longer reads; re-convert it');
  if (version > 0xffff) throw new FormatError(file, `has version field 0x${version.toString(16)}: a big-endian GGUF, which is not supported`);
  if (version !== 2 && version !== 3) throw new FormatError(file, `has unsupported GGUF version ${version}`);
  const nTensors = c.count('tensor count', GGUF_MAX_TENSORS);
  const nKv = c.count('metadata count', Math.min(GGUF_MAX_KV, Math.floor(f.size / 13)));
  const warnings: string[] = [];
  const kv = new Map<string, GgufValue>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`key of metadata entry ${i}`, true);
    const at = c.pos;
    const type = c.u32();
    if (type > 12) c.fail(`metadata "${key}" has unknown value type ${type}`, at);
    const v = readValue(c, type, 0);
    if (kv.has(key)) warnings.push(`metadata key "${key}" occurs twice; the last value is kept`);
    kv.set(key, v);
  }
  let alignment = 32;
  const al = kv.get('general.alignment');
  if (al !== undefined) {
    // llama.cpp: GGML_PAD needs a positive power-of-two integer (gguf.cpp checks `(align & (align-1)) == 0`).
    if (typeof al !== 'number' || !Number.isSafeInteger(al) || al <= 0 || al > 2 ** 30 || (al & (al - 1)) !== 0) {
      throw new FormatError(file, `general.alignment is ${typeof al === 'object' ? ggufValueText(al) : JSON.stringify(String(al))}; it must be a positive integer power of two (llama.cpp refuses anything else)`);
    }
    alignment = al;
  }
  if (nTensors * 24 > c.remaining) throw new FormatError(file, `claims ${nTensors} tensors but only ${c.remaining} bytes follow the metadata`);
  const infos: { name: string; ne: number[]; type: number; offset: number }[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`name of tensor ${i}`, true);
    const at = c.pos;
    const nd = c.u32();
    if (nd > GGUF_MAX_DIMS) c.fail(`tensor "${name}" has ${nd} dimensions (at most ${GGUF_MAX_DIMS})`, at);
    const ne: number[] = [];
    for (let d = 0; d < nd; d++) ne.push(c.count(`tensor "${name}" dimension`, Number.MAX_SAFE_INTEGER));
    const type = c.u32();
    const offset = c.count(`tensor "${name}" offset`, Number.MAX_SAFE_INTEGER);
    if (seen.has(name)) throw new FormatError(file, `tensor "${name}" is listed twice`);
    seen.add(name);
    infos.push({ name, ne, type, offset });
  }
  const dataStart = Math.ceil(c.pos / alignment) * alignment;
  const tensors: GgufTensorInfo[] = [];
  for (const t of infos) {
    const gt = GGML_TYPES[t.type];
    if (!gt) throw new FormatError(file, `tensor "${t.name}" has unknown ggml type ${t.type}`);
    let numel = 1;
    for (const d of t.ne) {
      numel *= d;
      if (!Number.isSafeInteger(numel)) throw new FormatError(file, `tensor "${t.name}" dims ${JSON.stringify(t.ne)} have too many elements`);
    }
    if (t.ne.length > 0 && t.ne[0] % gt.block !== 0) {
      throw new FormatError(file, `tensor "${t.name}" row length ${t.ne[0]} is not a multiple of the ${gt.name} block size ${gt.block}`);
    }
    const byteLength = (numel / gt.block) * gt.size;
    if (t.offset % alignment !== 0) throw new FormatError(file, `tensor "${t.name}" data offset ${t.offset} is not a multiple of the alignment ${alignment}`);
    if (dataStart + t.offset + byteLength > f.size) {
      throw new FormatError(file, `tensor "${t.name}" (${gt.name}, ${byteLength} bytes at data offset ${t.offset}) extends past the end of the file (${f.size} bytes): truncated?`);
    }
    tensors.push({
      name: t.name, dtype: gt.dtype ?? 'F32', shape: [...t.ne].reverse(), numel, offset: dataStart + t.offset, byteLength, file,
      ggmlType: gt.name, ne: t.ne, readable: gt.dtype !== undefined || DEQUANT.has(gt.name),
      quantized: gt.dtype === undefined ? gt.name : undefined,
    });
  }
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].offset < sorted[i - 1].offset + sorted[i - 1].byteLength) {
      throw new FormatError(file, `tensors "${sorted[i - 1].name}" and "${sorted[i].name}" overlap in the data section`);
    }
  }
  if (nTensors === 0 && c.pos < f.size) warnings.push(`${f.size - c.pos} bytes after the metadata of a file with no tensors`);
  const unreadable = tensors.filter((t) => !t.readable);
  if (unreadable.length) warnings.push(`${unreadable.length} tensor(s) use types LoRA Lens cannot dequantise (${[...new Set(unreadable.map((t) => t.ggmlType))].join(', ')})`);
  return { file, fileSize: f.size, version, kv, tensors, alignment, dataStart, warnings };
}

/** Metadata value as display text (arrays summarised). */
export function ggufValueText(v: GgufValue): string {
  if (typeof v === 'object') return `array<${v.type}>[${v.length}]`;
  return String(v);
}

// ---------------------------------------------------------------- dequantisation

const h16 = (b: Uint8Array, o: number): number => halfToFloat(b[o] | (b[o + 1] << 8));

/** Q4_K / Q5_K 6-bit scale and min of sub-block j from the 12 packed bytes at `q`. */
function scaleMinK4(j: number, b: Uint8Array, q: number): [number, number] {
  if (j < 4) return [b[q + j] & 63, b[q + j + 4] & 63];
  return [(b[q + j + 4] & 0xf) | ((b[q + j - 4] >> 6) << 4), (b[q + j + 4] >> 4) | ((b[q + j] >> 6) << 4)];
}

/**
 * Dequantises `n` elements of ggml type `type` (name) from raw block bytes to fp32.
 * @throws Error when the type is not supported or the byte count does not match.
 */
export function dequantize(type: string, b: Uint8Array, n: number, out?: Float32Array): Float32Array {
  const y = out ?? new Float32Array(n);
  const gt = Object.values(GGML_TYPES).find((t) => t.name === type);
  if (!gt) throw new Error(`unknown ggml type ${type}`);
  if (n % gt.block !== 0 || b.length !== (n / gt.block) * gt.size) throw new Error(`${type}: ${b.length} bytes do not hold ${n} elements`);
  const nb = n / gt.block;
  const sz = gt.size;
  switch (type) {
    case 'Q8_0':
      for (let i = 0; i < nb; i++) {
        const o = i * sz, d = h16(b, o);
        for (let j = 0; j < 32; j++) y[i * 32 + j] = d * ((b[o + 2 + j] << 24) >> 24);
      }
      break;
    case 'Q4_0': case 'Q4_1': {
      const hasMin = type === 'Q4_1';
      for (let i = 0; i < nb; i++) {
        const o = i * sz, d = h16(b, o), m = hasMin ? h16(b, o + 2) : 0, qs = o + (hasMin ? 4 : 2);
        for (let j = 0; j < 16; j++) {
          const q = b[qs + j];
          y[i * 32 + j] = hasMin ? (q & 0xf) * d + m : ((q & 0xf) - 8) * d;
          y[i * 32 + j + 16] = hasMin ? (q >> 4) * d + m : ((q >> 4) - 8) * d;
        }
      }
      break;
    }
    case 'Q5_0': case 'Q5_1': {
      const hasMin = type === 'Q5_1';
      for (let i = 0; i < nb; i++) {
        const o = i * sz, d = h16(b, o), m = hasMin ? h16(b, o + 2) : 0, ho = o + (hasMin ? 4 : 2), qs = ho + 4;
        const qh = (b[ho] | (b[ho + 1] << 8) | (b[ho + 2] << 16) | (b[ho + 3] << 24)) >>> 0;
        for (let j = 0; j < 16; j++) {
          const x0 = (b[qs + j] & 0xf) | (((qh >>> j) & 1) << 4);
          const x1 = (b[qs + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4);
          y[i * 32 + j] = hasMin ? x0 * d + m : (x0 - 16) * d;
          y[i * 32 + j + 16] = hasMin ? x1 * d + m : (x1 - 16) * d;
        }
      }
      break;
    }
    case 'Q8_K':
      for (let i = 0; i < nb; i++) {
        const o = i * sz;
        const d = new DataView(b.buffer, b.byteOffset + o, 4).getFloat32(0, true);
        for (let j = 0; j < 256; j++) y[i * 256 + j] = d * ((b[o + 4 + j] << 24) >> 24);
      }
      break;
    case 'Q2_K': // scales[16] qs[64] d dmin
      for (let i = 0; i < nb; i++) {
        const o = i * sz, d = h16(b, o + 80), dmin = h16(b, o + 82);
        for (let n2 = 0; n2 < 2; n2++) {
          for (let j = 0; j < 4; j++) {
            for (let l = 0; l < 32; l++) {
              const sc = b[o + 8 * n2 + 2 * j + (l >> 4)];
              const q = (b[o + 16 + 32 * n2 + l] >> (2 * j)) & 3;
              y[i * 256 + 128 * n2 + 32 * j + l] = d * (sc & 0xf) * q - dmin * (sc >> 4);
            }
          }
        }
      }
      break;
    case 'Q3_K': // hmask[32] qs[64] scales[12] d
      for (let i = 0; i < nb; i++) {
        const o = i * sz, d = h16(b, o + 108), s = o + 96;
        for (let n2 = 0; n2 < 2; n2++) {
          for (let j = 0; j < 4; j++) {
            const m = 1 << (4 * n2 + j);
            for (let l = 0; l < 32; l++) {
              const is = 8 * n2 + 2 * j + (l >> 4);
              const us = is < 4 ? (b[s + is] & 0xf) | ((b[s + is + 8] & 3) << 4)
                : is < 8 ? (b[s + is] & 0xf) | (((b[s + is + 4] >> 2) & 3) << 4)
                  : is < 12 ? (b[s + is - 8] >> 4) | (((b[s + is] >> 4) & 3) << 4)
                    : (b[s + is - 8] >> 4) | (((b[s + is - 4] >> 6) & 3) << 4);
              const q = ((b[o + 32 + 32 * n2 + l] >> (2 * j)) & 3) - (b[o + l] & m ? 0 : 4);
              y[i * 256 + 128 * n2 + 32 * j + l] = d * (us - 32) * q;
            }
          }
        }
      }
      break;
    case 'Q4_K': case 'Q5_K': { // d dmin scales[12] (qh[32]) qs[128]
      const five = type === 'Q5_K';
      for (let i = 0; i < nb; i++) {
        const o = i * sz, d = h16(b, o), dmin = h16(b, o + 2), sc = o + 4, qh = o + 16, qs = o + (five ? 48 : 16);
        for (let g = 0; g < 4; g++) {
          const [s1, m1] = scaleMinK4(2 * g, b, sc);
          const [s2, m2] = scaleMinK4(2 * g + 1, b, sc);
          for (let l = 0; l < 32; l++) {
            const q = b[qs + 32 * g + l];
            const h1 = five && b[qh + l] & (1 << (2 * g)) ? 16 : 0;
            const h2 = five && b[qh + l] & (2 << (2 * g)) ? 16 : 0;
            y[i * 256 + 64 * g + l] = d * s1 * ((q & 0xf) + h1) - dmin * m1;
            y[i * 256 + 64 * g + 32 + l] = d * s2 * ((q >> 4) + h2) - dmin * m2;
          }
        }
      }
      break;
    }
    case 'Q6_K': // ql[128] qh[64] scales[16] (int8) d
      for (let i = 0; i < nb; i++) {
        const o = i * sz, d = h16(b, o + 208);
        for (let n2 = 0; n2 < 2; n2++) {
          const ql = o + 64 * n2, qh = o + 128 + 32 * n2, sc = o + 192 + 8 * n2;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4;
            const s = (k: number): number => (b[sc + is + k] << 24) >> 24;
            const q1 = ((b[ql + l] & 0xf) | ((b[qh + l] & 3) << 4)) - 32;
            const q2 = ((b[ql + l + 32] & 0xf) | (((b[qh + l] >> 2) & 3) << 4)) - 32;
            const q3 = ((b[ql + l] >> 4) | (((b[qh + l] >> 4) & 3) << 4)) - 32;
            const q4 = ((b[ql + l + 32] >> 4) | (((b[qh + l] >> 6) & 3) << 4)) - 32;
            const base = i * 256 + 128 * n2;
            y[base + l] = d * s(0) * q1;
            y[base + l + 32] = d * s(2) * q2;
            y[base + l + 64] = d * s(4) * q3;
            y[base + l + 96] = d * s(6) * q4;
          }
        }
      }
      break;
    default:
      throw new Error(`dequantisation of ${type} is not implemented`);
  }
  return y;
}

// ---------------------------------------------------------------- store

/** TensorStore over a GGUF file. Shapes are in torch order (ne reversed). */
export class GgufStore implements TensorStore {
  private f: RangeFile | undefined;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  readonly metadata: Record<string, string> = {};
  readonly warnings: string[];
  readonly totalBytes: number;
  constructor(public readonly path: string, public readonly header: GgufHeader) {
    this.tensors = new Map(header.tensors.map((t) => [t.name, t]));
    this.warnings = header.warnings;
    this.totalBytes = header.fileSize;
    for (const [k, v] of header.kv) setOwn(this.metadata, k, ggufValueText(v));
  }

  static openFile(file: string): GgufStore {
    return new GgufStore(file, readGgufHeader(file));
  }

  get kv(): Map<string, GgufValue> { return this.header.kv; }

  info(name: string): GgufTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new FormatError(this.path, `has no tensor named "${name}"`);
    return t;
  }

  /** Stored bytes (quantised blocks for quantised types). */
  readRaw(name: string): Uint8Array {
    const t = this.info(name);
    if (!this.f) this.f = RangeFile.open(t.file);
    return this.f.read(t.offset, t.byteLength);
  }

  readF32(name: string, out?: Float32Array): Float32Array {
    const t = this.info(name);
    if (!t.readable) throw new FormatError(this.path, `tensor "${name}" is ${t.ggmlType}, which LoRA Lens cannot dequantise`);
    const raw = this.readRaw(name);
    if (t.ggmlType === t.dtype) return toFloat32(raw, t.dtype, out);
    return dequantize(t.ggmlType, raw, t.numel, out);
  }

  readF64(name: string): Float64Array {
    return Float64Array.from(this.readF32(name));
  }

  close(): void {
    this.f?.close();
    this.f = undefined;
  }
}

// ---------------------------------------------------------------- LoRA adapters

/**
 * Opens a llama.cpp GGUF LoRA adapter (`general.type = adapter`, `adapter.type = lora`).
 * Tensors `<base>.lora_a` have ne = [in, r] (torch [r, in], PEFT A) and `<base>.lora_b` have
 * ne = [r, out] (torch [out, r], PEFT B); s = adapter.lora.alpha / r (alpha missing: s = 1).
 */
export function openGgufAdapter(file: string): Adapter {
  const store = GgufStore.openFile(file);
  try {
    const kv = store.kv;
    const gtype = kv.get('general.type');
    const atype = kv.get('adapter.type');
    if (gtype !== 'adapter') {
      throw new FormatError(file, `is a GGUF ${typeof gtype === 'string' ? `"${gtype}"` : 'model'} file (general.type is ${gtype === undefined ? 'missing' : JSON.stringify(String(gtype))}), not a LoRA adapter`);
    }
    if (atype !== undefined && atype !== 'lora') throw new FormatError(file, `adapter.type is ${JSON.stringify(String(atype))}; only LoRA adapters are analysed`);
    const alphaV = kv.get('adapter.lora.alpha');
    const alpha = typeof alphaV === 'number' && Number.isFinite(alphaV) && alphaV !== 0 ? alphaV : undefined;
    const warnings: string[] = [...store.warnings];
    if (alpha === undefined) warnings.push('adapter.lora.alpha is missing (or 0): llama.cpp then applies the user scale only, so s = 1 is assumed');
    const pairs = new Map<string, { A?: GgufTensorInfo; B?: GgufTensorInfo }>();
    const other: TensorInfo[] = [];
    for (const t of store.tensors.values()) {
      const m = /^(.+)\.lora_(a|b)$/.exec(t.name);
      if (!m) { other.push(t); continue; }
      const e = pairs.get(m[1]) ?? {};
      e[m[2] === 'a' ? 'A' : 'B'] = t;
      pairs.set(m[1], e);
    }
    const modules: LoraModule[] = [];
    for (const [raw, e] of pairs) {
      if (!e.A || !e.B) {
        warnings.push(`"${raw}" has only its lora_${e.A ? 'a' : 'b'} tensor; skipped`);
        continue;
      }
      for (const t of [e.A, e.B]) {
        if (t.shape.length !== 2) throw new FormatError(file, `LoRA tensor "${t.name}" has ${t.shape.length} dims; expected a matrix`);
        if (!t.readable) throw new FormatError(file, `LoRA tensor "${t.name}" is ${t.ggmlType}, which LoRA Lens cannot dequantise`);
      }
      const [r, inF] = e.A.shape;
      const [outF, rb] = e.B.shape;
      if (r !== rb) {
        const hint = e.A.ne[1] === e.B.ne[1] ? ' (lora_a is not transposed: an adapter from the old "finetune" example?)' : '';
        throw new FormatError(file, `"${raw}": lora_a ne ${JSON.stringify(e.A.ne)} and lora_b ne ${JSON.stringify(e.B.ne)} disagree on the rank${hint}`);
      }
      const shapeProblem = loraShapeProblem(r, inF, outF);
      if (shapeProblem) throw new FormatError(file, `"${raw}" (lora_a ne ${JSON.stringify(e.A.ne)}, lora_b ne ${JSON.stringify(e.B.ne)}) ${shapeProblem}`);
      const name = raw.replace(/\.weight$/, '');
      modules.push({
        name, layer: layerOf(name), kind: kindOf(name), A: { tensor: e.A, transposed: false }, B: { tensor: e.B, transposed: false },
        rank: r, outFeatures: outF, inFeatures: inF, alpha,
        scale: alpha !== undefined ? alpha / r : 1,
        scaleSource: alpha !== undefined ? `alpha/r = ${alpha}/${r} (adapter.lora.alpha)` : 'adapter.lora.alpha missing: scale 1',
        fanInFanOut: false,
      });
    }
    if (modules.length === 0) throw new FormatError(file, `GGUF adapter has no lora_a/lora_b tensor pairs (${store.tensors.size} tensors)`);
    modules.sort(compareModules);
    const arch = kv.get('general.architecture');
    const ranks = new Set(modules.map((m) => m.rank));
    const summary: AdapterSummary = {
      rank: ranks.size === 1 ? [...ranks][0] : undefined, alpha,
      targetModules: [...new Set(modules.map((m) => m.kind))],
      useRslora: false, useDora: false, fanInFanOut: false,
      baseModel: typeof arch === 'string' ? arch : undefined,
      peftType: 'llama.cpp GGUF LoRA',
      hasRankPattern: false, hasAlphaPattern: false, modulesToSave: [],
    };
    return { format: 'gguf', path: file, weightsFile: file, name: path.basename(file), summary, modules, otherTensors: other, store, warnings };
  } catch (e) {
    store.close();
    throw e;
  }
}
