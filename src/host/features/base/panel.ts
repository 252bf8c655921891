/**
 * Webview panels of the base-model analyses: `loraLens.intruders`, `loraLens.spectra` and
 * `loraLens.compare`, one bundle (dist/webview/base.js) that renders the view named in `init`.
 * One panel per (view, subject); re-running reveals and refreshes it. While a panel is active the
 * engine status bar item shows the execution provider its last job ran on.
 */
import * as vscode from 'vscode';
import {
  parseWebviewToHost, type BaseView, type EngineInfo, type HostToWebview, type InitMessage, type ReplyResult, type WebviewToHost,
} from '../../../shared/base';
import { CancelledError } from '../../../core/formats/errors';
import { Disposable } from '../../dispose';
import { errorMessage, log } from '../../log';
import type { EngineStatus } from '../../reportPanel';
import { webviewHtml, webviewOptions } from '../../webviewHtml';

export type PanelRequest = Exclude<WebviewToHost, { type: 'ready' } | { type: 'log' }>;
export type RequestHandler = (m: PanelRequest, panel: BasePanel) => Promise<{ result?: ReplyResult; message?: string }>;

export const VIEW_TYPES: Record<BaseView, string> = {
  intruders: 'loraLens.intruders',
  spectra: 'loraLens.spectra',
  compare: 'loraLens.compare',
};

function engineOf(init: InitMessage): EngineInfo {
  return init.view === 'spectra' ? init.data.data.engine : init.data.engine;
}

export class BasePanel extends Disposable {
  private static readonly panels = new Map<string, BasePanel>();
  private static statusOwner: BasePanel | undefined;
  private ready = false;
  private engine: EngineInfo | undefined;

  static show(o: {
    extensionUri: vscode.Uri; key: string; title: string; init: InitMessage; handler: RequestHandler; status?: EngineStatus;
  }): BasePanel {
    const k = `${o.init.view}:${o.key}`;
    const existing = BasePanel.panels.get(k);
    if (existing) {
      existing.handler = o.handler;
      existing.update(o.init);
      existing.panel.reveal(undefined, false);
      return existing;
    }
    const panel = vscode.window.createWebviewPanel(VIEW_TYPES[o.init.view], o.title, vscode.ViewColumn.Active, {
      ...webviewOptions(o.extensionUri),
      retainContextWhenHidden: true,
    });
    const p = new BasePanel(k, panel, o.extensionUri, o.title, o.init, o.handler, o.status);
    BasePanel.panels.set(k, p);
    return p;
  }

  static disposeAll(): void {
    for (const p of [...BasePanel.panels.values()]) p.panel.dispose();
  }

  private constructor(
    private readonly key: string,
    readonly panel: vscode.WebviewPanel,
    extensionUri: vscode.Uri,
    private readonly title: string,
    private init: InitMessage,
    private handler: RequestHandler,
    private readonly status: EngineStatus | undefined,
  ) {
    super();
    panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'lora-lens.svg');
    panel.webview.html = webviewHtml(panel.webview, extensionUri, {
      title, script: 'base.js', styles: ['webview.css', 'base.css'], bodyClass: `base view-${init.view}`,
    });
    this.register(panel.webview.onDidReceiveMessage((m) => void this.onMessage(m)));
    this.register(panel.onDidChangeViewState((e) => {
      if (e.webviewPanel.active) this.showEngine();
      else this.releaseEngine();
    }));
    this.register(panel.onDidDispose(() => this.dispose()));
    this.setEngine(engineOf(init));
  }

  override dispose(): void {
    if (this.isDisposed) return;
    if (BasePanel.panels.get(this.key) === this) BasePanel.panels.delete(this.key);
    this.releaseEngine();
    super.dispose();
  }

  /** Provider of the latest job shown in the status bar (while this panel is active). */
  setEngine(e: EngineInfo): void {
    this.engine = e;
    if (this.panel.active || BasePanel.statusOwner === this || !BasePanel.statusOwner) this.showEngine();
  }

  private showEngine(): void {
    if (!this.engine || !this.status || this.isDisposed) return;
    BasePanel.statusOwner = this;
    this.status.setEngine({ ...this.engine, label: `${this.title}` });
  }

  private releaseEngine(): void {
    if (BasePanel.statusOwner !== this) return;
    BasePanel.statusOwner = undefined;
    this.status?.setEngine(undefined);
  }

  update(init: InitMessage): void {
    this.init = init;
    this.setEngine(engineOf(init));
    if (this.ready) this.post(init);
  }

  post(m: HostToWebview): void {
    if (!this.isDisposed) void this.panel.webview.postMessage(m);
  }

  private async onMessage(raw: unknown): Promise<void> {
    const m = parseWebviewToHost(raw);
    if (!m) {
      log.warn(`${this.init.view}: ignored malformed message ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.post(this.init);
        return;
      case 'log':
        log[m.level](`${this.init.view} webview: ${m.message}`);
        return;
      case 'spectra':
      case 'compareTensor':
      case 'mitigate':
      case 'openSpectra':
        try {
          const r = await this.handler(m, this);
          if (r.result && (r.result.kind === 'spectra' || r.result.kind === 'compareTensor')) this.setEngine(r.result.data.engine);
          this.post({ type: 'reply', requestId: m.requestId, ok: true, message: r.message, result: r.result ?? { kind: 'none' } });
        } catch (e) {
          const cancelled = e instanceof CancelledError;
          if (!cancelled) log.error(`${this.init.view} ${m.type}: ${errorMessage(e)}`);
          this.post({ type: 'reply', requestId: m.requestId, ok: false, error: cancelled ? 'Cancelled' : errorMessage(e) });
        }
        return;
    }
  }
}
