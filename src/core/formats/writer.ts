/**
 * Output side of adapter surgery: every operation writes NEW files or folders and never touches
 * its input.
 *
 * - writeNewFileAtomic: refuses an existing path, writes `<path>.tmp-<pid>` and then links it into
 *   place (link(2) fails if the target appeared meanwhile, so even a race cannot overwrite).
 * - writeAdapterFolder: builds the folder as `<outDir>.tmp-<pid>` and renames it when complete, so a
 *   half-written adapter is never visible under the final name.
 * - assertNotInput: the output path is never the input file, the input folder or the weights file.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DType } from './dtype';
import { encodeSafetensors, readSafetensorsHeader } from './safetensors';
import { PEFT_CONFIG, PEFT_WEIGHTS } from './peft';

export class OutputExistsError extends Error {
  constructor(public readonly target: string) {
    super(`${target}: already exists; LoRA Lens never overwrites files, choose a new output path`);
    this.name = 'OutputExistsError';
  }
}

export interface OutTensor {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

function real(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    // Not there yet: resolve the parent so /tmp vs /private/tmp style links still compare equal.
    try {
      return path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
    } catch {
      return abs;
    }
  }
}

/**
 * Throws when `output` is one of the `inputs` (file or folder), lies inside an input folder's
 * weights, or is the parent folder of an input file.
 */
export function assertNotInput(output: string, ...inputs: (string | undefined)[]): void {
  const o = real(output);
  for (const i of inputs) {
    if (!i) continue;
    const r = real(i);
    if (o === r) throw new Error(`${output}: the output path is the input ${i}; surgery always writes a new file or folder`);
    let isFile = false;
    try { isFile = fs.statSync(r).isFile(); } catch { /* missing input: only the equality check applies */ }
    if (isFile && o === path.dirname(r)) throw new Error(`${output}: the output folder is the folder of the input ${i}; choose a new folder`);
  }
}

const ERRNO_WORDS: Record<string, string> = {
  ENOSPC: 'no space left on the device', EDQUOT: 'disk quota exceeded', EROFS: 'the file system is read-only',
  EACCES: 'permission denied', EPERM: 'operation not permitted', EIO: 'input/output error', EFBIG: 'file too large for the file system',
  ENOTDIR: 'a part of the path is a file, not a folder', ENOENT: 'its folder does not exist', ENAMETOOLONG: 'the name is too long', EMFILE: 'too many open files',
};

/**
 * Error for a failed write: names the OUTPUT and the cause in words ("no space left on the
 * device (ENOSPC)"), never a bare "ENOSPC … write". Errors that already name a file pass through.
 */
export function writeFailure(target: string, e: unknown): Error {
  if (e instanceof OutputExistsError || (e instanceof Error && e.name === 'WriteError')) return e as Error;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (!code) return e instanceof Error ? e : new Error(String(e));
  const err = new Error(`${target}: could not be written: ${ERRNO_WORDS[code] ?? (e as Error).message} (${code}); nothing was left behind`);
  err.name = 'WriteError';
  return err;
}

/** Writes all of `bytes` to an open fd (a short write is retried, an error thrown). */
function writeAll(fd: number, bytes: Uint8Array): void {
  let off = 0;
  while (off < bytes.byteLength) off += fs.writeSync(fd, bytes, off, bytes.byteLength - off);
}

