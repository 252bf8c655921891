/**
 * Custom read-only editor `loraLens.checkpointViewer` for *.safetensors / *.gguf: header-only
 * summary, metadata, virtualised tensor table, adapter card; errors render as a panel with
 * "Reopen with default editor".
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ViewerInit } from '../shared/jobs';
import { parseWebviewToHost, type HostToWebview, type ViewerData, type WebviewToHost } from '../shared/viewer';
import type { WorkerClient } from '../worker/client';
import { errorMessage, log } from './log';
import { LensPanel } from './panel';

class CheckpointDocument implements vscode.CustomDocument {
  constructor(readonly uri: vscode.Uri) {}
  dispose(): void { /* nothing held: headers are read on demand */ }
}

/** The webview of one open viewer editor (the panel is VS Code's: a custom editor). */
class ViewerSession extends LensPanel<WebviewToHost, HostToWebview> {
  constructor(private readonly doc: CheckpointDocument, panel: vscode.WebviewPanel, extensionUri: vscode.Uri, private readonly reader: WorkerClient) {
    super(panel, extensionUri, { name: 'viewer', title: path.basename(doc.uri.fsPath), script: 'viewer.js', styles: ['webview.css', 'viewer.css'], bodyClass: 'viewer', icon: false });
    if (doc.uri.scheme === 'file') {
      const w = this.register(vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(path.dirname(doc.uri.fsPath)), path.basename(doc.uri.fsPath))));
      let t: NodeJS.Timeout | undefined;
      const changed = (): void => {
        if (t) clearTimeout(t);
        t = setTimeout(() => void this.sendInit(), 300);
      };
      this.register(w.onDidChange(changed));
      this.register(w.onDidCreate(changed));
      this.register(w.onDidDelete(changed));
      this.register({ dispose: () => t && clearTimeout(t) });
    }
  }

  /** Header-only data read by the reader worker (`inspect.viewer`); errors render as the viewer's error panel. */
  private async sendInit(): Promise<void> {
    if (!this.ready || this.isDisposed) return;
    const file = this.doc.uri.fsPath;
    let data: ViewerData;
    if (this.doc.uri.scheme !== 'file') data = { fileName: path.basename(this.doc.uri.path), path: this.doc.uri.toString(), error: 'Only files on disk can be inspected.' };
    else {
      try {
        data = await this.reader.run(ViewerInit, { file });
      } catch (e) {
        log.error(`viewer: ${errorMessage(e)}`);
        data = { fileName: path.basename(file), path: file, error: errorMessage(e) };
      }
    }
    this.post({ type: 'init', data });
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parseWebviewToHost(raw);
  }

  protected onReady(): void {
    void this.sendInit();
  }

  protected override async onRequest(m: Extract<WebviewToHost, { requestId: number }>): Promise<void> {
    if (m.type === 'reopenDefault') await vscode.commands.executeCommand('vscode.openWith', this.doc.uri, 'default', this.panel.viewColumn);
    else await vscode.commands.executeCommand('loraLens.analyzeAdapter', this.doc.uri);
  }
}

export class CheckpointViewerProvider implements vscode.CustomReadonlyEditorProvider<CheckpointDocument> {
  static readonly viewType = 'loraLens.checkpointViewer';

  static register(context: vscode.ExtensionContext, reader: WorkerClient): void {
    context.subscriptions.push(
      vscode.window.registerCustomEditorProvider(CheckpointViewerProvider.viewType, new CheckpointViewerProvider(context.extensionUri, reader), {
        supportsMultipleEditorsPerDocument: true,
        webviewOptions: { retainContextWhenHidden: false },
      }),
    );
  }

  constructor(private readonly extensionUri: vscode.Uri, private readonly reader: WorkerClient) {}

  openCustomDocument(uri: vscode.Uri): CheckpointDocument {
    return new CheckpointDocument(uri);
  }

  resolveCustomEditor(doc: CheckpointDocument, panel: vscode.WebviewPanel): void {
    new ViewerSession(doc, panel, this.extensionUri, this.reader);
  }
}
