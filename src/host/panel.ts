/**
 * LensPanel: the one host-side webview panel base (after VS Code's media-preview `MediaPreview`).
 * It owns creation (or adoption of a custom editor's panel), the HTML shell with a nonce CSP, the
 * ready → init handshake, log forwarding, request → reply (errors become `{ok: false, error}`),
 * dispose, the engine status-bar entry while the panel is active, and — with PanelMap — one panel
 * per key. A feature panel supplies only its parts: its protocol parser, its init message(s) and
 * its request handler.
 */
import * as vscode from 'vscode';
import { CancelledError } from '../core/util/cancel';
import type { Envelope, ReplyMessage } from '../shared/envelope';
import { Disposable } from './dispose';
import { errorMessage, log, showLog } from './log';
import type { EngineStatus, StatusEntry } from './status';
import { webviewHtml, webviewOptions } from './webviewHtml';

/** The page a panel loads: dist/webview/<script>, media/<styles>, a body class. */
export interface PanelPage {
  /** Log prefix and webview name ("report", "surgery", …). */
  name: string;
  title: string;
  script: string;
  styles: string[];
  bodyClass: string;
  /** false: keep the editor's own tab icon (custom editors). */
  icon?: boolean;
}

/** What a request handler returns: the reply's fields (ok defaults to true). */
export type ReplyFields<R = never> = Partial<Omit<ReplyMessage<R>, 'type' | 'requestId'>>;

type WithId<M> = Extract<M, { requestId: number }>;

/** Creates a webview panel with the extension's webview options (scripts on, resources from dist/ and media/). */
export function createWebviewPanel(extensionUri: vscode.Uri, viewType: string, title: string, column: vscode.ViewColumn): vscode.WebviewPanel {
  return vscode.window.createWebviewPanel(viewType, title, column, { ...webviewOptions(extensionUri), retainContextWhenHidden: true });
}

export abstract class LensPanel<In extends { type: string }, Out extends { type: string }, R = never> extends Disposable {
  private isReady = false;
  private readonly disposeListeners: (() => void)[] = [];
  private engineEntry: StatusEntry | undefined;
  private static engineOwner: LensPanel<{ type: string }, { type: string }, unknown> | undefined;

