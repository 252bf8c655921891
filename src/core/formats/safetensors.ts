/**
 * safetensors reader (own implementation).
 *
 * Why not a library: the npm packages for safetensors either read the whole file into memory or
 * only parse remote headers (@huggingface/hub parseSafetensorsMetadata works over HTTP ranges). The
 * format is 8 bytes + JSON + raw little-endian data, so a header-only, byte-range reader with strict
 * validation is ~200 lines and lets us guarantee the two properties users need: a 16 GB model opens
 * instantly (only the header is read), and a corrupt header can never trigger a huge allocation.
 *
 * Layout: u64 LE header length N | N bytes of UTF-8 JSON | data buffer. Each tensor entry is
 * {dtype, shape, data_offsets:[begin,end]} with offsets relative to the data buffer.
 */
import * as path from 'node:path';
import { DType, DTYPE_SIZE, isDType, toFloat32, toFloat64 } from './dtype';
import { FormatError } from './errors';
import { RangeFile, sniffPlaceholder } from './fileio';
import type { TensorInfo, TensorStore } from './store';
// TensorInfo and TensorStore live in store.ts; re-exported for existing callers.
export type { TensorInfo, TensorStore };
import { parseJsonText, record, setOwn, shortJson } from './safejson';

/** Largest header we accept (the reference Rust reader rejects > 100 MB too). */
export const MAX_HEADER_BYTES = 100_000_000;
/**
 * Most tensors in one safetensors file or sharded index. Real files hold a few thousand (the index of
 * DeepSeek-V3 ~92k, a LoRA on every expert of Qwen3-235B ~72k); each entry costs ~1.5 KB of JS
 * objects, so this bounds memory (measured: 120k tensors, `inspect` peaks near 250 MB RSS).
 */
export const MAX_TENSORS = 120_000;
/**
 * Most JSON values in a header (a tensor entry is ~12; a metadata entry 2), counted by a scan of
 * the text before parsing: a 94 MB header of tiny objects is refused without building them.
 */
export const MAX_HEADER_VALUES = 1_500_000;
/** Most `__metadata__` entries (kohya writes ~60; each entry costs ~0.5 KB of JS objects). */
export const MAX_METADATA_ENTRIES = 65_536;

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  headerLength: number;
  /** Absolute offset of the data buffer. */
  dataStart: number;
  tensors: TensorInfo[];
  metadata: Record<string, string>;
  /** Non-fatal observations (holes in the data buffer, trailing bytes...). */
  warnings: string[];
}

function fail(file: string, problem: string): never {
  throw new FormatError(file, problem);
}

/**
 * Reads and validates the header of a .safetensors file. Reads at most 8 + N bytes.
 * @throws FormatError naming the file and the problem.
 */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const f = RangeFile.open(file);
  try {
    return parseHeaderFrom(f);
  } finally {
    f.close();
  }
}

