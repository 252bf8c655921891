/**
 * Element types of checkpoint tensors and their conversion to fp32/fp64.
 *
 * Conversions are hand-written because no npm package converts BF16/FP8 to floats at
 * memory speed: bf16 -> f32 is a 16-bit shift on the raw bits, f16 and the two FP8 formats go
 * through 65536-/256-entry lookup tables (shared/research/perf.md §5: 2.3 G el/s for bf16,
 * 1.7 G el/s for f16, faster than numpy's own conversions).
 */

export type DType =
  | 'F64' | 'F32' | 'F16' | 'BF16' | 'F8_E4M3' | 'F8_E5M2'
  | 'I64' | 'I32' | 'I16' | 'I8' | 'U64' | 'U32' | 'U16' | 'U8' | 'BOOL';

/** Bytes per element of every supported dtype. */
export const DTYPE_SIZE: Readonly<Record<DType, number>> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1,
  I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
};

export const FLOAT_DTYPES: ReadonlySet<DType> = new Set<DType>(['F64', 'F32', 'F16', 'BF16', 'F8_E4M3', 'F8_E5M2']);

export function isDType(s: unknown): s is DType {
  return typeof s === 'string' && Object.prototype.hasOwnProperty.call(DTYPE_SIZE, s);
}

/** Relative precision (unit roundoff) of a float dtype, used to choose test and report tolerances. */
export function dtypeEpsilon(d: DType): number {
  switch (d) {
    case 'F64': return 1.1e-16;
    case 'F32': return 6e-8;
    case 'F16': return 4.9e-4;
    case 'BF16': return 3.9e-3;
    case 'F8_E4M3': return 6.25e-2;
    case 'F8_E5M2': return 1.25e-1;
    default: return 0;
  }
}

let f16Table: Float32Array | undefined;
/** All 65536 half-precision values as fp32 (built once, 256 KiB). */
function halfTable(): Float32Array {
  if (f16Table) return f16Table;
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = halfToFloat(h);
  f16Table = t;
  return t;
}

/** IEEE 754 binary16 bits -> number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** number -> IEEE binary16 bits (round to nearest even). */
export function floatToHalf(x: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && (h & 1))) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
  return sign | h;
}

/** number -> bfloat16 bits (round to nearest even). */
export function floatToBf16(x: number): number {
  const f32 = new Float32Array([x]);
  const b = new Uint32Array(f32.buffer)[0];
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff)) return ((b >>> 16) | 0x40) & 0xffff;
  const lsb = (b >>> 16) & 1;
  return ((b + 0x7fff + lsb) >>> 16) & 0xffff;
}

let e4m3Table: Float32Array | undefined;
let e5m2Table: Float32Array | undefined;

/** FP8 E4M3 "fn" variant (OCP/torch float8_e4m3fn): bias 7, no infinities, S.1111.111 is NaN. */
function fp8e4m3(): Float32Array {
  if (e4m3Table) return e4m3Table;
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) {
    const s = v & 0x80 ? -1 : 1;
    const e = (v >> 3) & 0xf;
    const m = v & 7;
    if (e === 15 && m === 7) t[v] = NaN;
    else if (e === 0) t[v] = s * (m / 8) * 2 ** -6;
    else t[v] = s * (1 + m / 8) * 2 ** (e - 7);
  }
  e4m3Table = t;
  return t;
}

/** FP8 E5M2 (torch float8_e5m2): IEEE-like, bias 15, with infinities and NaNs. */
function fp8e5m2(): Float32Array {
  if (e5m2Table) return e5m2Table;
  const t = new Float32Array(256);
  for (let v = 0; v < 256; v++) t[v] = halfToFloat(v << 8);
  e5m2Table = t;
  return t;
}

/**
 * Converts little-endian raw tensor bytes to fp32, writing into `out` (allocated when absent).
 * `bytes` may be any view (byteOffset is honoured; unaligned views are copied once).
 * @throws Error for non-float dtypes that cannot be represented (BOOL is 0/1, integers are cast).
 */
