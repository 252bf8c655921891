/**
 * The envelope every webview protocol shares, parsed in one place for the host (LensPanel,
 * src/host/panel.ts) and the webviews (HostChannel, webview/common/vscodeApi.ts):
 *   webview → host  `ready` (handshake: the host answers with its init message), `log` (forwarded to
 *                   the LoRA Lens output channel), and feature messages, requests carrying a `requestId`;
 *   host → webview  feature messages and one `reply` per request (same id; `error` on failure).
 * Plain data only: compiled by both tsconfigs.
 */

export type LogLevel = 'info' | 'warn' | 'error';
export interface ReadyMessage { type: 'ready' }
export interface LogMessage { type: 'log'; level: LogLevel; message: string }
/** "Show log" in a webview (error banner, warnings): reveals the LoRA Lens output channel. */
export interface ShowLogMessage { type: 'showLog' }
export type Envelope = ReadyMessage | LogMessage | ShowLogMessage;

/**
 * Host → webview: a message for the panel's banner (webview/common/banner.ts), which stays visible
 * until dismissed or replaced (an empty message clears it); HostChannel renders it before the feature
 * sees any message.
 */
export interface BannerMessage { type: 'banner'; level: LogLevel; message: string }

/** The answer to a request; `result` is the feature's payload type (if any). */
export interface ReplyMessage<R = never> {
  type: 'reply';
  requestId: number;
  ok: boolean;
  message?: string;
  error?: string;
  result?: R;
}

/** An incoming message object of a feature type: its fields and, when valid, its request id. */
export interface Incoming {
  type: string;
  o: Record<string, unknown>;
  requestId?: number;
}

const MAX_LOG_CHARS = 2000;

const isLevel = (v: unknown): v is LogLevel => v === 'info' || v === 'warn' || v === 'error';

/**
 * Validates a webview → host message: the envelope here, feature messages by `feature` (which returns
 * undefined for anything malformed). Never throws.
 */
export function parseWebviewMessage<T>(raw: unknown, feature: (m: Incoming) => T | undefined): T | Envelope | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const o = raw as Record<string, unknown>;
  if (typeof o.type !== 'string') return undefined;
  if (o.type === 'ready') return { type: 'ready' };
  if (o.type === 'showLog') return { type: 'showLog' };
  if (o.type === 'log') return isLevel(o.level) && typeof o.message === 'string' ? { type: 'log', level: o.level, message: o.message.slice(0, MAX_LOG_CHARS) } : undefined;
  const requestId = typeof o.requestId === 'number' && Number.isInteger(o.requestId) ? o.requestId : undefined;
  return feature({ type: o.type, o, requestId });
}

/** A host → webview banner message, or undefined when `raw` is not one. */
export function parseBanner(raw: unknown): BannerMessage | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const o = raw as Record<string, unknown>;
  return o.type === 'banner' && isLevel(o.level) && typeof o.message === 'string' ? { type: 'banner', level: o.level, message: o.message.slice(0, MAX_LOG_CHARS) } : undefined;
}

/** A host → webview reply, or undefined when `raw` is not one. */
export function parseReply(raw: unknown): ReplyMessage<unknown> | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const o = raw as Record<string, unknown>;
  if (o.type !== 'reply' || typeof o.requestId !== 'number') return undefined;
  return {
    type: 'reply', requestId: o.requestId, ok: o.ok === true,
    message: typeof o.message === 'string' ? o.message : undefined,
    error: typeof o.error === 'string' ? o.error : undefined,
    result: o.result,
  };
}
