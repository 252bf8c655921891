/**
 * One LensPanel for the issue-11 views (doctor, similarity, fleet, merge, extract): each feature
 * supplies its webview script, its current view and its actions; the panel answers the shared
 * requests (open a file at a line, analyze an adapter, export the view as a report).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { FleetEntryView } from '../../../shared/fleet';
import { parsePeersMessage, type HostToWebview, type PeersRequest, type PeersView, type ReportSource, type WebviewToHost } from '../../../shared/peers';
import type { LensContext } from '../../context';
import { createWebviewPanel, LensPanel, PanelMap, type ReplyFields } from '../../panel';
import { exportReport } from './export';

export interface PeersActions {
  /** What "Export report" exports (undefined: nothing to export yet). */
  reportSource(): ReportSource | undefined;
  rerun?(): Promise<void>;
  preview?(density?: number): Promise<void>;
  /** Returns a message for the webview's status line (undefined: cancelled by the user). */
  write?(): Promise<string | undefined>;
  stop?(): void;
}

export type PeersKind = PeersView['kind'];

export class PeersPanel extends LensPanel<WebviewToHost, HostToWebview> {
  private static readonly open = new PanelMap<string, PeersPanel>();

  /** Reveals the panel of `key` or creates it (one panel per kind + key). */
  static show(ctx: LensContext, key: string, title: string, view: PeersView, actions: PeersActions): PeersPanel {
    const k = `${view.kind}:${key}`;
    const have = PeersPanel.open.get(k);
    if (have) {
      have.actions = actions;
      have.update(view, title);
      have.panel.reveal();
      return have;
    }
    const panel = createWebviewPanel(ctx.extensionUri, `loraLens.${view.kind}`, title, vscode.ViewColumn.Active);
    return PeersPanel.open.add(k, new PeersPanel(panel, ctx, title, view, actions));
  }

  static get(kind: PeersKind, key: string): PeersPanel | undefined {
    return PeersPanel.open.get(`${kind}:${key}`);
  }

  static disposeAll(): void {
    PeersPanel.open.disposeAll();
  }

  private constructor(panel: vscode.WebviewPanel, private readonly ctx: LensContext, title: string, private current: PeersView, private actions: PeersActions) {
    super(panel, ctx.extensionUri, { name: current.kind, title, script: `${current.kind}.js`, styles: ['webview.css', 'report.css', 'peers.css'], bodyClass: `peers ${current.kind}` }, ctx.status);
  }

  /** Stops the panel's running job, if it has one (a fleet run replaced by a new one). */
  stop(): void {
    this.actions.stop?.();
  }

  get view(): PeersView {
    return this.current;
  }

  update(view: PeersView, title?: string): void {
    this.current = view;
    if (title && !this.isDisposed) this.panel.title = title;
    this.post({ type: 'update', view });
  }

  /** Fleet: rows streamed in (the view keeps them too, for a reload of the webview). */
  append(entries: FleetEntryView[], done: number, total: number): void {
    if (this.current.kind !== 'fleet') return;
    this.current.entries.push(...entries);
    this.current.done = done;
    this.current.total = total;
    this.post({ type: 'append', entries, done, total });
  }

  progress(message: string, done: number, total: number): void {
    this.post({ type: 'progress', message, done, total });
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parsePeersMessage(raw);
  }

  protected onReady(): void {
    this.post({ type: 'init', view: this.current });
  }

  protected override async onRequest(m: PeersRequest): Promise<ReplyFields> {
    switch (m.type) {
      case 'openFile': {
        const uri = vscode.Uri.file(m.file);
        if (/\.json$|\.md$|\.txt$/i.test(m.file)) {
          const line = Math.max(0, (m.line ?? 1) - 1);
          await vscode.window.showTextDocument(uri, { selection: new vscode.Range(line, 0, line, 0), viewColumn: vscode.ViewColumn.Beside });
        } else await vscode.commands.executeCommand('vscode.open', uri, vscode.ViewColumn.Beside);
        return {};
      }
      case 'analyze':
        await vscode.commands.executeCommand('loraLens.analyzeAdapter', vscode.Uri.file(m.path));
        return {};
      case 'export': {
        const src = this.actions.reportSource();
        if (!src) throw new Error('nothing to export yet');
        const r = await exportReport(this.ctx, src, m.format, suggestedName(this.current));
        return r ? { message: `Wrote ${path.basename(r.out)}` } : { ok: false, message: 'Cancelled' };
      }
      case 'rerun':
        if (!this.actions.rerun) throw new Error('this view cannot be re-run');
        await this.actions.rerun();
        return {};
      case 'preview':
        if (!this.actions.preview) throw new Error('this view has no preview');
        await this.actions.preview(m.density);
        return {};
      case 'write': {
        if (!this.actions.write) throw new Error('nothing to write in this view');
        const msg = await this.actions.write();
        return msg ? { message: msg } : { ok: false, message: 'Cancelled' };
      }
      case 'stop':
        this.actions.stop?.();
        return {};
    }
  }
}

function suggestedName(v: PeersView): string {
  switch (v.kind) {
    case 'doctor': return `${v.result.adapter.name}-doctor`;
    case 'similarity': return 'similarity';
    case 'fleet': return `${path.basename(v.dir)}-fleet`;
    case 'merge': return `merge-${v.preview.method}`;
    case 'extract': return `${path.basename(v.params.outDir)}-extract`;
  }
}
