/**
 * Webview panel `loraLens.report` ("LoRA Lens: <adapter>"): header, charts and module table.
 * One panel per adapter path; re-analysing reveals and refreshes it. Tracks the active report
 * for `loraLens.exportReport` and the engine status bar item.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { reportToCsv, type AdapterReport } from '../shared/report';
import { parseWebviewToHost, type ExportFormat, type HostToWebview } from '../shared/reportView';
import { Disposable } from './dispose';
import { errorMessage, log } from './log';
import { webviewHtml, webviewOptions } from './webviewHtml';

export class ReportPanel extends Disposable {
  static readonly viewType = 'loraLens.report';
  private static readonly panels = new Map<string, ReportPanel>();
  private static active: ReportPanel | undefined;
  private static readonly changed = new vscode.EventEmitter<void>();
  /** Fires when report panels open, close or change focus. */
  static readonly onDidChange = ReportPanel.changed.event;

  private ready = false;

  static show(extensionUri: vscode.Uri, report: AdapterReport): ReportPanel {
    const key = report.adapter.path;
    const existing = ReportPanel.panels.get(key);
    if (existing) {
      existing.update(report);
      existing.panel.reveal(vscode.ViewColumn.Beside, false);
      return existing;
    }
    const panel = vscode.window.createWebviewPanel(ReportPanel.viewType, `LoRA Lens: ${report.adapter.name}`, vscode.ViewColumn.Beside, {
      ...webviewOptions(extensionUri),
      retainContextWhenHidden: true,
    });
    const p = new ReportPanel(panel, extensionUri, report);
    ReportPanel.panels.set(key, p);
    ReportPanel.active = p;
    ReportPanel.changed.fire();
    return p;
  }

  /** The focused report, else the most recently focused one still open. */
  static current(): ReportPanel | undefined {
    return ReportPanel.active ?? [...ReportPanel.panels.values()].pop();
  }

  static all(): ReportPanel[] {
    return [...ReportPanel.panels.values()];
  }

  static disposeAll(): void {
    for (const p of [...ReportPanel.panels.values()]) p.panel.dispose();
  }

  private constructor(readonly panel: vscode.WebviewPanel, extensionUri: vscode.Uri, private reportData: AdapterReport) {
    super();
    panel.iconPath = vscode.Uri.joinPath(extensionUri, 'media', 'lora-lens.svg');
    panel.webview.html = webviewHtml(panel.webview, extensionUri, {
      title: `LoRA Lens: ${reportData.adapter.name}`, script: 'report.js', styles: ['webview.css', 'report.css'], bodyClass: 'report',
    });
    this.register(panel.webview.onDidReceiveMessage((m) => this.onMessage(m)));
    this.register(panel.onDidChangeViewState((e) => {
      if (e.webviewPanel.active) ReportPanel.active = this;
      ReportPanel.changed.fire();
    }));
    this.register(panel.onDidDispose(() => this.dispose()));
  }

  get report(): AdapterReport {
    return this.reportData;
  }

  override dispose(): void {
    if (this.isDisposed) return;
    const key = this.reportData.adapter.path;
    if (ReportPanel.panels.get(key) === this) ReportPanel.panels.delete(key);
    if (ReportPanel.active === this) ReportPanel.active = undefined;
    super.dispose();
    ReportPanel.changed.fire();
  }

  update(report: AdapterReport): void {
    this.reportData = report;
    this.panel.title = `LoRA Lens: ${report.adapter.name}`;
    if (this.ready) this.post({ type: 'init', report });
    ReportPanel.changed.fire();
  }

  private post(m: HostToWebview): void {
    if (!this.isDisposed) void this.panel.webview.postMessage(m);
  }

  private async onMessage(raw: unknown): Promise<void> {
    const m = parseWebviewToHost(raw);
    if (!m) {
      log.warn(`report: ignored malformed message ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.post({ type: 'init', report: this.reportData });
        return;
      case 'export':
        try {
          const file = await this.exportTo(m.format);
          if (this.isDisposed) return;
          this.post({ type: 'reply', requestId: m.requestId, ok: !!file, message: file ? `Saved ${path.basename(file)}` : 'Export cancelled' });
        } catch (e) {
          log.error(`export: ${errorMessage(e)}`);
          this.post({ type: 'reply', requestId: m.requestId, ok: false, error: errorMessage(e) });
        }
        return;
      case 'log':
        log[m.level](`report webview: ${m.message}`);
        return;
    }
  }

  /** Asks for a destination (VS Code's save dialog confirms overwrites) and writes the export. */
  async exportTo(format: ExportFormat): Promise<string | undefined> {
    const r = this.reportData;
    const base = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file')?.uri ?? vscode.Uri.file(path.dirname(r.adapter.path));
    const defaultUri = vscode.Uri.joinPath(base, `${r.adapter.name}-lora-report.${format}`);
    const target = await vscode.window.showSaveDialog({
      defaultUri,
      saveLabel: `Export ${format.toUpperCase()}`,
      title: `Export LoRA Lens report (${format.toUpperCase()})`,
      filters: format === 'json' ? { JSON: ['json'] } : { CSV: ['csv'] },
    });
    if (!target) return undefined;
    const text = format === 'json' ? JSON.stringify(r, null, 2) + '\n' : reportToCsv(r);
    await vscode.workspace.fs.writeFile(target, new TextEncoder().encode(text));
    log.info(`exported ${format} report of ${r.adapter.name} to ${target.fsPath}`);
    void vscode.window.showInformationMessage(`LoRA Lens: report exported to ${path.basename(target.fsPath)}`);
    return target.fsPath;
  }
}

/** "ORT: cpu" while at least one report is open. */
export class EngineStatus extends Disposable {
  private readonly item = this.register(vscode.window.createStatusBarItem('loraLens.engine', vscode.StatusBarAlignment.Right, 100));

  static register(context: vscode.ExtensionContext): EngineStatus {
    const s = new EngineStatus();
    context.subscriptions.push(s);
    return s;
  }

  private constructor() {
    super();
    this.item.name = 'LoRA Lens engine';
    this.item.command = 'loraLens.exportReport';
    this.register(ReportPanel.onDidChange(() => this.refresh()));
    this.refresh();
  }

  private other: { provider: string; fallbackReason?: string; label: string } | undefined;

  /** Shown by other panels (base-model analyses) while they are active; undefined gives it back. */
  setEngine(e: { provider: string; fallbackReason?: string; label: string } | undefined): void {
    this.other = e;
    this.refresh();
  }

  refresh(): void {
    const p = ReportPanel.current();
    if (this.other) {
      const o = this.other;
      this.item.text = `$(pulse) ORT: ${o.provider}`;
      this.item.tooltip = new vscode.MarkdownString(`**LoRA Lens** — onnxruntime execution provider \`${o.provider}\`${o.fallbackReason ? `\n\nFallback: ${o.fallbackReason}` : ''}\n\n${o.label}`);
      this.item.show();
      return;
    }
    if (!p) {
      this.item.hide();
      return;
    }
    const e = p.report.engine;
    this.item.text = `$(pulse) ORT: ${e.provider}`;
    const t = p.report.timings;
    this.item.tooltip = new vscode.MarkdownString(
      `**LoRA Lens** — onnxruntime execution provider \`${e.provider}\`${e.fallbackReason ? `\n\nFallback: ${e.fallbackReason}` : ''}\n\n` +
        `Report: ${p.report.adapter.name} · ${t.totalMs.toFixed(0)} ms\n\nClick to export the report.`,
    );
    this.item.show();
  }
}