  /**
   * @param panel a new panel (createWebviewPanel) or the one a custom editor was given
   * @param engineStatus the engine status-bar item this panel shows its provider in (optional)
   */
  protected constructor(
    readonly panel: vscode.WebviewPanel,
    protected readonly extensionUri: vscode.Uri,
    protected readonly page: PanelPage,
    private readonly engineStatus?: EngineStatus,
  ) {
    super();
    if (page.icon !== false) panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'lora-lens.svg');
    panel.webview.options = webviewOptions(extensionUri);
    panel.webview.html = webviewHtml(panel.webview, extensionUri, { title: page.title, script: page.script, styles: page.styles, bodyClass: page.bodyClass });
    this.register(panel.webview.onDidReceiveMessage((m) => void this.receive(m)));
    this.register(panel.onDidChangeViewState((e) => this.viewStateChanged(e.webviewPanel.active)));
    this.register(panel.onDidDispose(() => this.dispose()));
  }

  // ---- the parts a feature panel supplies

  /** The feature protocol's validator (envelope included); undefined for anything malformed. */
  protected abstract parse(raw: unknown): In | Envelope | undefined;
  /** Sent on `ready` (and whenever the webview reloads). */
  protected abstract onReady(): void;
  /** Answers a request; the returned fields go into the reply. Throwing replies `{ok: false, error}`. */
  protected onRequest(m: WithId<In>): Promise<ReplyFields<R> | void> {
    return Promise.reject(new Error(`unexpected request ${m.type}`));
  }
  /** A message without a request id (e.g. research `recompute`). */
  protected onNotify(m: In): void {
    log.warn(`${this.page.name}: unexpected message ${m.type}`);
  }
  /** Called when the panel becomes active / inactive (after the status entry is handled). */
  protected onViewState(_active: boolean): void { /* optional */ }

  // ---- for subclasses

  /** True once the webview has posted `ready` (messages posted before are dropped). */
  protected get ready(): boolean {
    return this.isReady;
  }

  /** Posts a host → webview message once the webview is ready. */
  post(m: Out): void {
    if (!this.isDisposed && this.isReady) void this.panel.webview.postMessage(m);
  }

  /**
   * Shows a message in the panel's banner (top of the page, stays until dismissed or replaced; with
   * a "Show log" action). Failed requests show theirs automatically (webview/common/vscodeApi.ts).
   */
  showBanner(level: 'info' | 'warn' | 'error', message: string): void {
    if (level === 'error') log.error(`${this.page.name}: ${message}`);
    if (!this.isDisposed && this.isReady) void this.panel.webview.postMessage({ type: 'banner', level, message });
  }

  /** Removes the panel's banner (e.g. after a successful retry). */
  clearBanner(): void {
    if (!this.isDisposed && this.isReady) void this.panel.webview.postMessage({ type: 'banner', level: 'info', message: '' });
  }

  /** Runs `fn` when the panel is disposed (PanelMap uses it to forget the panel). */
  onDispose(fn: () => void): void {
    this.disposeListeners.push(fn);
  }

  /** The engine shown in the status bar while this panel is active (undefined gives the item back). */
  protected setEngineEntry(entry: StatusEntry | undefined): void {
    this.engineEntry = entry;
    if (!entry) { this.releaseEngineItem(); return; }
    const owner = LensPanel.engineOwner;
    if (this.panel.active || owner === this || !owner) this.claimEngineItem();
  }

  override dispose(): void {
    if (this.isDisposed) return;
    this.releaseEngineItem();
    super.dispose();
    for (const fn of this.disposeListeners.splice(0)) fn();
  }

  // ---- internals

  private claimEngineItem(): void {
    if (!this.engineEntry || !this.engineStatus || this.isDisposed) return;
    LensPanel.engineOwner = this;
    this.engineStatus.show(this, this.engineEntry);
  }

  private releaseEngineItem(): void {
    if (LensPanel.engineOwner !== this) return;
    LensPanel.engineOwner = undefined;
    this.engineStatus?.hide(this);
  }

  private viewStateChanged(active: boolean): void {
    if (active) this.claimEngineItem();
    else this.releaseEngineItem();
    this.onViewState(active);
  }

  private reply(r: ReplyMessage<R>): void {
    if (!this.isDisposed) void this.panel.webview.postMessage(r);
  }

  private async receive(raw: unknown): Promise<void> {
    const m = this.parse(raw);
    if (!m) {
      log.warn(`${this.page.name}: ignored malformed message ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    if (isEnvelope(m)) {
      if (m.type === 'ready') {
        this.isReady = true;
        this.onReady();
      } else if (m.type === 'showLog') showLog();
      else log[m.level](`${this.page.name} webview: ${m.message}`);
      return;
    }
    if (!hasRequestId(m)) {
      this.onNotify(m);
      return;
    }
    const requestId = m.requestId;
    try {
      const fields = (await this.onRequest(m)) ?? {};
      this.reply({ type: 'reply', requestId, ok: true, ...fields });
    } catch (e) {
      const cancelled = e instanceof CancelledError;
      if (!cancelled) log.error(`${this.page.name} ${m.type}: ${errorMessage(e)}`);
      this.reply({ type: 'reply', requestId, ok: false, error: cancelled ? 'Cancelled' : errorMessage(e) });
    }
  }
}

function isEnvelope(m: { type: string }): m is Envelope {
  return m.type === 'ready' || m.type === 'log' || m.type === 'showLog';
}

function hasRequestId<M extends { type: string }>(m: M): m is Extract<M, { requestId: number }> {
  return typeof (m as { requestId?: unknown }).requestId === 'number';
}

/** One panel per key: `show` reveals the open one or creates it; disposed panels drop out. */
export class PanelMap<K, P extends { dispose(): void; onDispose(fn: () => void): void; readonly panel: vscode.WebviewPanel }> {
  private readonly panels = new Map<K, P>();

  get(key: K): P | undefined {
    return this.panels.get(key);
  }

  add(key: K, p: P): P {
    this.panels.set(key, p);
    p.onDispose(() => { if (this.panels.get(key) === p) this.panels.delete(key); });
    return p;
  }

  values(): P[] {
    return [...this.panels.values()];
  }

  disposeAll(): void {
    for (const p of this.values()) p.panel.dispose();
  }
}