export function toFloat32(bytes: Uint8Array, dtype: DType, out?: Float32Array): Float32Array {
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  if (!Number.isInteger(n)) throw new Error(`byte length ${bytes.byteLength} is not a multiple of the ${dtype} size`);
  const dst = out ?? new Float32Array(n);
  if (dst.length < n) throw new Error(`output too small: ${dst.length} < ${n}`);
  const el = DTYPE_SIZE[dtype];
  const aligned = bytes.byteOffset % el === 0 ? bytes : bytes.slice();
  const buf = aligned.buffer;
  const off = aligned.byteOffset;
  switch (dtype) {
    case 'F32': dst.set(new Float32Array(buf, off, n)); break;
    case 'F64': { const s = new Float64Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = s[i]; break; }
    case 'BF16': {
      const s = new Uint16Array(buf, off, n);
      const d = new Uint32Array(dst.buffer, dst.byteOffset, n);
      for (let i = 0; i < n; i++) d[i] = s[i] << 16;
      break;
    }
    case 'F16': { const s = new Uint16Array(buf, off, n); const t = halfTable(); for (let i = 0; i < n; i++) dst[i] = t[s[i]]; break; }
    case 'F8_E4M3': { const t = fp8e4m3(); for (let i = 0; i < n; i++) dst[i] = t[aligned[i]]; break; }
    case 'F8_E5M2': { const t = fp8e5m2(); for (let i = 0; i < n; i++) dst[i] = t[aligned[i]]; break; }
    case 'I8': { const s = new Int8Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = s[i]; break; }
    case 'U8': case 'BOOL': { for (let i = 0; i < n; i++) dst[i] = aligned[i]; break; }
    case 'I16': { const s = new Int16Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = s[i]; break; }
    case 'U16': { const s = new Uint16Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = s[i]; break; }
    case 'I32': { const s = new Int32Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = s[i]; break; }
    case 'U32': { const s = new Uint32Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = s[i]; break; }
    case 'I64': { const s = new BigInt64Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = Number(s[i]); break; }
    case 'U64': { const s = new BigUint64Array(buf, off, n); for (let i = 0; i < n; i++) dst[i] = Number(s[i]); break; }
  }
  return dst;
}

/**
 * Converts to fp32 like toFloat32 and counts NaN/±Inf values in the same pass (on the raw bits
 * for BF16/F16/F32, so the hot loop stays a shift plus a mask test).
 */
export function toFloat32Checked(bytes: Uint8Array, dtype: DType, out: Float32Array): number {
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  const el = DTYPE_SIZE[dtype];
  const aligned = bytes.byteOffset % el === 0 ? bytes : bytes.slice();
  if (dtype === 'BF16') {
    const s = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    const d = new Uint32Array(out.buffer, out.byteOffset, n);
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const h = s[i];
      d[i] = h << 16;
      if ((h & 0x7f80) === 0x7f80) bad++;
    }
    return bad;
  }
  if (dtype === 'F32') {
    const s = new Uint32Array(aligned.buffer, aligned.byteOffset, n);
    const d = new Uint32Array(out.buffer, out.byteOffset, n);
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const w = s[i];
      d[i] = w;
      if ((w & 0x7f800000) === 0x7f800000) bad++;
    }
    return bad;
  }
  if (dtype === 'F16') {
    const s = new Uint16Array(aligned.buffer, aligned.byteOffset, n);
    const t = halfTable();
    let bad = 0;
    for (let i = 0; i < n; i++) {
      const h = s[i];
      out[i] = t[h];
      if ((h & 0x7c00) === 0x7c00) bad++;
    }
    return bad;
  }
  toFloat32(aligned, dtype, out);
  const c = countNonFinite(out.subarray(0, n));
  return c.nan + c.inf;
}

/** Converts raw tensor bytes to fp64 (exact for every float dtype up to F64). */
export function toFloat64(bytes: Uint8Array, dtype: DType, out?: Float64Array): Float64Array {
  const n = bytes.byteLength / DTYPE_SIZE[dtype];
  const dst = out ?? new Float64Array(n);
  if (dtype === 'F64') {
    const aligned = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
    dst.set(new Float64Array(aligned.buffer, aligned.byteOffset, n));
    return dst;
  }
  const f = toFloat32(bytes, dtype);
  for (let i = 0; i < n; i++) dst[i] = f[i];
  return dst;
}

/** Encodes fp32/fp64 values as raw little-endian bytes of `dtype` (float dtypes only). */
export function fromFloats(values: ArrayLike<number>, dtype: DType): Uint8Array {
  const n = values.length;
  switch (dtype) {
    case 'F64': return new Uint8Array(Float64Array.from(values).buffer);
    case 'F32': return new Uint8Array(Float32Array.from(values).buffer);
    case 'F16': { const o = new Uint16Array(n); for (let i = 0; i < n; i++) o[i] = floatToHalf(values[i]); return new Uint8Array(o.buffer); }
    case 'BF16': { const o = new Uint16Array(n); for (let i = 0; i < n; i++) o[i] = floatToBf16(values[i]); return new Uint8Array(o.buffer); }
    default: throw new Error(`cannot encode ${dtype}`);
  }
}

/** Counts NaN and ±Inf values in a float array. */
export function countNonFinite(a: ArrayLike<number>): { nan: number; inf: number } {
  let nan = 0, inf = 0;
  for (let i = 0; i < a.length; i++) {
    const v = a[i];
    if (v !== v) nan++;
    else if (v === Infinity || v === -Infinity) inf++;
  }
  return { nan, inf };
}
