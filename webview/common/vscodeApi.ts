/** Typed access to the webview API and a small request/response helper (the envelope of src/shared/envelope.ts). */
import { parseBanner, parseReply } from '../../src/shared/envelope';
import { clearBanner, setBannerHost, showBanner } from './banner';

interface VsCodeApi<S> {
  postMessage(message: unknown): void;
  getState(): S | undefined;
  setState(state: S): void;
}
declare function acquireVsCodeApi<S = unknown>(): VsCodeApi<S>;

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

export class HostChannel<ToHost extends { type: string }, FromHost extends { type: string }, S = unknown> {
  readonly api: VsCodeApi<S> = acquireVsCodeApi<S>();
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: FromHost) => void; reject: (e: Error) => void }>();

  constructor(private readonly onMessage: (m: FromHost) => void) {
    setBannerHost((m) => this.api.postMessage(m));
    // Uncaught webview errors: logged on the host and shown in the banner (not swallowed).
    window.addEventListener('error', (e) => {
      this.api.postMessage({ type: 'log', level: 'error', message: `${e.message} @${e.filename}:${e.lineno}` });
      showBanner('error', `Internal error in this view: ${e.message}`);
    });
    window.addEventListener('message', (ev: MessageEvent) => {
      const m = ev.data as FromHost;
      if (!m || typeof m !== 'object' || typeof m.type !== 'string') return;
      const banner = parseBanner(m);
      if (banner) {
        if (banner.message) showBanner(banner.level, banner.message);
        else clearBanner();
        return;
      }
      const reply = parseReply(m);
      if (reply) {
        const p = this.pending.get(reply.requestId);
        if (p) {
          this.pending.delete(reply.requestId);
          if (reply.error) {
            // Failed requests stay visible in the panel (toasts vanish); a cancel is not an error.
            if (!/^cancell?ed\b/i.test(reply.error)) showBanner('error', reply.error);
            p.reject(new Error(reply.error));
          } else p.resolve(m);
        }
        return;
      }
      this.onMessage(m);
    });
  }

  post(m: ToHost): void {
    this.api.postMessage(m);
  }

  /** Sends a request (the id is filled in) and resolves with the host's reply; rejects on `error`. */
  request<R extends FromHost>(m: DistributiveOmit<Extract<ToHost, { requestId: number }>, 'requestId'>): Promise<R> {
    const requestId = this.nextId++;
    return new Promise<R>((resolve, reject) => {
      this.pending.set(requestId, { resolve: resolve as (r: FromHost) => void, reject });
      this.api.postMessage({ ...m, requestId });
    });
  }
}

/** Tiny DOM builder: h('div', {class: 'x', 'data-a': '1'}, child, 'text'). No inline styles. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> = {},
  ...children: (Node | string | undefined | null | false)[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    el.append(typeof c === 'string' ? document.createTextNode(c) : c);
  }
  return el;
}
