/**
 * PyTorch checkpoints (`torch.save`, torch >= 1.6): a zip archive, entries *stored* (uncompressed),
 *   <prefix>/data.pkl      the pickled object (a state dict)
 *   <prefix>/data/<key>    one raw little-endian storage per key
 *   <prefix>/byteorder     "little" (absent in older files: little)
 * The zip central directory is parsed here (incl. ZIP64); data.pkl goes through the restricted
 * reader in pickle.ts, which never executes anything. Tensors point into the storage entries by
 * absolute file offset, so the result is an ordinary TensorStore read by byte range.
 */
import * as path from 'node:path';
import { DTYPE_SIZE } from './dtype';
import { FormatError } from './errors';
import { RangeFile, sniffPlaceholder } from './fileio';
import { collectTensors, MAX_PICKLE_BYTES, parsePickle } from './pickle';
import { SafetensorsStore, TensorInfo } from './safetensors';

export interface ZipEntry {
  name: string;
  /** Absolute offset of the entry's data. */
  dataOffset: number;
  size: number;
  method: number;
}

/** torch.save writes one entry per storage (+ data.pkl, version, byteorder): 250k covers any state dict we accept. */
const MAX_ZIP_ENTRIES = 250_000;

/** Reads the central directory of a zip file. Only stored entries are usable; the method is reported. */
export function readZipDirectory(f: RangeFile): ZipEntry[] {
  const file = f.path;
  const fail = (p: string): never => { throw new FormatError(file, p); };
  if (f.size < 22) fail(`is only ${f.size} bytes long: not a zip archive`);
  const tailLen = Math.min(f.size, 22 + 65535 + 20);
  const tail = f.read(f.size - tailLen, tailLen);
  const tv = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tv.getUint32(i, true) === 0x06054b50) { eocd = i; break; }
  }
  if (eocd < 0) fail('has no zip end-of-central-directory record (truncated or not a torch zip checkpoint)');
  let count = tv.getUint16(eocd + 10, true);
  let cdSize = tv.getUint32(eocd + 12, true);
  let cdOffset = tv.getUint32(eocd + 16, true);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    // ZIP64: locator 20 bytes before the EOCD.
    const loc = eocd - 20;
    if (loc < 0 || tv.getUint32(loc, true) !== 0x07064b50) fail('ZIP64 end-of-central-directory locator is missing');
    const z64off = Number(tv.getBigUint64(loc + 8, true));
    if (!Number.isSafeInteger(z64off) || z64off + 56 > f.size) fail('ZIP64 end-of-central-directory record is outside the file');
    const z = f.read(z64off, 56);
    const zv = new DataView(z.buffer, z.byteOffset, 56);
    if (zv.getUint32(0, true) !== 0x06064b50) fail('ZIP64 end-of-central-directory record has a bad signature');
    count = Number(zv.getBigUint64(32, true));
    cdSize = Number(zv.getBigUint64(40, true));
    cdOffset = Number(zv.getBigUint64(48, true));
  }
  if (!Number.isSafeInteger(cdOffset) || !Number.isSafeInteger(cdSize) || cdOffset + cdSize > f.size) {
    fail(`zip central directory (offset ${cdOffset}, ${cdSize} bytes) lies outside the file (${f.size} bytes): truncated?`);
  }
  if (count > MAX_ZIP_ENTRIES) fail(`zip central directory claims ${count} entries, more than the ${MAX_ZIP_ENTRIES} a torch checkpoint needs`);
  if (count * 46 > cdSize) fail(`zip central directory claims ${count} entries but holds only ${cdSize} bytes`);
  const cd = f.read(cdOffset, cdSize);
  const cv = new DataView(cd.buffer, cd.byteOffset, cd.byteLength);
  const entries: ZipEntry[] = [];
  let p = 0;
  const dec = new TextDecoder('utf-8');
  for (let i = 0; i < count; i++) {
    if (p + 46 > cdSize || cv.getUint32(p, true) !== 0x02014b50) fail(`zip central directory entry ${i} is malformed`);
    const flags = cv.getUint16(p + 8, true);
    const method = cv.getUint16(p + 10, true);
    let csize = cv.getUint32(p + 20, true);
    let usize = cv.getUint32(p + 24, true);
    const nlen = cv.getUint16(p + 28, true);
    const xlen = cv.getUint16(p + 30, true);
    const clen = cv.getUint16(p + 32, true);
    let lho = cv.getUint32(p + 42, true);
    if (p + 46 + nlen + xlen + clen > cdSize) fail(`zip central directory entry ${i} runs past the directory`);
    const name = dec.decode(cd.subarray(p + 46, p + 46 + nlen));
    // ZIP64 extra field: the 0xffffffff fields follow in order usize, csize, offset.
    let x = p + 46 + nlen;
    const xend = x + xlen;
    while (x + 4 <= xend) {
      const id = cv.getUint16(x, true);
      const sz = cv.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        const next = (): number => {
          if (q + 8 > x + 4 + sz) fail(`zip entry "${name}" has a short ZIP64 extra field`);
          const v = Number(cv.getBigUint64(q, true));
          q += 8;
          return v;
        };
        if (usize === 0xffffffff) usize = next();
        if (csize === 0xffffffff) csize = next();
        if (lho === 0xffffffff) lho = next();
      }
      x += 4 + sz;
    }
    p += 46 + nlen + xlen + clen;
    if (flags & 1) fail(`zip entry "${name}" is encrypted`);
    if (!Number.isSafeInteger(lho) || lho + 30 > f.size) fail(`zip entry "${name}" has a local header outside the file`);
    const lh = f.read(lho, 30);
    const lv = new DataView(lh.buffer, lh.byteOffset, 30);
    if (lv.getUint32(0, true) !== 0x04034b50) fail(`zip entry "${name}" has a bad local header signature at byte ${lho}`);
    const dataOffset = lho + 30 + lv.getUint16(26, true) + lv.getUint16(28, true);
    if (!Number.isSafeInteger(csize) || dataOffset + csize > f.size) {
      fail(`zip entry "${name}" (${csize} bytes at ${dataOffset}) extends past the end of the file (truncated?)`);
    }
    entries.push({ name, dataOffset, size: method === 0 ? usize : csize, method });
    if (method === 0 && usize !== csize) fail(`zip entry "${name}" is stored but its sizes disagree (${csize} vs ${usize})`);
  }
  return entries;
}

