/**
 * One pass over a LoRA factor's stored bits: zeros, subnormals and NaN/Inf, counted on the raw
 * IEEE bits (BF16/F16/F32) so the loop is a mask test per element (no conversion, no allocation
 * beyond the reused read buffer). Other dtypes (F64, FP8, GGUF quantised) are converted to fp32 by
 * the store and counted on the values; "subnormal" is then relative to that dtype's smallest normal.
 */
import type { TensorInfo, TensorStore } from '../formats/safetensors';
import { DTYPE_SIZE } from '../formats/dtype';

export interface FactorScan {
  tensor: string;
  dtype: string;
  numel: number;
  /** Exact zeros (±0). */
  zeros: number;
  /** Non-zero values below the dtype's smallest normal number (lost precision, next step is 0). */
  subnormals: number;
  /** Subnormals with fewer than 5 significant bits (mantissa < 16; F16: |x| < 9.5e-7): most of the value is lost. */
  deepSubnormals: number;
  nan: number;
  inf: number;
}

/** Smallest positive normal number of a float dtype. */
export const MIN_NORMAL: Record<string, number> = {
  F64: 2.2250738585072014e-308, F32: 1.1754943508222875e-38, BF16: 1.1754943508222875e-38, F16: 6.103515625e-5,
  F8_E4M3: 2 ** -6, F8_E5M2: 2 ** -14,
};

let scratch = new Uint8Array(0);

/** Counts zeros, subnormals and non-finite values of one stored tensor. */
export function scanTensor(store: TensorStore, t: TensorInfo): FactorScan {
  if (rawScannable(t)) {
    let bytes: Uint8Array;
    if (store.readRawInto) {
      if (scratch.length < t.byteLength) scratch = new Uint8Array(Math.max(t.byteLength, 1 << 16));
      bytes = store.readRawInto(t.name, scratch);
    } else bytes = store.readRaw(t.name);
    return scanRaw(t, bytes);
  }
  return scanValues(t, store.readF32(t.name));
}

/** True when scanRaw can scan this tensor's stored bytes (BF16/F16/F32, not quantised). */
export function rawScannable(t: TensorInfo): boolean {
  return !t.quantized && (t.dtype === 'BF16' || t.dtype === 'F16' || t.dtype === 'F32') && t.byteLength === t.numel * DTYPE_SIZE[t.dtype];
}

/** Counts on the stored bits of a BF16/F16/F32 tensor. */
export function scanRaw(t: TensorInfo, bytes: Uint8Array): FactorScan {
  const out: FactorScan = { tensor: t.name, dtype: t.dtype, numel: t.numel, zeros: 0, subnormals: 0, deepSubnormals: 0, nan: 0, inf: 0 };
  const raw32 = t.dtype === 'F32';
  {
    const el = raw32 ? 4 : 2;
    const al = bytes.byteOffset % el === 0 ? bytes : bytes.slice();
    let z = 0, sub = 0, deep = 0, nan = 0, inf = 0;
    if (raw32) {
      const s = new Uint32Array(al.buffer, al.byteOffset, t.numel);
      for (let i = 0; i < s.length; i++) {
        const e = s[i] & 0x7f800000;
        if (e === 0) { const m = s[i] & 0x7fffff; if (m === 0) z++; else { sub++; if (m < 16) deep++; } } else if (e === 0x7f800000) { if (s[i] & 0x7fffff) nan++; else inf++; }
      }
    } else {
      // Fast path: two values per 32-bit word; a word whose two exponents are both non-zero and not
      // all-ones (the common case) has no zero, subnormal, NaN or Inf and is skipped with two masks.
      const em = t.dtype === 'BF16' ? 0x7f80 : 0x7c00;
      const mm = t.dtype === 'BF16' ? 0x7f : 0x3ff;
      const emHi = em << 16;
      const count = (h: number): void => {
        const e = h & em;
        if (e === 0) { const m = h & mm; if (m === 0) z++; else { sub++; if (m < 16) deep++; } } else if (e === em) { if (h & mm) nan++; else inf++; }
      };
      const pairs = al.byteOffset % 4 === 0 ? t.numel >> 1 : 0;
      if (pairs) {
        const w32 = new Uint32Array(al.buffer, al.byteOffset, pairs);
        for (let i = 0; i < pairs; i++) {
          const w = w32[i];
          const lo = w & em, hi = w & emHi;
          if (lo !== 0 && hi !== 0 && lo !== em && hi !== emHi) continue;
          count(w & 0xffff);
          count(w >>> 16);
        }
      }
      const s = new Uint16Array(al.buffer, al.byteOffset, t.numel);
      for (let i = pairs * 2; i < s.length; i++) count(s[i]);
    }
    out.zeros = z; out.subnormals = sub; out.deepSubnormals = deep; out.nan = nan; out.inf = inf;
    return out;
  }
}

/** Counts on converted values (F64, FP8, quantised); subnormal relative to the stored dtype. */
function scanValues(t: TensorInfo, v: Float32Array | Float64Array): FactorScan {
  const out: FactorScan = { tensor: t.name, dtype: t.dtype, numel: t.numel, zeros: 0, subnormals: 0, deepSubnormals: 0, nan: 0, inf: 0 };
  const minNormal = MIN_NORMAL[t.dtype] ?? MIN_NORMAL.F32;
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (x !== x) out.nan++;
    else if (x === Infinity || x === -Infinity) out.inf++;
    else if (x === 0) out.zeros++;
    else if (Math.abs(x) < minNormal) { out.subnormals++; if (Math.abs(x) < minNormal / 64) out.deepSubnormals++; }
  }
  return out;
}

/** Frees the scan buffer. */
export function releaseScanScratch(): void {
  scratch = new Uint8Array(0);
}
