/** The one LogOutputChannel "LoRA Lens" (created in activate, never at import time). */
import * as vscode from 'vscode';

let channel: vscode.LogOutputChannel | undefined;

export function initLog(): vscode.LogOutputChannel {
  channel ??= vscode.window.createOutputChannel('LoRA Lens', { log: true });
  return channel;
}

export const log = {
  trace: (msg: string, ...args: unknown[]): void => channel?.trace(msg, ...args),
  debug: (msg: string, ...args: unknown[]): void => channel?.debug(msg, ...args),
  info: (msg: string, ...args: unknown[]): void => channel?.info(msg, ...args),
  warn: (msg: string, ...args: unknown[]): void => channel?.warn(msg, ...args),
  error: (msg: string | Error, ...args: unknown[]): void => channel?.error(msg, ...args),
};

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Reveals the LoRA Lens output channel ("Show log" actions in toasts and panels). */
export function showLog(): void {
  channel?.show(true);
}
