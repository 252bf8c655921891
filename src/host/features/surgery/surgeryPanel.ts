/**
 * Webview panel `loraLens.surgery`: before/after view of a rebalance, the preview → written result
 * of a rank reduction, and the summary of merge/combine/rescale. One panel per operation run;
 * the host answers webview requests (write, reveal, analyze) with a `reply` (error on failure).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { parseWebviewToHost, type HostToWebview, type SurgeryView } from '../../../shared/surgery';
import { Disposable } from '../../dispose';
import { errorMessage, log } from '../../log';
import { webviewHtml, webviewOptions } from '../../webviewHtml';

export interface SurgeryPanelActions {
  /** Plan view: writes the reduced adapter and returns the new view (undefined = cancelled by the user). */
  writeReduced?: (view: Extract<SurgeryView, { kind: 'plan' }>) => Promise<SurgeryView | undefined>;
  reveal: (p: string) => Promise<void>;
  analyze: (p: string) => Promise<void>;
}

export class SurgeryPanel extends Disposable {
  static readonly viewType = 'loraLens.surgery';
  private static readonly open = new Set<SurgeryPanel>();
  private ready = false;

  static show(extensionUri: vscode.Uri, title: string, view: SurgeryView, actions: SurgeryPanelActions): SurgeryPanel {
    const panel = vscode.window.createWebviewPanel(SurgeryPanel.viewType, title, vscode.ViewColumn.Active, {
      ...webviewOptions(extensionUri), retainContextWhenHidden: true,
    });
    const p = new SurgeryPanel(panel, extensionUri, title, view, actions);
    SurgeryPanel.open.add(p);
    return p;
  }

  static disposeAll(): void {
    for (const p of [...SurgeryPanel.open]) p.panel.dispose();
  }

  private constructor(readonly panel: vscode.WebviewPanel, extensionUri: vscode.Uri, title: string, private view: SurgeryView, private readonly actions: SurgeryPanelActions) {
    super();
    panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'lora-lens.svg');
    panel.webview.html = webviewHtml(panel.webview, extensionUri, { title, script: 'surgery.js', styles: ['webview.css', 'report.css', 'surgery.css'], bodyClass: 'surgery' });
    this.register(panel.webview.onDidReceiveMessage((m) => void this.onMessage(m)));
    this.register(panel.onDidDispose(() => this.dispose()));
  }

  override dispose(): void {
    SurgeryPanel.open.delete(this);
    super.dispose();
  }

  update(view: SurgeryView, title?: string): void {
    this.view = view;
    if (title && !this.isDisposed) this.panel.title = title;
    if (this.ready) this.post({ type: 'update', view });
  }

  private post(m: HostToWebview): void {
    if (!this.isDisposed) void this.panel.webview.postMessage(m);
  }

  private async onMessage(raw: unknown): Promise<void> {
    const m = parseWebviewToHost(raw);
    if (!m) {
      log.warn(`surgery: ignored malformed message ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.post({ type: 'init', view: this.view });
        return;
      case 'writeReduced': {
        const v = this.view;
        if (v.kind !== 'plan' || !this.actions.writeReduced) {
          this.post({ type: 'reply', requestId: m.requestId, ok: false, error: 'nothing to write in this view' });
          return;
        }
        try {
          this.update({ ...v, running: true });
          const next = await this.actions.writeReduced(v);
          if (this.isDisposed) return;
          if (!next) {
            this.update({ ...v, running: false });
            this.post({ type: 'reply', requestId: m.requestId, ok: false, message: 'Cancelled' });
            return;
          }
          this.update(next, next.kind === 'reduce' ? `Reduced: ${path.basename(next.result.outDir)}` : undefined);
          this.post({ type: 'reply', requestId: m.requestId, ok: true, message: 'Written and verified' });
        } catch (e) {
          log.error(`surgery write: ${errorMessage(e)}`);
          this.update({ ...v, running: false });
          this.post({ type: 'reply', requestId: m.requestId, ok: false, error: errorMessage(e) });
        }
        return;
      }
      case 'revealInTree':
      case 'analyze':
        try {
          await (m.type === 'analyze' ? this.actions.analyze(m.path) : this.actions.reveal(m.path));
          this.post({ type: 'reply', requestId: m.requestId, ok: true });
        } catch (e) {
          this.post({ type: 'reply', requestId: m.requestId, ok: false, error: errorMessage(e) });
        }
        return;
      case 'log':
        log[m.level](`surgery webview: ${m.message}`);
        return;
    }
  }
}
