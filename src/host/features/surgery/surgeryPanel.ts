/**
 * Webview panel `loraLens.surgery`: before/after view of a rebalance, the preview → written result
 * of a rank reduction, and the summary of merge/combine/rescale. One panel per operation run;
 * the host answers webview requests (write, reveal, analyze) with a `reply` (error on failure).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { parseWebviewToHost, type HostToWebview, type SurgeryView, type WebviewToHost } from '../../../shared/surgery';
import { verifiedText } from '../../../shared/base';
import { createWebviewPanel, LensPanel, PanelMap, type ReplyFields } from '../../panel';

export interface SurgeryPanelActions {
  /** Plan view: writes the reduced adapter and returns the new view (undefined = cancelled by the user). */
  writeReduced?: (view: Extract<SurgeryView, { kind: 'plan' }>) => Promise<SurgeryView | undefined>;
  reveal: (p: string) => Promise<void>;
  analyze: (p: string) => Promise<void>;
}

export class SurgeryPanel extends LensPanel<WebviewToHost, HostToWebview> {
  static readonly viewType = 'loraLens.surgery';
  private static readonly open = new PanelMap<number, SurgeryPanel>();
  private static nextKey = 1;

  static show(extensionUri: vscode.Uri, title: string, view: SurgeryView, actions: SurgeryPanelActions): SurgeryPanel {
    const panel = createWebviewPanel(extensionUri, SurgeryPanel.viewType, title, vscode.ViewColumn.Active);
    return SurgeryPanel.open.add(SurgeryPanel.nextKey++, new SurgeryPanel(panel, extensionUri, title, view, actions));
  }

  static disposeAll(): void {
    SurgeryPanel.open.disposeAll();
  }

  private constructor(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, title: string, private view: SurgeryView, private readonly actions: SurgeryPanelActions) {
    super(panel, extensionUri, { name: 'surgery', title, script: 'surgery.js', styles: ['webview.css', 'report.css', 'surgery.css'], bodyClass: 'surgery' });
  }

  update(view: SurgeryView, title?: string): void {
    this.view = view;
    if (title && !this.isDisposed) this.panel.title = title;
    this.post({ type: 'update', view });
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parseWebviewToHost(raw);
  }

  protected onReady(): void {
    this.post({ type: 'init', view: this.view });
  }

  protected override async onRequest(m: Extract<WebviewToHost, { requestId: number }>): Promise<ReplyFields> {
    if (m.type !== 'writeReduced') {
      await (m.type === 'analyze' ? this.actions.analyze(m.path) : this.actions.reveal(m.path));
      return {};
    }
    const v = this.view;
    if (v.kind !== 'plan' || !this.actions.writeReduced) throw new Error('nothing to write in this view');
    try {
      this.update({ ...v, running: true });
      const next = await this.actions.writeReduced(v);
      if (!next) {
        this.update({ ...v, running: false });
        return { ok: false, message: 'Cancelled' };
      }
      this.update(next, next.kind === 'reduce' ? `Reduced: ${path.basename(next.result.outDir)}` : undefined);
      return { message: next.kind === 'reduce' ? `Written. ${verifiedText(next.result.verification)}` : 'Written and verified' };
    } catch (e) {
      this.update({ ...v, running: false });
      throw e;
    }
  }
}
