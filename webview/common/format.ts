/** Formatting and small DOM pieces shared by the webviews (charts' axis labels, fact lists). */
import { h } from './vscodeApi';

/** Linear-axis label: up to 4 significant digits, no trailing zeros, exponent outside [1e-3, 1e5). */
export function axisTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

/** Log-axis label only at 1, 2 and 5 × 10^k (chart.js generates every mantissa): 1e-4, not 1.00e-4. */
export function logTick(value: string | number): string {
  const v = Number(value);
  if (!(v > 0)) return '';
  const m = v / 10 ** Math.floor(Math.log10(v) + 1e-9);
  if (![1, 2, 5].some((k) => Math.abs(m - k) < 1e-6)) return '';
  return v >= 1e-3 && v < 1e5 ? String(Number(v.toPrecision(3))) : v.toExponential(0);
}

/**
 * Log-axis label that never leaves an axis with a single label: 1, 2 and 5 × 10^k when at least two
 * of the generated ticks are such values, otherwise (an axis spanning less than a decade) every
 * other tick with 3 significant digits. chart.js tick callback signature.
 */
export function logTickAdaptive(value: string | number, index: number, ticks: { value: number }[]): string {
  const nice = ticks.filter((t) => logTick(t.value) !== '').length;
  if (nice >= 2) return logTick(value);
  const v = Number(value);
  if (!(v > 0)) return '';
  const step = ticks.length > 8 ? 2 : 1;
  if (index % step !== 0 && index !== ticks.length - 1) return '';
  return v >= 1e-3 && v < 1e5 ? String(Number(v.toPrecision(3))) : v.toExponential(1);
}

/** One entry of a `<dl>` fact list; `id` becomes `data-fact` for tests. */
export function fact(label: string, value: string | Node, id?: string): HTMLElement {
  return h('div', { class: 'fact', 'data-fact': id }, h('dt', {}, label), h('dd', {}, value));
}
