/**
 * Text data for causal-LM fine-tuning of HF models (hfTrainer.ts):
 *
 *   - datasets: JSONL with {"text": ...} or {"prompt": ..., "completion": ...} per line, or plain
 *     .txt (documents separated by blank lines);
 *   - tokenization with @huggingface/tokenizers from the model folder's tokenizer.json
 *     (+ tokenizer_config.json when present);
 *   - fixed-length packing into sequences of `seqLen` tokens (documents joined with EOS, the last
 *     sequence right-padded), with a per-token loss mask (0 on prompts and padding);
 *   - deterministic epoch-wise shuffling (mulberry32, seed + epoch).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Rng } from '../util/rng';
import { FormatError } from '../formats/errors';
import { missingProblem } from '../formats/fileio';
import { parseJsonText } from '../formats/safejson';

export interface TextExample {
  text?: string;
  prompt?: string;
  completion?: string;
}

/** Largest dataset file read for training (the whole file is held in memory as text). */
export const MAX_DATASET_BYTES = 64 * 1024 * 1024;
/** Most JSON values in one dataset line or .json dataset (8× for tokenizer.json: large vocabularies + merges). */
export const MAX_JSON_VALUES = 1_500_000;
/** Largest tokenizer.json / tokenizer_config.json. */
export const MAX_TOKENIZER_BYTES = 128 * 1024 * 1024;

/**
 * Reads a small text file we did not write: it must be a regular file (a link to a FIFO or an
 * endless device such as /dev/zero is refused before reading), at most `max` bytes, read through
 * one descriptor so that it cannot grow past the cap while being read.
 */
