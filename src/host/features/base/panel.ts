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
import { createWebviewPanel, LensPanel, PanelMap, type ReplyFields } from '../../panel';
import type { EngineStatus } from '../../status';

export type PanelRequest = Extract<WebviewToHost, { requestId: number }>;
export type RequestHandler = (m: PanelRequest, panel: BasePanel) => Promise<{ result?: ReplyResult; message?: string }>;

export const VIEW_TYPES: Record<BaseView, string> = {
  intruders: 'loraLens.intruders',
  spectra: 'loraLens.spectra',
  compare: 'loraLens.compare',
  model: 'loraLens.model',
};

function engineOf(init: InitMessage): EngineInfo | undefined {
  return init.view === 'spectra' ? init.data.data.engine : init.data.engine;
}

export class BasePanel extends LensPanel<WebviewToHost, HostToWebview, ReplyResult> {
  private static readonly panels = new PanelMap<string, BasePanel>();

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
    const panel = createWebviewPanel(o.extensionUri, VIEW_TYPES[o.init.view], o.title, vscode.ViewColumn.Active);
    return BasePanel.panels.add(k, new BasePanel(panel, o.extensionUri, o.title, o.init, o.handler, o.status));
  }

  static disposeAll(): void {
    BasePanel.panels.disposeAll();
  }

  private constructor(
    panel: vscode.WebviewPanel,
    extensionUri: vscode.Uri,
    private readonly title: string,
    private init: InitMessage,
    private handler: RequestHandler,
    status: EngineStatus | undefined,
  ) {
    super(panel, extensionUri, { name: init.view, title, script: 'base.js', styles: ['webview.css', 'base.css'], bodyClass: `base view-${init.view}` }, status);
    this.setEngine(engineOf(init));
  }

  /** Provider of the latest job shown in the status bar (while this panel is active). */
  setEngine(e: EngineInfo | undefined): void {
    if (e) this.setEngineEntry({ ...e, label: this.title });
  }

  reveal(): void {
    this.panel.reveal(undefined, false);
  }

  /** Current init (Analyze Model keeps its rows here so that a reload shows them). */
  get initMessage(): InitMessage {
    return this.init;
  }

  set initMessage(init: InitMessage) {
    this.init = init;
  }


  update(init: InitMessage): void {
    this.init = init;
    this.setEngine(engineOf(init));
    this.post(init);
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parseWebviewToHost(raw);
  }

  protected onReady(): void {
    this.post(this.init);
  }

  protected override async onRequest(m: PanelRequest): Promise<ReplyFields<ReplyResult>> {
    const r = await this.handler(m, this);
    if (r.result && (r.result.kind === 'spectra' || r.result.kind === 'compareTensor')) this.setEngine(r.result.data.engine);
    return { message: r.message, result: r.result ?? { kind: 'none' } };
  }
}