/** Writes a NEW file `file` (flag wx); on any failure the partial file is removed. */
function writeFresh(file: string, bytes: Uint8Array | string): void {
  const fd = fs.openSync(file, 'wx');
  let ok = false;
  try {
    writeAll(fd, typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (!ok) fs.rmSync(file, { force: true });
  }
}

/** Writes `bytes` to a path that must not exist yet (throws OutputExistsError otherwise). */
export function writeNewFileAtomic(target: string, bytes: Uint8Array): void {
  if (fs.existsSync(target)) throw new OutputExistsError(target);
  const tmp = `${target}.tmp-${process.pid}`;
  try {
    writeFresh(tmp, bytes);
    try {
      fs.linkSync(tmp, target); // fails with EEXIST instead of replacing
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw new OutputExistsError(target);
      // File systems without hard links: check and rename (small race window, documented).
      if (fs.existsSync(target)) throw new OutputExistsError(target);
      fs.renameSync(tmp, target);
      return;
    }
  } catch (e) {
    throw writeFailure(target, e);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
}

export interface SideFiles {
  files: { name: string; bytes: Uint8Array }[];
  /** "name (reason)" for every entry that was not copied. */
  skipped: string[];
}

/** Largest side file copied into an output folder. */
export const MAX_SIDE_FILE_BYTES = 16 * 1024 * 1024;

/**
 * Side files (README, tokenizer files...) of an adapter folder to copy into its output: only
 * regular files that live directly in `dir` are read. Symbolic links are never followed (a README
 * linking outside the folder or to /proc/self/environ is skipped), nor are folders, devices, FIFOs,
 * weight files, files over MAX_SIDE_FILE_BYTES or the names in `exclude`. Everything skipped is
 * listed in `skipped` for the caller to report.
 */
export function collectSideFiles(dir: string, exclude: Iterable<string>): SideFiles {
  const skip = new Set(exclude);
  const out: SideFiles = { files: [], skipped: [] };
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) {
    const n = d.name;
    if (skip.has(n) || /\.(safetensors|bin|pt|pth|ckpt|gguf)$/i.test(n) || /\.tmp-\d+$/.test(n)) continue;
    const p = path.join(dir, n);
    let st: fs.Stats;
    try { st = fs.lstatSync(p); } catch { out.skipped.push(`${n} (vanished)`); continue; }
    if (st.isSymbolicLink()) { out.skipped.push(`${n} (symbolic link, not followed)`); continue; }
    if (st.isDirectory()) { out.skipped.push(`${n}/ (folder)`); continue; }
    if (!st.isFile()) { out.skipped.push(`${n} (not a regular file)`); continue; }
    if (st.size > MAX_SIDE_FILE_BYTES) { out.skipped.push(`${n} (${st.size} bytes, over the ${MAX_SIDE_FILE_BYTES}-byte side-file limit)`); continue; }
    // O_NOFOLLOW: if the entry was swapped for a link after lstat, the open fails instead of following it.
    let fd: number;
    try { fd = fs.openSync(p, fs.constants.O_RDONLY | (fs.constants.O_NOFOLLOW ?? 0)); } catch { out.skipped.push(`${n} (could not be opened without following links)`); continue; }
    try {
      const st2 = fs.fstatSync(fd);
      if (!st2.isFile() || st2.size > MAX_SIDE_FILE_BYTES) { out.skipped.push(`${n} (changed while reading)`); continue; }
      const buf = Buffer.alloc(st2.size);
      let off = 0;
      while (off < buf.length) { const k = fs.readSync(fd, buf, off, buf.length - off, off); if (k === 0) break; off += k; }
      out.files.push({ name: n, bytes: buf.subarray(0, off) });
    } finally {
      fs.closeSync(fd);
    }
  }
  return out;
}

/**
 * Name of the weights file in an output folder written "like" `inputWeights`: legacy pickles
 * (`adapter_model.bin`, `.pt`, `.pth`, `.ckpt`) become `adapter_model.safetensors` / `<stem>.safetensors`,
 * because what we write is always safetensors.
 */
export function outputWeightsName(inputWeights: string): string {
  const b = path.basename(inputWeights);
  if (/\.safetensors$/i.test(b)) return b;
  if (b === 'adapter_model.bin') return PEFT_WEIGHTS;
  return b.replace(/\.(bin|pt|pth|ckpt)$/i, '') + '.safetensors';
}

/** Checks that the safetensors file just written holds exactly the `expected` tensor names. */
export function verifyTensorNames(file: string, expected: readonly string[]): void {
  const h = readSafetensorsHeader(file);
  const got = new Set(h.tensors.map((t) => t.name));
  const missing = expected.filter((n) => !got.has(n));
  if (h.tensors.length !== expected.length || missing.length) {
    throw new Error(`${file}: verification failed: ${h.tensors.length} tensors written, ${expected.length} expected${missing.length ? ` (missing ${missing.slice(0, 3).map((n) => JSON.stringify(n)).join(', ')})` : ''}`);
  }
}

/**
 * Writes a PEFT adapter folder: adapter_config.json (+ extra files) and adapter_model.safetensors
 * (or `weightsName`). `outDir` must not exist.
 */
export function writeAdapterFolder(
  outDir: string,
  config: Record<string, unknown> | undefined,
  tensors: OutTensor[],
  metadata: Record<string, string>,
  opts: { weightsName?: string; extraFiles?: { name: string; bytes: Uint8Array }[] } = {},
): { dir: string; weightsFile: string } {
  if (fs.existsSync(outDir)) throw new OutputExistsError(outDir);
  const parent = path.dirname(path.resolve(outDir));
  const tmp = `${path.resolve(outDir)}.tmp-${process.pid}`;
  const weightsName = opts.weightsName ?? PEFT_WEIGHTS;
  if (/\.(bin|pt|pth|ckpt)$/i.test(weightsName)) throw new Error(`${outDir}: refusing to write safetensors bytes under the pickle name ${weightsName}`);
  try {
    fs.mkdirSync(parent, { recursive: true });
    fs.mkdirSync(tmp);
  } catch (e) {
    throw writeFailure(outDir, e);
  }
  try {
    writeFresh(path.join(tmp, weightsName), encodeSafetensors(tensors, metadata));
    if (config) writeFresh(path.join(tmp, PEFT_CONFIG), JSON.stringify(config, null, 2) + '\n');
    for (const f of opts.extraFiles ?? []) {
      if (f.name !== path.basename(f.name) || f.name === '.' || f.name === '..') throw new Error(`${outDir}: side file name ${JSON.stringify(f.name)} is not a plain file name`);
      writeFresh(path.join(tmp, f.name), f.bytes);
    }
    verifyTensorNames(path.join(tmp, weightsName), tensors.map((t) => t.name));
    if (fs.existsSync(outDir)) throw new OutputExistsError(outDir);
    fs.renameSync(tmp, outDir);
    return { dir: outDir, weightsFile: path.join(outDir, weightsName) };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw writeFailure(outDir, e);
  }
}

/** Removes an output this session wrote (used when verification fails). */
export function removeOutput(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

export interface LazyTensor {
  name: string;
  dtype: DType;
  shape: number[];
  byteLength: number;
  /** Produces the bytes when the writer reaches this tensor (one tensor in memory at a time). */
  produce: () => Uint8Array | Promise<Uint8Array>;
}

/**
 * Streams a safetensors file to a NEW path (tensor by tensor, for base models larger than memory):
 * same layout as encodeSafetensors, written to `<path>.tmp-<pid>` and linked into place.
 */
export async function writeSafetensorsStreaming(target: string, tensors: LazyTensor[], metadata: Record<string, string>): Promise<void> {
  if (fs.existsSync(target)) throw new OutputExistsError(target);
  // Null prototype: tensor names such as "__proto__" are ordinary keys.
  const header = Object.create(null) as Record<string, unknown>;
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let pos = 0;
  for (const t of tensors) {
    if (t.name === '__metadata__' || Object.prototype.hasOwnProperty.call(header, t.name)) throw new Error(`${target}: tensor name "${t.name}" is used twice or reserved`);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.byteLength] };
    pos += t.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const hb = Buffer.from(json, 'utf8');
  const tmp = `${target}.tmp-${process.pid}`;
  let fd: number;
  try { fd = fs.openSync(tmp, 'wx'); } catch (e) { throw writeFailure(target, e); }
  try {
    try {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(hb.length), 0);
      writeAll(fd, len);
      writeAll(fd, hb);
      for (const t of tensors) {
        const b = await t.produce();
        if (b.byteLength !== t.byteLength) throw new Error(`${t.name}: produced ${b.byteLength} bytes, expected ${t.byteLength}`);
        writeAll(fd, b);
      }
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(tmp, target);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new OutputExistsError(target);
      if (fs.existsSync(target)) throw new OutputExistsError(target);
      fs.renameSync(tmp, target);
    }
  } catch (e) {
    throw writeFailure(target, e);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  try {
    verifyTensorNames(target, tensors.map((t) => t.name));
  } catch (e) {
    fs.rmSync(target, { force: true });
    throw e;
  }
}