export function readCappedText(file: string, max: number, what: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0));
  } catch (e) {
    let link: string | undefined;
    try { if (fs.lstatSync(file).isSymbolicLink()) link = fs.readlinkSync(file); } catch { /* none */ }
    throw new FormatError(file, missingProblem(file, (e as NodeJS.ErrnoException).code, link, e));
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new FormatError(file, `is not a regular file (${st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a pipe' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'a special file'}); the ${what} must be a regular file`);
    if (st.size > max) throw new FormatError(file, `is ${st.size} bytes, larger than the ${max}-byte limit for a ${what}`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const k = fs.readSync(fd, buf, off, buf.length - off, off);
      if (k === 0) break;
      off += k;
    }
    const text = buf.subarray(0, off).toString('utf8');
    return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads a .jsonl / .json-lines dataset or a plain text file (documents split on blank lines). */
export function readTextDataset(file: string): TextExample[] {
  const raw = readCappedText(file, MAX_DATASET_BYTES, 'training dataset');
  const ext = path.extname(file).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson' || (ext === '.json' && !raw.trimStart().startsWith('['))) {
    const out: TextExample[] = [];
    raw.split(/\r?\n/).forEach((line, i) => {
      if (!line.trim()) return;
      const o = parseJsonText(line, file, `line ${i + 1}`, MAX_JSON_VALUES);
      if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new FormatError(file, `line ${i + 1}: expected {"text": ...} or {"prompt": ..., "completion": ...}`);
      const r = o as Record<string, unknown>;
      if (typeof r.text === 'string') out.push({ text: r.text });
      else if (typeof r.prompt === 'string' && typeof r.completion === 'string') out.push({ prompt: r.prompt, completion: r.completion });
      else throw new FormatError(file, `line ${i + 1}: expected {"text": ...} or {"prompt": ..., "completion": ...}`);
    });
    return out;
  }
  if (ext === '.json') {
    const arr = parseJsonText(raw, file, 'the dataset', MAX_JSON_VALUES);
    if (!Array.isArray(arr)) throw new FormatError(file, 'expected a JSON array of examples');
    return arr.map((o, i) => {
      const r = (typeof o === 'object' && o !== null ? o : {}) as Record<string, unknown>;
      if (typeof r.text === 'string') return { text: r.text };
      if (typeof r.prompt === 'string' && typeof r.completion === 'string') return { prompt: r.prompt, completion: r.completion };
      throw new FormatError(file, `example ${i}: expected {"text": ...} or {"prompt": ..., "completion": ...}`);
    });
  }
  return raw.split(/\r?\n\s*\r?\n/).map((s) => s.trim()).filter(Boolean).map((text) => ({ text }));
}

/** What the packer needs from a tokenizer. */
export interface TextTokenizer {
  /** Token ids; `special` adds the post-processor's special tokens (e.g. BOS). */
  encode(text: string, special?: boolean): number[];
  decode(ids: number[]): string;
  eosId?: number;
  bosId?: number;
  padId?: number;
  vocabSize: number;
}

interface HfTokenizerLike {
  encode(text: string, o?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(ids: number[], o?: { skip_special_tokens?: boolean }): string;
  token_to_id(t: string): number | undefined;
  get_vocab(withAdded?: boolean): Map<string, number>;
}

function tokenString(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

/** Tokenizer from tokenizer.json (+ tokenizer_config.json) in `dir` (or a tokenizer.json path). */
export function loadTokenizer(dirOrFile: string): TextTokenizer {
  const file = dirOrFile.endsWith('.json') ? dirOrFile : path.join(dirOrFile, 'tokenizer.json');
  if (!fs.existsSync(file)) throw new Error(`${path.dirname(file)} has no tokenizer.json`);
  const json = parseJsonText(readCappedText(file, MAX_TOKENIZER_BYTES, 'tokenizer'), file, 'the tokenizer', 8 * MAX_JSON_VALUES) as Record<string, unknown>;
  const cfgFile = path.join(path.dirname(file), 'tokenizer_config.json');
  const config = fs.existsSync(cfgFile) ? (parseJsonText(readCappedText(cfgFile, MAX_TOKENIZER_BYTES, 'tokenizer config'), cfgFile, 'the tokenizer config', MAX_JSON_VALUES) as Record<string, unknown>) : {};
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new FormatError(file, 'is not a JSON object');
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new FormatError(cfgFile, 'is not a JSON object');
  // the package is ESM with a CJS build; required lazily so that importing this module stays cheap
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { Tokenizer } = require('@huggingface/tokenizers') as { Tokenizer: new (t: object, c: object) => HfTokenizerLike };
  const tok = new Tokenizer(json, config);
  const id = (key: string, fallbacks: string[]): number | undefined => {
    for (const s of [tokenString(config[key]), ...fallbacks]) {
      if (!s) continue;
      const i = tok.token_to_id(s);
      if (i !== undefined) return i;
    }
    return undefined;
  };
  const vocab = tok.get_vocab(true);
  let maxId = -1;
  for (const v of vocab.values()) maxId = Math.max(maxId, v);
  return {
    encode: (text, special = true) => tok.encode(text, { add_special_tokens: special }).ids,
    decode: (ids) => tok.decode(ids, { skip_special_tokens: true }),
    eosId: id('eos_token', ['</s>', '<|endoftext|>', '<|end_of_text|>', '<eos>']),
    bosId: id('bos_token', ['<s>', '<|begin_of_text|>', '<bos>']),
    padId: id('pad_token', ['<pad>', '[PAD]']),
    vocabSize: maxId + 1,
  };
}

/** Packed fixed-length sequences: ids / attention / loss mask, each [n, seqLen] row-major. */
export interface PackedData {
  n: number;
  seqLen: number;
  ids: Int32Array;
  /** 1 = real token, 0 = padding. */
  attn: Uint8Array;
  /** 1 = this token is a prediction target (not a prompt token, not padding). */
  loss: Uint8Array;
}

/** Tokenized documents: ids plus a per-token target flag. */
export interface TokenizedDoc {
  ids: number[];
  target: number[];
}

export function tokenizeExamples(examples: TextExample[], tok: TextTokenizer): TokenizedDoc[] {
  return examples.map((e) => {
    let ids: number[], target: number[];
    if (e.prompt !== undefined && e.completion !== undefined) {
      const p = tok.encode(e.prompt, true), c = tok.encode(e.completion, false);
      ids = [...p, ...c];
      target = [...p.map(() => 0), ...c.map(() => 1)];
    } else {
      ids = tok.encode(e.text ?? '', true);
      target = ids.map(() => 1);
    }
    if (tok.eosId !== undefined && ids[ids.length - 1] !== tok.eosId) {
      ids.push(tok.eosId);
      target.push(1);
    }
    return { ids, target };
  });
}

/**
 * Concatenates documents and cuts the stream into sequences of `seqLen` tokens (documents may span
 * two sequences, as in HF `group_texts`); the tail is right-padded with `padId` (attn = loss = 0).
 */
export function packSequences(docs: TokenizedDoc[], seqLen: number, padId = 0): PackedData {
  const total = docs.reduce((s, d) => s + d.ids.length, 0);
  const n = Math.max(1, Math.ceil(total / seqLen));
  const ids = new Int32Array(n * seqLen).fill(padId), attn = new Uint8Array(n * seqLen), loss = new Uint8Array(n * seqLen);
  let k = 0;
  for (const d of docs)
    for (let i = 0; i < d.ids.length; i++, k++) {
      ids[k] = d.ids[i];
      attn[k] = 1;
      loss[k] = d.target[i];
    }
  return { n, seqLen, ids, attn, loss };
}

/** Reads, tokenizes and packs a dataset file with the tokenizer of `modelDir`. */
export function loadPackedDataset(file: string, tok: TextTokenizer, seqLen: number): PackedData {
  const ex = readTextDataset(file);
  if (!ex.length) throw new Error(`${file}: no examples`);
  return packSequences(tokenizeExamples(ex, tok), seqLen, tok.padId ?? tok.eosId ?? 0);
}

/** Permutation of 0..n-1 (Fisher–Yates with mulberry32). */
export function permutation(n: number, seed: number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rng = new Rng(seed >>> 0);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    const t = p[i]; p[i] = p[j]; p[j] = t;
  }
  return p;
}

/** Sequence indices of batch `k` (epoch-wise reshuffled with seed + epoch; deterministic → resumable). */
export function batchIndices(n: number, batchSize: number, k: number, seed = 0): number[] {
  const out: number[] = [];
  let cacheEpoch = -1, perm: Int32Array = new Int32Array(0);
  for (let i = 0; i < batchSize; i++) {
    const g = k * batchSize + i, epoch = Math.floor(g / n);
    if (epoch !== cacheEpoch) {
      perm = permutation(n, seed * 1000003 + epoch);
      cacheEpoch = epoch;
    }
    out.push(perm[g % n]);
  }
  return out;
}

/**
 * Host-side batch for the causal-LM graph: ids [B, T], attention mask [B, T], and shifted labels
 * labels[b, t] = ids[b, t+1] with weight w[b, t] = loss[b, t+1] / Σ loss (0 at t = T−1), so the
 * graph's loss is −Σ w · log p(label) (HF's mean over non-ignored shifted targets).
 */
export interface LmBatch {
  B: number;
  T: number;
  ids: BigInt64Array;
  attn: Float64Array;
  labels: BigInt64Array;
  weights: Float64Array;
  /** Number of target tokens. */
  count: number;
}

export function makeBatch(data: PackedData, rows: number[]): LmBatch {
  const T = data.seqLen, B = rows.length;
  const ids = new BigInt64Array(B * T), attn = new Float64Array(B * T), labels = new BigInt64Array(B * T), weights = new Float64Array(B * T);
  let count = 0;
  rows.forEach((r, b) => {
    for (let t = 0; t < T; t++) {
      ids[b * T + t] = BigInt(data.ids[r * T + t]);
      attn[b * T + t] = data.attn[r * T + t];
      if (t < T - 1) {
        labels[b * T + t] = BigInt(data.ids[r * T + t + 1]);
        if (data.loss[r * T + t + 1] && data.attn[r * T + t + 1]) {
          weights[b * T + t] = 1;
          count++;
        }
      }
    }
  });
  if (count) for (let i = 0; i < weights.length; i++) weights[i] /= count;
  return { B, T, ids, attn, labels, weights, count };
}

/** Batch from raw token rows (all tokens real, all shifted targets counted). */
export function batchFromIds(rows: number[][]): LmBatch {
  const T = rows[0].length;
  const d: PackedData = {
    n: rows.length, seqLen: T, ids: new Int32Array(rows.flat()), attn: new Uint8Array(rows.length * T).fill(1), loss: new Uint8Array(rows.length * T).fill(1),
  };
  return makeBatch(d, rows.map((_, i) => i));
}
