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
import type { DType } from '../formats/dtype';
import { encodeSafetensors } from '../formats/safetensors';
import { PEFT_CONFIG, PEFT_WEIGHTS } from '../formats/peft';

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

/** Writes `bytes` to a path that must not exist yet (throws OutputExistsError otherwise). */
export function writeNewFileAtomic(target: string, bytes: Uint8Array): void {
  if (fs.existsSync(target)) throw new OutputExistsError(target);
  const tmp = `${target}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, bytes, { flag: 'wx' });
  try {
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
  } finally {
    if (fs.existsSync(tmp)) fs.unlinkSync(tmp);
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
  fs.mkdirSync(parent, { recursive: true });
  const tmp = `${path.resolve(outDir)}.tmp-${process.pid}`;
  fs.mkdirSync(tmp);
  try {
    const weightsName = opts.weightsName ?? PEFT_WEIGHTS;
    fs.writeFileSync(path.join(tmp, weightsName), encodeSafetensors(tensors, metadata), { flag: 'wx' });
    if (config) fs.writeFileSync(path.join(tmp, PEFT_CONFIG), JSON.stringify(config, null, 2) + '\n', { flag: 'wx' });
    for (const f of opts.extraFiles ?? []) fs.writeFileSync(path.join(tmp, f.name), f.bytes, { flag: 'wx' });
    if (fs.existsSync(outDir)) throw new OutputExistsError(outDir);
    fs.renameSync(tmp, outDir);
    return { dir: outDir, weightsFile: path.join(outDir, weightsName) };
  } catch (e) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw e;
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
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let pos = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [pos, pos + t.byteLength] };
    pos += t.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const hb = Buffer.from(json, 'utf8');
  const tmp = `${target}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'wx');
  let ok = false;
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hb.length), 0);
    fs.writeSync(fd, len);
    fs.writeSync(fd, hb);
    for (const t of tensors) {
      const b = await t.produce();
      if (b.byteLength !== t.byteLength) throw new Error(`${t.name}: produced ${b.byteLength} bytes, expected ${t.byteLength}`);
      let off = 0;
      while (off < b.byteLength) off += fs.writeSync(fd, b, off, b.byteLength - off);
    }
    ok = true;
  } finally {
    fs.closeSync(fd);
    if (!ok) fs.rmSync(tmp, { force: true });
  }
  try {
    fs.linkSync(tmp, target);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') { fs.rmSync(tmp, { force: true }); throw new OutputExistsError(target); }
    if (fs.existsSync(target)) { fs.rmSync(tmp, { force: true }); throw new OutputExistsError(target); }
    fs.renameSync(tmp, target);
    return;
  }
  fs.rmSync(tmp, { force: true });
}
