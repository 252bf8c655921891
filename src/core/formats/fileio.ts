import * as fs from 'node:fs';
import { FormatError } from './errors';

/**
 * Byte-range file access. Nothing here reads a whole weight file: callers ask for
 * (offset, length) ranges, and every length is checked against the file size first, so a corrupt
 * header can never make us allocate more than the file holds.
 */
export class RangeFile {
  private fd: number | undefined;
  private constructor(public readonly path: string, public readonly size: number) {}

  /** Opens `path` for reading. @throws FormatError when it does not exist or is not a regular file. */
  static open(path: string): RangeFile {
    let st: fs.Stats;
    try {
      st = fs.statSync(path);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      let link: string | undefined;
      try {
        if (fs.lstatSync(path).isSymbolicLink()) link = fs.readlinkSync(path);
      } catch { /* not a link either */ }
      throw new FormatError(path, missingProblem(path, code, link, e));
    }
    if (!st.isFile()) throw new FormatError(path, 'is not a regular file');
    const f = new RangeFile(path, st.size);
    f.fd = fs.openSync(path, 'r');
    return f;
  }

  /** Reads exactly `length` bytes at `offset`. */
  read(offset: number, length: number, into?: Uint8Array): Uint8Array {
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.size) {
      throw new FormatError(this.path, `read of ${length} bytes at offset ${offset} is outside the file (${this.size} bytes)`);
    }
    const buf = into ?? new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(this.fd, buf, done, length - done, offset + done);
      if (n === 0) throw new FormatError(this.path, `file ended early at byte ${offset + done} (was it truncated while reading?)`);
      done += n;
    }
    return buf;
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** True when `p` exists as a directory entry, even as a dangling or looping symbolic link. */
export function lexists(p: string): boolean {
  try { fs.lstatSync(p); return true; } catch { return false; }
}

/**
 * Why `p` cannot be stat'ed, in words: a symbolic link loop (ELOOP), a dangling link, a missing
 * file or another errno. `link` is the link's target when `p` itself is a symbolic link.
 */
export function missingProblem(p: string, code: string | undefined, link: string | undefined, e?: unknown): string {
  if (code === 'ELOOP') return `is a symbolic link loop${link !== undefined ? ` ("${link}" leads back to itself)` : ''}: too many levels of symbolic links`;
  if (link !== undefined) return `is a symbolic link to "${link}", which does not exist (dangling link)`;
  if (code === 'ENOENT') return 'does not exist';
  if (code === 'ENOTDIR') return 'does not exist (a part of the path is a file, not a folder)';
  if (code === 'EACCES' || code === 'EPERM') return 'cannot be read (permission denied)';
  return `cannot be opened (${code ?? String(e)})`;
}

/**
 * Recognises files that are stand-ins for weights: Git LFS pointers, symlinks checked out as
 * plain text, HTML error pages, empty or near-empty files. Returns a problem description or
 * undefined. `head` is the first bytes of the file (up to 512).
 */
export function sniffPlaceholder(head: Uint8Array, size: number): string | undefined {
  const text = Buffer.from(head.subarray(0, Math.min(head.length, 512))).toString('latin1');
  if (text.startsWith('version https://git-lfs.github.com/spec')) {
    const oid = /oid sha256:([0-9a-f]{8})/.exec(text)?.[1];
    const sz = /size (\d+)/.exec(text)?.[1];
    return `is a Git LFS pointer${oid ? ` (oid ${oid}…` : ''}${sz ? `, real size ${sz} bytes` : ''}${oid ? ')' : ''}, not the weights: run \`git lfs pull\``;
  }
  if (size === 0) return 'is empty (0 bytes)';
  const printable = /^[\x20-\x7e\t\r\n]*$/.test(text);
  if (printable && size < 4096) {
    const t = text.trim();
    if (/^<(!doctype|html)/i.test(t)) return `is an HTML page (${size} bytes), not the weights: the download probably failed`;
    if (t.length > 0 && /^[^\s{}]+$/.test(t) && /[/\\.]/.test(t)) {
      return `contains only the text "${t.slice(0, 120)}" (${size} bytes): a symbolic link checked out as a plain file? Resolve the link or fetch the real file`;
    }
    if (size < 16) return `is only ${size} bytes long (${JSON.stringify(text.slice(0, size))}): not a checkpoint`;
  }
  return undefined;
}
