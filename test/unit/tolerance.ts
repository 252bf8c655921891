/**
 * Tolerance helpers for numerical tests (no tests in this file).
 *
 * assertClose passes element i when |a_i − e_i| ≤ abs + rel·|e_i|, or when both are NaN, or
 * both are the same infinity. Failure messages name the label, the index and both values.
 */
import * as assert from 'node:assert/strict';
import type { DType } from '../../src/core/formats/dtype';

export interface Tol {
  rel?: number;
  abs?: number;
}

function fmt(x: number): string {
  return Number.isFinite(x) ? x.toPrecision(17) : String(x);
}

/** Relative error |a−e|/|e| (|a−e| when e = 0); NaN/Inf-aware. */
export function relErr(a: number, e: number): number {
  if (Number.isNaN(a) && Number.isNaN(e)) return 0;
  if (!Number.isFinite(e) || !Number.isFinite(a)) return a === e ? 0 : Infinity;
  const d = Math.abs(a - e);
  return e === 0 ? d : d / Math.abs(e);
}

export function assertClose(
  actual: number | ArrayLike<number>,
  expected: number | ArrayLike<number>,
  tol: Tol,
  label = 'value',
): void {
  const rel = tol.rel ?? 0;
  const abs = tol.abs ?? 0;
  const a = typeof actual === 'number' ? [actual] : Array.from(actual);
  const e = typeof expected === 'number' ? [expected] : Array.from(expected);
  if (a.length !== e.length) assert.fail(`${label}: length ${a.length} differs from expected length ${e.length}`);
  for (let i = 0; i < e.length; i++) {
    const x = a[i], y = e[i];
    if (typeof x !== 'number') assert.fail(`${label}[${i}]: actual is ${String(x)}, not a number (expected ${fmt(y)})`);
    if (Number.isNaN(y) || Number.isNaN(x)) {
      if (Number.isNaN(y) && Number.isNaN(x)) continue;
      assert.fail(`${label}[${i}]: actual ${fmt(x)} vs expected ${fmt(y)} (NaN mismatch)`);
    }
    if (!Number.isFinite(y) || !Number.isFinite(x)) {
      if (x === y) continue;
      assert.fail(`${label}[${i}]: actual ${fmt(x)} vs expected ${fmt(y)} (infinity mismatch)`);
    }
    const d = Math.abs(x - y);
    const lim = abs + rel * Math.abs(y);
    if (!(d <= lim)) {
      assert.fail(`${label}[${i}]: actual ${fmt(x)} vs expected ${fmt(y)}: |diff| ${d.toExponential(3)} > ${lim.toExponential(3)} (rel ${rel}, abs ${abs}; rel err ${relErr(x, y).toExponential(3)})`);
    }
  }
}

/**
 * Unit roundoff of a storage dtype (half the machine epsilon), independent of the code under
 * test: 2^-53, 2^-24, 2^-11 (F16), 2^-8 (BF16), 2^-4 (E4M3), 2^-3 (E5M2).
 */
export function epsFor(dtype: DType | string): number {
  switch (dtype) {
    case 'F64': return 2 ** -53;
    case 'F32': return 2 ** -24;
    case 'F16': return 2 ** -11;
    case 'BF16': return 2 ** -8;
    case 'F8_E4M3': return 2 ** -4;
    case 'F8_E5M2': return 2 ** -3;
    default: return 0;
  }
}
