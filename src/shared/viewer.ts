/**
 * Typed protocol between the extension host and the checkpoint viewer webview
 * (`loraLens.checkpointViewer`). Plain data only.
 *
 * Handshake: the webview posts `ready`; the host answers with `init` (and again when the file
 * changes on disk). Requests carry a `requestId`; replies carry it back with `error` on failure.
 */
import { parseWebviewMessage, type Envelope, type ReplyMessage } from './envelope';

/** A tensor row, compact for 100k-tensor files: [name, dtype, shape, numel]. */
export type TensorRow = [name: string, dtype: string, shape: number[], numel: number];

export interface AdapterCard {
  name: string;
  path: string;
  format: string;
  rank?: number;
  alpha?: number;
  scaleRule: string;
  targetModules: string[];
  flags: string[];
  baseModel?: string;
  moduleCount: number;
  warnings: string[];
}

export interface ViewerData {
  fileName: string;
  path: string;
  /** Set when the file could not be read; everything else may be missing. */
  error?: string;
  kind?: string;
  sizeText?: string;
  fileBytes?: number;
  tensorCount?: number;
  parameters?: number;
  parametersText?: string;
  /** dtype -> [parameter count, formatted]. */
  dtypes?: { dtype: string; parameters: number; text: string }[];
  metadata?: Record<string, string>;
  warnings?: string[];
  tensors?: TensorRow[];
  adapter?: AdapterCard;
}

export type WebviewToHost =
  | Envelope
  | { type: 'reopenDefault'; requestId: number }
  | { type: 'analyze'; requestId: number };

export type HostToWebview =
  | { type: 'init'; data: ViewerData }
  | ReplyMessage;

/** Validates an incoming message on the host; returns undefined for anything malformed. */
export function parseWebviewToHost(m: unknown): WebviewToHost | undefined {
  return parseWebviewMessage(m, ({ type, requestId }): WebviewToHost | undefined =>
    (type === 'reopenDefault' || type === 'analyze') && requestId !== undefined ? { type, requestId } : undefined);
}
