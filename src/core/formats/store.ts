/** The tensor-store interface every reader implements (safetensors, sharded, GGUF, pickle) and its tensor record. */
import type { DType } from './dtype';

export interface TensorInfo {
  /** Full tensor name as stored. */
  name: string;
  dtype: DType;
  shape: number[];
  /** Number of elements. */
  numel: number;
  /** Absolute byte offset of the first byte in `file`. */
  offset: number;
  byteLength: number;
  /** File that holds the data. */
  file: string;
  /**
   * Set when the stored bytes are a block-quantised encoding (GGUF Q4_K...): `dtype` is then what
   * readF32 yields and `byteLength` is the stored size, so callers must use readF32, not readRaw.
   */
  quantized?: string;
}

/**
 * A set of tensors spread over one or more files (single safetensors file or a sharded index),
 * read lazily by byte range.
 */
export interface TensorStore {
  /** What was opened (file or index path). */
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  readonly warnings: string[];
  /** Total size of the weight files in bytes. */
  readonly totalBytes: number;
  readRaw(name: string): Uint8Array;
  /** Reads the raw bytes into `into` (at least byteLength long) and returns the filled view; optional. */
  readRawInto?(name: string, into: Uint8Array): Uint8Array;
  readF32(name: string, out?: Float32Array): Float32Array;
  readF64(name: string): Float64Array;
  close(): void;
}
