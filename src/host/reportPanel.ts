/**
 * Webview panel `loraLens.report` ("LoRA Lens: <adapter>"): header, charts and module table.
 * One panel per adapter path; re-analysing reveals and refreshes it. Tracks the active report
 * for `loraLens.exportReport` and the engine status bar item (its fallback entry).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { reportToCsv, type AdapterReport } from '../shared/report';
import { exportFileName, parseWebviewToHost, type ExportFormat, type HostToWebview, type WebviewToHost } from '../shared/reportView';
import { log } from './log';
import { createWebviewPanel, LensPanel, PanelMap, type ReplyFields } from './panel';
import type { EngineStatus, StatusEntry } from './status';

export class ReportPanel extends LensPanel<WebviewToHost, HostToWebview> {
  static readonly viewType = 'loraLens.report';
  private static readonly panels = new PanelMap<string, ReportPanel>();
  private static active: ReportPanel | undefined;
  private static readonly changed = new vscode.EventEmitter<void>();
  /** Fires when report panels open, close or change focus. */
  static readonly onDidChange = ReportPanel.changed.event;

  static show(extensionUri: vscode.Uri, report: AdapterReport): ReportPanel {
    const key = report.adapter.path;
    const existing = ReportPanel.panels.get(key);
    if (existing) {
      existing.update(report);
      existing.panel.reveal(vscode.ViewColumn.Beside, false);
      return existing;
    }
    const panel = createWebviewPanel(extensionUri, ReportPanel.viewType, `LoRA Lens: ${report.adapter.name}`, vscode.ViewColumn.Beside);
    const p = ReportPanel.panels.add(key, new ReportPanel(panel, extensionUri, report));
    ReportPanel.active = p;
    ReportPanel.changed.fire();
    return p;
  }

  /** The open report of an adapter path, if any. */
  static find(adapterPath: string): ReportPanel | undefined {
    return ReportPanel.panels.get(adapterPath);
  }

  /** The focused report, else the most recently focused one still open. */
  static current(): ReportPanel | undefined {
    return ReportPanel.active ?? ReportPanel.panels.values().pop();
  }

  static all(): ReportPanel[] {
    return ReportPanel.panels.values();
  }

  static disposeAll(): void {
    ReportPanel.panels.disposeAll();
  }

  /** Makes the engine status item show the current report when no other panel owns it. */
  static attachStatus(status: EngineStatus): vscode.Disposable {
    status.setFallback(() => ReportPanel.current()?.statusEntry());
    return ReportPanel.onDidChange(() => status.refresh());
  }

  private constructor(panel: vscode.WebviewPanel, extensionUri: vscode.Uri, private reportData: AdapterReport) {
    super(panel, extensionUri, { name: 'report', title: `LoRA Lens: ${reportData.adapter.name}`, script: 'report.js', styles: ['webview.css', 'report.css'], bodyClass: 'report' });
  }

  get report(): AdapterReport {
    return this.reportData;
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parseWebviewToHost(raw);
  }

  protected onReady(): void {
    this.post({ type: 'init', report: this.reportData });
  }

  protected override onViewState(active: boolean): void {
    if (active) ReportPanel.active = this;
    ReportPanel.changed.fire();
  }

  protected override async onRequest(m: Extract<WebviewToHost, { requestId: number }>): Promise<ReplyFields> {
    const file = await this.exportTo(m.format);
    return { ok: !!file, message: file ? `Saved ${path.basename(file)}` : 'Export cancelled' };
  }

  override dispose(): void {
    if (this.isDisposed) return;
    if (ReportPanel.active === this) ReportPanel.active = undefined;
    super.dispose();
    ReportPanel.changed.fire();
  }

  update(report: AdapterReport): void {
    this.reportData = report;
    this.panel.title = `LoRA Lens: ${report.adapter.name}`;
    this.post({ type: 'init', report });
    ReportPanel.changed.fire();
  }

  private statusEntry(): StatusEntry {
    const r = this.reportData;
    return {
      provider: r.engine.provider, fallbackReason: r.engine.fallbackReason,
      label: `Report: ${r.adapter.name} · ${r.timings.totalMs.toFixed(0)} ms\n\nClick to export the report.`,
    };
  }

  /** Asks for a destination (VS Code's save dialog confirms overwrites) and writes the export. */
  async exportTo(format: ExportFormat): Promise<string | undefined> {
    const r = this.reportData;
    const base = vscode.workspace.workspaceFolders?.find((f) => f.uri.scheme === 'file')?.uri ?? vscode.Uri.file(path.dirname(r.adapter.path));
    const defaultUri = vscode.Uri.joinPath(base, exportFileName(r.adapter.name, format));
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
