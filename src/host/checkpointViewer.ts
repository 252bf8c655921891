/**
 * Custom read-only editor `loraLens.checkpointViewer` for *.safetensors / *.gguf: header-only
 * summary, metadata, virtualised tensor table, adapter card; errors render as a panel with
 * "Reopen with default editor".
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { FormatError } from '../core/formats/errors';
import { formatBytes, formatCount } from '../core/formats/open';
import { parseWebviewToHost, type HostToWebview, type ViewerData, type WebviewToHost } from '../shared/viewer';
import { adapterFlags, adapterSnapshot, fileSummary, formatLabel, scaleRule } from './describe';
import { errorMessage, log } from './log';
import { LensPanel } from './panel';

function isGitLfsPointer(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(64);
      const n = fs.readSync(fd, buf, 0, 64, 0);
      return buf.subarray(0, n).toString('latin1').startsWith('version https://git-lfs.github.com/spec/');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

export function viewerData(file: string): ViewerData {
  const base: ViewerData = { fileName: path.basename(file), path: file };
  if (isGitLfsPointer(file)) {
    return { ...base, error: `${file}: is a Git LFS pointer file, not the weights themselves (run \`git lfs pull\`)` };
  }
  try {
    const s = fileSummary(file);
    const data: ViewerData = {
      ...base,
      kind: s.kind,
      fileBytes: s.fileBytes,
      sizeText: formatBytes(s.fileBytes),
      tensorCount: s.tensorCount,
      parameters: s.parameters,
      parametersText: formatCount(s.parameters),
      dtypes: Object.entries(s.dtypes).sort((a, b) => b[1] - a[1]).map(([dtype, n]) => ({ dtype, parameters: n, text: formatCount(n) })),
      metadata: s.metadata,
      warnings: [...s.warnings],
      tensors: s.tensors.map((t) => [t.name, t.dtype, t.shape, t.numel]),
    };
    const hasConfig = fs.existsSync(path.join(path.dirname(file), 'adapter_config.json'));
    try {
      const a = adapterSnapshot(file);
      data.adapter = {
        name: a.name, path: a.path, format: formatLabel(a.format), rank: a.summary.rank ?? a.modules[0]?.rank,
        alpha: a.summary.alpha ?? a.modules[0]?.alpha, scaleRule: scaleRule(a), targetModules: a.summary.targetModules,
        flags: adapterFlags(a), baseModel: a.summary.baseModel, moduleCount: a.modules.length, warnings: a.warnings,
      };
    } catch (e) {
      // Only an error worth showing when the file sits in an adapter folder.
      if (hasConfig) data.warnings!.push(`Adapter: ${errorMessage(e)}`);
    }
    return data;
  } catch (e) {
    if (!(e instanceof FormatError)) log.error(`viewer: ${errorMessage(e)}`);
    return { ...base, error: errorMessage(e) };
  }
}

class CheckpointDocument implements vscode.CustomDocument {
  constructor(readonly uri: vscode.Uri) {}
  dispose(): void { /* nothing held: headers are read on demand */ }
}

/** The webview of one open viewer editor (the panel is VS Code's: a custom editor). */
class ViewerSession extends LensPanel<WebviewToHost, HostToWebview> {
  constructor(private readonly doc: CheckpointDocument, panel: vscode.WebviewPanel, extensionUri: vscode.Uri) {
    super(panel, extensionUri, { name: 'viewer', title: path.basename(doc.uri.fsPath), script: 'viewer.js', styles: ['webview.css', 'viewer.css'], bodyClass: 'viewer', icon: false });
    if (doc.uri.scheme === 'file') {
      const w = this.register(vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(path.dirname(doc.uri.fsPath)), path.basename(doc.uri.fsPath))));
      let t: NodeJS.Timeout | undefined;
      const changed = (): void => {
        if (t) clearTimeout(t);
        t = setTimeout(() => this.sendInit(), 300);
      };
      this.register(w.onDidChange(changed));
      this.register(w.onDidCreate(changed));
      this.register(w.onDidDelete(changed));
      this.register({ dispose: () => t && clearTimeout(t) });
    }
  }

  private sendInit(): void {
    if (!this.ready || this.isDisposed) return;
    const data = this.doc.uri.scheme === 'file'
      ? viewerData(this.doc.uri.fsPath)
      : { fileName: path.basename(this.doc.uri.path), path: this.doc.uri.toString(), error: 'Only files on disk can be inspected.' };
    this.post({ type: 'init', data });
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parseWebviewToHost(raw);
  }

  protected onReady(): void {
    this.sendInit();
  }

  protected override async onRequest(m: Extract<WebviewToHost, { requestId: number }>): Promise<void> {
    if (m.type === 'reopenDefault') await vscode.commands.executeCommand('vscode.openWith', this.doc.uri, 'default', this.panel.viewColumn);
    else await vscode.commands.executeCommand('loraLens.analyzeAdapter', this.doc.uri);
  }
}

export class CheckpointViewerProvider implements vscode.CustomReadonlyEditorProvider<CheckpointDocument> {
  static readonly viewType = 'loraLens.checkpointViewer';

  static register(context: vscode.ExtensionContext): void {
    context.subscriptions.push(
      vscode.window.registerCustomEditorProvider(CheckpointViewerProvider.viewType, new CheckpointViewerProvider(context.extensionUri), {
        supportsMultipleEditorsPerDocument: true,
        webviewOptions: { retainContextWhenHidden: false },
      }),
    );
  }

  constructor(private readonly extensionUri: vscode.Uri) {}

  openCustomDocument(uri: vscode.Uri): CheckpointDocument {
    return new CheckpointDocument(uri);
  }

  resolveCustomEditor(doc: CheckpointDocument, panel: vscode.WebviewPanel): void {
    new ViewerSession(doc, panel, this.extensionUri);
  }
}