/** Tensor store over a torch zip checkpoint. */
export class TorchStore extends SafetensorsStore {
  /** Where the storages were saved (e.g. `cuda:0`); informational, we never need the device. */
  locations: string[] = [];
}

/** True when the first bytes look like a zip archive (torch >= 1.6 checkpoint). */
export function isZip(head: Uint8Array): boolean {
  return head.length >= 4 && head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
}

/**
 * Opens a torch.save checkpoint safely and returns its tensors (nested dict keys joined by '.').
 * @throws FormatError naming the file and the problem (compressed entries, forbidden pickle
 *   globals, non-contiguous tensors, storages outside their entry...).
 */
export function openTorchCheckpoint(file: string): TorchStore {
  const f = RangeFile.open(file);
  try {
    const head = f.read(0, Math.min(f.size, 512));
    const ph = sniffPlaceholder(head, f.size);
    if (ph) throw new FormatError(file, ph);
    if (!isZip(head)) {
      if (head[0] === 0x80) {
        throw new FormatError(file, 'is a legacy (pre-1.6, non-zip) torch.save file or a bare pickle; LoRA Lens reads only the zip format: re-save it with a recent torch, or convert to safetensors');
      }
      throw new FormatError(file, 'is not a PyTorch zip checkpoint (no "PK" zip signature)');
    }
    const entries = readZipDirectory(f);
    const pkl = entries.find((e) => e.name === 'data.pkl' || e.name.endsWith('/data.pkl'));
    if (!pkl) throw new FormatError(file, `zip archive has no data.pkl entry (entries: ${entries.slice(0, 5).map((e) => e.name).join(', ')}): not a torch checkpoint`);
    const prefix = pkl.name.slice(0, pkl.name.length - 'data.pkl'.length);
    const byName = new Map(entries.map((e) => [e.name, e]));
    const bo = byName.get(`${prefix}byteorder`);
    if (bo && bo.method === 0 && bo.size < 16) {
      const order = Buffer.from(f.read(bo.dataOffset, bo.size)).toString('latin1').trim();
      if (order !== 'little') throw new FormatError(file, `was saved with byteorder "${order}"; only little-endian checkpoints are supported`);
    }
    if (pkl.method !== 0) throw new FormatError(file, `zip entry "${pkl.name}" is compressed (method ${pkl.method}); torch.save writes stored entries: was the archive re-zipped?`);
    if (pkl.size > MAX_PICKLE_BYTES) throw new FormatError(file, `data.pkl is ${pkl.size} bytes, larger than the ${MAX_PICKLE_BYTES}-byte limit`);
    const root = parsePickle(f.read(pkl.dataOffset, pkl.size), file);
    const { tensors: found, ignored } = collectTensors(root, file);
    const warnings: string[] = [];
    if (ignored.length) warnings.push(`${ignored.length} non-tensor value(s) ignored, e.g. ${ignored.slice(0, 3).join(', ')}`);
    const tensors = new Map<string, TensorInfo>();
    const locations = new Set<string>();
    for (const { key, ref } of found) {
      const s = ref.storage;
      const entryName = `${prefix}data/${s.key}`;
      const e = byName.get(entryName);
      if (!e) throw new FormatError(file, `tensor "${key}" refers to storage "${s.key}", but the archive has no entry ${entryName}`);
      if (e.method !== 0) throw new FormatError(file, `storage entry "${entryName}" is compressed (method ${e.method}); torch.save writes stored entries: was the archive re-zipped?`);
      const el = DTYPE_SIZE[s.dtype];
      const { shape, stride, storageOffset } = ref;
      if (shape.length !== stride.length) throw new FormatError(file, `tensor "${key}" has ${shape.length} sizes but ${stride.length} strides`);
      if (shape.some((d) => d < 0) || storageOffset < 0) throw new FormatError(file, `tensor "${key}" has a negative size or offset`);
      let numel = 1;
      for (const d of shape) {
        numel *= d;
        if (!Number.isSafeInteger(numel)) throw new FormatError(file, `tensor "${key}" shape ${JSON.stringify(shape)} has too many elements`);
      }
      // Contiguity (row-major); dims of size 1 may carry any stride.
      let expect = 1;
      for (let i = shape.length - 1; i >= 0; i--) {
        if (shape[i] !== 1 && numel > 0 && stride[i] !== expect) {
          throw new FormatError(file, `tensor "${key}" is not contiguous (shape ${JSON.stringify(shape)}, stride ${JSON.stringify(stride)}); save it with .contiguous() or as safetensors`);
        }
        expect *= shape[i];
      }
      const byteLength = numel * el;
      const begin = storageOffset * el;
      if (begin + byteLength > e.size) {
        throw new FormatError(file, `tensor "${key}" (${byteLength} bytes at element ${storageOffset}) extends past its storage entry ${entryName} (${e.size} bytes)`);
      }
      if (s.numel * el > e.size) warnings.push(`storage ${s.key} claims ${s.numel} elements but its entry holds ${e.size} bytes`);
      if (tensors.has(key)) throw new FormatError(file, `tensor key "${key}" occurs twice after flattening nested dicts`);
      locations.add(s.location);
      tensors.set(key, { name: key, dtype: s.dtype, shape, numel, offset: e.dataOffset + begin, byteLength, file });
    }
    const store = new TorchStore(file, tensors, {}, warnings, f.size);
    store.locations = [...locations];
    return store;
  } finally {
    f.close();
  }
}

/** File names torch checkpoints usually have. */
export function isTorchCheckpointName(file: string): boolean {
  return /\.(bin|pt|pth|ckpt)$/i.test(path.basename(file));
}
