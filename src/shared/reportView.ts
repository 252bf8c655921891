/**
 * Typed protocol between the extension host and the report webview (`loraLens.report`).
 * Plain data only; shared by host (src/host/reportPanel.ts) and webview (webview/report/main.ts).
 *
 * Handshake: the webview posts `ready`; the host answers with `init` (and again whenever the
 * report changes). Requests carry a `requestId`; the host answers with a `reply` carrying the
 * same id and, on failure, `error`.
 */
import type { AdapterReport } from './report';

export type ExportFormat = 'json' | 'csv';

export type WebviewToHost =
  | { type: 'ready' }
  | { type: 'export'; requestId: number; format: ExportFormat }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; message: string };

export type HostToWebview =
  | { type: 'init'; report: AdapterReport }
  | { type: 'reply'; requestId: number; ok: boolean; message?: string; error?: string };

/** Validates an incoming message on the host; returns undefined for anything malformed. */
export function parseWebviewToHost(m: unknown): WebviewToHost | undefined {
  if (!m || typeof m !== 'object') return undefined;
  const o = m as Record<string, unknown>;
  switch (o.type) {
    case 'ready':
      return { type: 'ready' };
    case 'export':
      if (typeof o.requestId === 'number' && (o.format === 'json' || o.format === 'csv')) {
        return { type: 'export', requestId: o.requestId, format: o.format };
      }
      return undefined;
    case 'log':
      if ((o.level === 'info' || o.level === 'warn' || o.level === 'error') && typeof o.message === 'string') {
        return { type: 'log', level: o.level, message: o.message.slice(0, 2000) };
      }
      return undefined;
    default:
      return undefined;
  }
}
