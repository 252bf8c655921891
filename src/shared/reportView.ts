/**
 * Typed protocol between the extension host and the report webview (`loraLens.report`).
 * Plain data only; shared by host (src/host/reportPanel.ts) and webview (webview/report/main.ts).
 *
 * Handshake: the webview posts `ready`; the host answers with `init` (and again whenever the
 * report changes). Requests carry a `requestId`; the host answers with a `reply` carrying the
 * same id and, on failure, `error`.
 */
import type { AdapterReport } from './report';
import { parseWebviewMessage, type Envelope, type ReplyMessage } from './envelope';

export type ExportFormat = 'json' | 'csv';

export type WebviewToHost =
  | Envelope
  | { type: 'export'; requestId: number; format: ExportFormat };

export type HostToWebview =
  | { type: 'init'; report: AdapterReport }
  | ReplyMessage;

/** Validates an incoming message on the host; returns undefined for anything malformed. */
export function parseWebviewToHost(m: unknown): WebviewToHost | undefined {
  return parseWebviewMessage(m, ({ type, o, requestId }): WebviewToHost | undefined =>
    type === 'export' && requestId !== undefined && (o.format === 'json' || o.format === 'csv') ? { type: 'export', requestId, format: o.format } : undefined);
}

/**
 * Default export file name: `demo-lora` → `demo-lora-report.json` (not `demo-lora-lora-report`),
 * `style.safetensors` → `style-lora-report.csv`.
 */
export function exportFileName(adapterName: string, format: ExportFormat): string {
  const stem = adapterName.replace(/\.(safetensors|gguf|bin|pt|pth|ckpt)$/i, '').replace(/[^\w.+-]+/g, '_') || 'adapter';
  return `${stem}${/lora/i.test(stem) ? '' : '-lora'}-report.${format}`;
}