export function parseHeaderFrom(f: RangeFile): SafetensorsHeader {
  const file = f.path;
  const head = f.read(0, Math.min(f.size, 512));
  const placeholder = sniffPlaceholder(head, f.size);
  if (placeholder) fail(file, placeholder);
  if (f.size < 8) fail(file, `is only ${f.size} bytes long; a safetensors file starts with an 8-byte header length`);
  const n64 = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (n64 > BigInt(f.size - 8)) {
    fail(file, `header length ${n64} exceeds the file size (${f.size} bytes): truncated file or not a safetensors file`);
  }
  if (n64 > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${n64} is larger than the ${MAX_HEADER_BYTES}-byte limit`);
  const n = Number(n64);
  if (n < 2) fail(file, `header length ${n} is too small for a JSON header`);
  const raw = f.read(8, n);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(raw);
  } catch {
    fail(file, 'header is not valid UTF-8 (corrupt file?)');
  }
  if (!text.trimStart().startsWith('{')) fail(file, `header does not start with "{" (starts with ${JSON.stringify(text.slice(0, 20))}): not a safetensors file`);
  const json = parseJsonText(text, file, 'header', MAX_HEADER_VALUES);
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(file, 'header JSON is not an object');
  const dataStart = 8 + n;
  const dataSize = f.size - dataStart;
  const tensors: TensorInfo[] = [];
  const metadata: Record<string, string> = {};
  const warnings: string[] = [];
  const entries = Object.entries(json as Record<string, unknown>);
  if (entries.length > MAX_TENSORS + 1) fail(file, `header lists ${entries.length} entries, more than the ${MAX_TENSORS.toLocaleString('en-US')}-tensor limit`);
  for (const [name, v] of entries) {
    if (name.length > 4096) fail(file, `has a tensor name of ${name.length} characters (${JSON.stringify(name.slice(0, 40))}…; at most 4096)`);
    if (name === '__metadata__') {
      if (v === null) continue; // mlx-lm writes "__metadata__": null
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(file, '__metadata__ is not an object of strings');
      const mEntries = Object.entries(v as Record<string, unknown>);
      if (mEntries.length > MAX_METADATA_ENTRIES) fail(file, `__metadata__ has ${mEntries.length} entries, more than the ${MAX_METADATA_ENTRIES}-entry limit`);
      for (const [k, mv] of mEntries) {
        if (typeof mv === 'string') setOwn(metadata, k, mv);
        else {
          setOwn(metadata, k, shortJson(mv, 4096));
          warnings.push(`__metadata__["${k}"] is not a string (kept as JSON text)`);
        }
      }
      continue;
    }
    if (typeof v !== 'object' || v === null) fail(file, `entry "${name}" is not an object`);
    const e = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!isDType(e.dtype)) fail(file, `tensor "${name}" has unsupported dtype ${shortJson(e.dtype)}`);
    if (!Array.isArray(e.shape) || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(file, `tensor "${name}" has an invalid shape ${shortJson(e.shape)}`);
    }
    const shape = e.shape as number[];
    if (shape.length > 8) fail(file, `tensor "${name}" has ${shape.length} dimensions (at most 8 are accepted)`);
    let numel = 1;
    for (const d of shape) {
      numel *= d;
      if (!Number.isSafeInteger(numel)) fail(file, `tensor "${name}" shape ${JSON.stringify(shape)} has too many elements`);
    }
    const off = e.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((x) => Number.isSafeInteger(x) && x >= 0)) {
      fail(file, `tensor "${name}" has invalid data_offsets ${shortJson(off)}`);
    }
    const [begin, end] = off as [number, number];
    if (end < begin) fail(file, `tensor "${name}" has data_offsets [${begin}, ${end}] with end before begin`);
    const expected = numel * DTYPE_SIZE[e.dtype];
    if (end - begin !== expected) {
      fail(file, `tensor "${name}" is ${end - begin} bytes but shape ${JSON.stringify(shape)} × ${e.dtype} needs ${expected} bytes`);
    }
    if (end > dataSize) {
      fail(file, `tensor "${name}" ends at byte ${end} of the data buffer but the file holds only ${dataSize} data bytes (truncated file?)`);
    }
    tensors.push({ name, dtype: e.dtype, shape, numel, offset: dataStart + begin, byteLength: expected, file });
  }
  // Overlaps and holes: sort by offset and walk once.
  const sorted = [...tensors].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let pos = dataStart;
  let holes = 0;
  for (const t of sorted) {
    if (t.byteLength === 0) continue;
    if (t.offset < pos) {
      const prev = sorted.find((p) => p !== t && p.byteLength > 0 && p.offset < t.offset + t.byteLength && t.offset < p.offset + p.byteLength);
      fail(file, `tensors "${prev?.name ?? '?'}" and "${t.name}" overlap in the data buffer`);
    }
    if (t.offset > pos) holes += t.offset - pos;
    pos = t.offset + t.byteLength;
  }
  if (holes > 0) warnings.push(`${holes} bytes of the data buffer belong to no tensor`);
  if (pos < f.size && tensors.length > 0) warnings.push(`${f.size - pos} trailing bytes after the last tensor`);
  return { file, fileSize: f.size, headerLength: n, dataStart, tensors, metadata, warnings };
}

/** Tensor store over safetensors files; opens each file at most once and keeps it open until close(). */
export class SafetensorsStore implements TensorStore {
  private readonly open = new Map<string, RangeFile>();
  constructor(
    public readonly path: string,
    public readonly tensors: ReadonlyMap<string, TensorInfo>,
    public readonly metadata: Record<string, string>,
    public readonly warnings: string[],
    public readonly totalBytes: number,
  ) {}

  static openFile(file: string): SafetensorsStore {
    const h = readSafetensorsHeader(file);
    return new SafetensorsStore(file, new Map(h.tensors.map((t) => [t.name, t])), h.metadata, h.warnings, h.fileSize);
  }

  /** Opens a `*.safetensors.index.json` (sharded checkpoint): reads the index and each shard's header. */
  static openIndex(indexFile: string): SafetensorsStore {
    const f = RangeFile.open(indexFile);
    let index: { weight_map?: Record<string, string>; metadata?: Record<string, unknown> };
    try {
      if (f.size > 64_000_000) throw new FormatError(indexFile, `index file is ${f.size} bytes, larger than the 64 MB limit`);
      const text = Buffer.from(f.read(0, f.size)).toString('utf8');
      const placeholder = sniffPlaceholder(Buffer.from(text.slice(0, 512), 'latin1'), f.size);
      if (placeholder && !text.trimStart().startsWith('{')) throw new FormatError(indexFile, placeholder);
      index = parseJsonText(text, indexFile, 'index', MAX_HEADER_VALUES) as typeof index;
    } finally {
      f.close();
    }
    if (typeof index !== 'object' || index === null || Array.isArray(index)) throw new FormatError(indexFile, 'is not a JSON object');
    if (!index.weight_map || typeof index.weight_map !== 'object' || Array.isArray(index.weight_map)) throw new FormatError(indexFile, 'has no "weight_map" object');
    const dir = path.dirname(indexFile);
    // One Map per shard: each weight_map entry is an O(1) lookup (a 300k-entry index stays linear).
    const shards = new Map<string, { h: SafetensorsHeader; byName: Map<string, TensorInfo> }>();
    const tensors = new Map<string, TensorInfo>();
    const warnings: string[] = [];
    let total = 0;
    const wm = Object.entries(index.weight_map);
    if (wm.length > MAX_TENSORS) throw new FormatError(indexFile, `weight_map lists ${wm.length} tensors, more than the ${MAX_TENSORS.toLocaleString('en-US')}-tensor limit`);
    for (const [name, shard] of wm) {
      if (typeof shard !== 'string' || shard.includes('..') || path.isAbsolute(shard)) {
        throw new FormatError(indexFile, `weight_map["${name.slice(0, 200)}"] = ${shortJson(shard)} is not a file name in the same folder`);
      }
      let s = shards.get(shard);
      if (!s) {
        const h = readSafetensorsHeader(path.join(dir, shard));
        s = { h, byName: new Map(h.tensors.map((t) => [t.name, t])) };
        shards.set(shard, s);
        total += h.fileSize;
        for (const w of h.warnings) warnings.push(`${shard}: ${w}`);
      }
      const t = s.byName.get(name);
      if (!t) throw new FormatError(indexFile, `weight_map says "${name.slice(0, 200)}" is in ${shard}, but that shard has no such tensor`);
      tensors.set(name, t);
    }
    let unlisted = 0;
    for (const [shard, { h }] of shards) {
      for (const t of h.tensors) {
        if (tensors.has(t.name)) continue;
        if (unlisted++ < 20) warnings.push(`${shard} holds "${t.name}", which the index does not list`);
      }
    }
    if (unlisted > 20) warnings.push(`… and ${unlisted - 20} more tensors the index does not list`);
    const md: Record<string, string> = {};
    const imd = index.metadata;
    if (typeof imd === 'object' && imd !== null && !Array.isArray(imd)) {
      for (const [k, v] of Object.entries(imd)) setOwn(md, k, typeof v === 'string' ? v : shortJson(v, 4096));
    }
    return new SafetensorsStore(indexFile, tensors, md, warnings, total);
  }

  private fileFor(t: TensorInfo): RangeFile {
    let f = this.open.get(t.file);
    if (!f) {
      f = RangeFile.open(t.file);
      this.open.set(t.file, f);
    }
    return f;
  }

  info(name: string): TensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new FormatError(this.path, `has no tensor named "${name}"`);
    return t;
  }

  readRaw(name: string): Uint8Array {
    const t = this.info(name);
    return this.fileFor(t).read(t.offset, t.byteLength);
  }

  readRawInto(name: string, into: Uint8Array): Uint8Array {
    const t = this.info(name);
    return this.fileFor(t).read(t.offset, t.byteLength, into.subarray(0, t.byteLength));
  }

  readF32(name: string, out?: Float32Array): Float32Array {
    const t = this.info(name);
    return toFloat32(this.readRaw(name), t.dtype, out);
  }

  readF64(name: string): Float64Array {
    const t = this.info(name);
    return toFloat64(this.readRaw(name), t.dtype);
  }

  close(): void {
    for (const f of this.open.values()) f.close();
    this.open.clear();
  }
}

/** Serialises tensors to safetensors bytes (header padded to 8 bytes, tensors in the given order). */
export function encodeSafetensors(
  tensors: { name: string; dtype: DType; shape: number[]; data: Uint8Array }[],
  metadata?: Record<string, string>,
): Buffer {
  // Null prototype: a tensor named "__proto__" or "constructor" is an ordinary key (never dropped).
  const header = record<unknown>();
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let pos = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || Object.prototype.hasOwnProperty.call(header, t.name)) throw new Error(`encodeSafetensors: tensor name "${t.name}" is used twice or reserved`);
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel * DTYPE_SIZE[t.dtype] !== t.data.byteLength) {
      throw new Error(`encodeSafetensors: "${t.name}" has ${t.data.byteLength} bytes, shape ${JSON.stringify(t.shape)} ${t.dtype} needs ${numel * DTYPE_SIZE[t.dtype]}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.data.byteLength] };
    pos += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const hb = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + hb.length + pos);
  out.writeBigUInt64LE(BigInt(hb.length), 0);
  hb.copy(out, 8);
  let o = 8 + hb.length;
  for (const t of tensors) {
    out.set(t.data, o);
    o += t.data.byteLength;
  }
  return out;
}
