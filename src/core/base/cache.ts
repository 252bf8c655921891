/**
 * Disk cache of decompositions (singular bases, spectra) of base-model tensors.
 *
 * Key: (file path, tensor name, file mtime, file size, method string such as "leftU-exact" or
 * "rsvd-k256-p8-q2-s1234"). One binary file per entry:
 *   magic "LLDC1\0\0\0" | u32 json length | JSON {key, arrays:[{name,length}], meta} | pad to 8 |
 *   fp64 data of every array in order | u32 FNV-1a checksum of the data bytes
 * plus `index.json` (entry → bytes, lastUsed) used only for the size cap (LRU eviction).
 * Any file that fails validation (magic, lengths, checksum, key) is ignored and deleted: the
 * caller recomputes. The index is rebuilt from the folder when it is missing or corrupt.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface CacheKey {
  file: string;
  tensor: string;
  mtimeMs: number;
  size: number;
  method: string;
}

export interface CacheEntry {
  arrays: Record<string, Float64Array>;
  meta: Record<string, unknown>;
}

const MAGIC = Buffer.from('LLDC1\0\0\0', 'latin1');

function fnv1a(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i];
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function keyString(k: CacheKey): string {
  return JSON.stringify([path.resolve(k.file), k.tensor, k.mtimeMs, k.size, k.method]);
}

export class DecompCache {
  readonly maxBytes: number;
  /** Counters for diagnostics/tests. */
  stats = { hits: 0, misses: 0, corrupt: 0, evicted: 0 };

  constructor(readonly dir: string, opts: { maxBytes?: number } = {}) {
    this.maxBytes = opts.maxBytes ?? 512 * 1024 * 1024;
    fs.mkdirSync(dir, { recursive: true });
  }

  /** Key for a tensor of a weights file (stats the file for mtime and size). */
  static keyFor(file: string, tensor: string, method: string): CacheKey {
    const st = fs.statSync(file);
    return { file: path.resolve(file), tensor, mtimeMs: Math.floor(st.mtimeMs), size: st.size, method };
  }

  private fileOf(k: CacheKey): string {
    return path.join(this.dir, crypto.createHash('sha1').update(keyString(k)).digest('hex') + '.bin');
  }

  private readIndex(): Record<string, { bytes: number; lastUsed: number }> {
    try {
      const j = JSON.parse(fs.readFileSync(path.join(this.dir, 'index.json'), 'utf8'));
      if (j && typeof j === 'object' && !Array.isArray(j)) return j;
    } catch {
      /* missing or corrupt: rebuilt below */
    }
    const idx: Record<string, { bytes: number; lastUsed: number }> = {};
    for (const f of fs.readdirSync(this.dir)) {
      if (!f.endsWith('.bin')) continue;
      try {
        const st = fs.statSync(path.join(this.dir, f));
        idx[f] = { bytes: st.size, lastUsed: st.mtimeMs };
      } catch {
        /* raced */
      }
    }
    return idx;
  }

  private writeIndex(idx: Record<string, { bytes: number; lastUsed: number }>): void {
    const tmp = path.join(this.dir, `index.json.${process.pid}.tmp`);
    fs.writeFileSync(tmp, JSON.stringify(idx));
    fs.renameSync(tmp, path.join(this.dir, 'index.json'));
  }

  private touch(name: string, bytes: number): void {
    const idx = this.readIndex();
    idx[name] = { bytes, lastUsed: Date.now() };
    this.writeIndex(idx);
  }

  get(k: CacheKey): CacheEntry | undefined {
    const f = this.fileOf(k);
    let buf: Buffer;
    try {
      buf = fs.readFileSync(f);
    } catch {
      this.stats.misses++;
      return undefined;
    }
    const e = this.decode(buf, k);
    if (!e) {
      this.stats.corrupt++;
      this.stats.misses++;
      try {
        fs.unlinkSync(f);
      } catch {
        /* ignore */
      }
      return undefined;
    }
    this.stats.hits++;
    this.touch(path.basename(f), buf.length);
    return e;
  }

  private decode(buf: Buffer, k: CacheKey): CacheEntry | undefined {
    try {
      if (buf.length < 16 || !buf.subarray(0, 8).equals(MAGIC)) return undefined;
      const jl = buf.readUInt32LE(8);
      if (12 + jl > buf.length) return undefined;
      const head = JSON.parse(buf.subarray(12, 12 + jl).toString('utf8')) as { key: string; arrays: { name: string; length: number }[]; meta: Record<string, unknown> };
      if (head.key !== keyString(k) || !Array.isArray(head.arrays)) return undefined;
      const start = Math.ceil((12 + jl) / 8) * 8;
      const total = head.arrays.reduce((s, a) => s + a.length, 0);
      if (!head.arrays.every((a) => Number.isInteger(a.length) && a.length >= 0)) return undefined;
      if (start + total * 8 + 4 !== buf.length) return undefined;
      const data = buf.subarray(start, start + total * 8);
      if (fnv1a(data) !== buf.readUInt32LE(start + total * 8)) return undefined;
      const arrays: Record<string, Float64Array> = {};
      let off = start;
      for (const a of head.arrays) {
        const out = new Float64Array(a.length);
        new Uint8Array(out.buffer).set(buf.subarray(off, off + a.length * 8));
        arrays[a.name] = out;
        off += a.length * 8;
      }
      return { arrays, meta: head.meta ?? {} };
    } catch {
      return undefined;
    }
  }

  put(k: CacheKey, arrays: Record<string, Float64Array>, meta: Record<string, unknown> = {}): void {
    const list = Object.entries(arrays);
    const head = Buffer.from(JSON.stringify({ key: keyString(k), arrays: list.map(([name, a]) => ({ name, length: a.length })), meta }), 'utf8');
    const start = Math.ceil((12 + head.length) / 8) * 8;
    const total = list.reduce((s, [, a]) => s + a.length, 0);
    const buf = Buffer.alloc(start + total * 8 + 4);
    MAGIC.copy(buf, 0);
    buf.writeUInt32LE(head.length, 8);
    head.copy(buf, 12);
    let off = start;
    for (const [, a] of list) {
      buf.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), off);
      off += a.byteLength;
    }
    buf.writeUInt32LE(fnv1a(buf.subarray(start, off)), off);
    if (buf.length > this.maxBytes) return; // larger than the whole cache: do not store
    const f = this.fileOf(k);
    const tmp = `${f}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, buf);
    fs.renameSync(tmp, f);
    this.touch(path.basename(f), buf.length);
    this.evict();
  }

  /** Cached value, or compute, store and return it. */
  async getOrCompute(k: CacheKey, compute: () => Promise<CacheEntry> | CacheEntry): Promise<CacheEntry & { cached: boolean }> {
    const hit = this.get(k);
    if (hit) return { ...hit, cached: true };
    const e = await compute();
    this.put(k, e.arrays, e.meta);
    return { ...e, cached: false };
  }

  /** Removes least recently used entries until the total is under maxBytes. */
  evict(): void {
    const idx = this.readIndex();
    for (const name of Object.keys(idx)) if (!fs.existsSync(path.join(this.dir, name))) delete idx[name];
    let total = Object.values(idx).reduce((s, e) => s + e.bytes, 0);
    const byAge = Object.entries(idx).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    for (const [name, e] of byAge) {
      if (total <= this.maxBytes) break;
      try {
        fs.unlinkSync(path.join(this.dir, name));
      } catch {
        /* already gone */
      }
      delete idx[name];
      total -= e.bytes;
      this.stats.evicted++;
    }
    this.writeIndex(idx);
  }

  clear(): void {
    for (const f of fs.readdirSync(this.dir)) if (f.endsWith('.bin') || f === 'index.json') fs.rmSync(path.join(this.dir, f), { force: true });
  }
}
