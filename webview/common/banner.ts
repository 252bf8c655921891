/**
 * The panel banner: errors (and warnings) stay visible at the top of the page — toasts vanish — with
 * a "Show log" action (the host reveals the LoRA Lens output channel) and a dismiss button. Used by
 * HostChannel for failed requests, uncaught webview errors and the host's `banner` messages.
 */
import type { LogLevel } from '../../src/shared/envelope';
import { h } from './vscodeApi';

let post: ((m: { type: 'showLog' }) => void) | undefined;

/** Wires the "Show log" action (HostChannel does this). */
export function setBannerHost(p: (m: { type: 'showLog' }) => void): void {
  post = p;
}

/** A "Show log" button (for any place that mentions warnings). */
export function showLogButton(label = 'Show log'): HTMLButtonElement {
  const b = h('button', { type: 'button', class: 'link-button show-log', title: 'Open the LoRA Lens output channel' }, label);
  b.addEventListener('click', () => post?.({ type: 'showLog' }));
  return b;
}

/** Shows (or replaces) the banner. */
export function showBanner(level: LogLevel, message: string): void {
  let el = document.getElementById('lens-banner');
  if (!el) {
    el = h('div', { id: 'lens-banner' });
    document.body.prepend(el);
  }
  const close = h('button', { type: 'button', class: 'banner-close', title: 'Dismiss', 'aria-label': 'Dismiss' }, '×');
  close.addEventListener('click', () => clearBanner());
  el.className = `lens-banner ${level}`;
  el.setAttribute('role', level === 'error' ? 'alert' : 'status');
  el.setAttribute('data-level', level);
  el.replaceChildren(
    h('span', { class: 'banner-icon', 'aria-hidden': 'true' }, level === 'error' ? '!' : level === 'warn' ? '⚠' : 'i'),
    h('span', { class: 'banner-message', id: 'lens-banner-message' }, message),
    showLogButton(), close);
}

export function clearBanner(): void {
  document.getElementById('lens-banner')?.remove();
}
