/**
 * Commands: analyze (worker + progress + cancel), export, open checkpoint viewer, refresh.
 * Errors are shown to the user here, at the command boundary, and logged.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { AnalysisWorkerClient } from '../core/analysis/workerClient';
import { CancelledError } from '../core/formats/errors';
import { CheckpointNode, type InspectorProvider, workspaceAdapters } from './inspectorTree';
import { errorMessage, log } from './log';
import { EngineStatus, ReportPanel } from './reportPanel';

export interface CommandContext {
  extensionUri: vscode.Uri;
  worker: AnalysisWorkerClient;
  inspector: InspectorProvider;
  status: EngineStatus;
}

type Provider = 'cpu' | 'webgpu' | 'cuda';

/** Path from a tree node, Uri, string path or a Uri-like JSON object (command links). */
function argPath(arg: unknown): string | undefined {
  if (!arg) return undefined;
  if (arg instanceof CheckpointNode) return arg.isAdapter ? arg.ref.path : arg.viewerFile;
  if (arg instanceof vscode.Uri) return arg.scheme === 'file' ? arg.fsPath : undefined;
  if (typeof arg === 'string') return arg.startsWith('file:') ? vscode.Uri.parse(arg).fsPath : arg;
  if (typeof arg === 'object') {
    const o = arg as { fsPath?: unknown; path?: unknown; scheme?: unknown; ref?: { path?: unknown } };
    if (typeof o.fsPath === 'string') return o.fsPath;
    if (typeof o.path === 'string' && (o.scheme === undefined || o.scheme === 'file')) return vscode.Uri.file(o.path).fsPath;
    if (o.ref && typeof o.ref.path === 'string') return o.ref.path;
  }
  return undefined;
}

async function pickAdapter(): Promise<string | undefined> {
  const refs = workspaceAdapters();
  if (refs.length === 0) {
    void vscode.window.showInformationMessage('LoRA Lens: no LoRA adapters found in this workspace.');
    return undefined;
  }
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const pick = await vscode.window.showQuickPick(
    refs.map((r) => ({ label: r.name, detail: root ? path.relative(root, r.path) || r.path : r.path, path: r.path })),
    { title: 'LoRA Lens: Analyze Adapter', placeHolder: 'Select an adapter to analyze', matchOnDetail: true },
  );
  return pick?.path;
}

function provider(): Provider {
  const v = vscode.workspace.getConfiguration('loraLens').get<string>('executionProvider', 'cpu');
  return v === 'webgpu' || v === 'cuda' ? v : 'cpu';
}

async function analyze(ctx: CommandContext, arg: unknown): Promise<void> {
  let p = argPath(arg);
  if (!p) {
    // Palette on a checkpoint viewer / weights file: analyze that file's adapter.
    p = await pickAdapter();
    if (!p) return;
  }
  if (!fs.existsSync(p)) throw new Error(`${p} does not exist`);
  const name = path.basename(p);
  const ep = provider();
  log.info(`analyze ${p} (provider ${ep})`);
  const report = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `LoRA Lens: analyzing ${name}`, cancellable: true },
    async (progress, token) => {
      let last = 0;
      return ctx.worker.analyze({
        path: p,
        provider: ep,
        onProgress: (done, total, message) => {
          const pct = total > 0 ? (100 * done) / total : 0;
          progress.report({ message: `${message} (${done}/${total})`, increment: Math.max(0, pct - last) });
          last = Math.max(last, pct);
        },
        token: {
          get cancelled() { return token.isCancellationRequested; },
          onCancellationRequested: (cb: () => void) => token.onCancellationRequested(cb),
        },
      });
    },
  );
  log.info(`analysis of ${report.adapter.name}: ${report.modules.length} modules in ${report.timings.totalMs.toFixed(1)} ms on ${report.engine.provider}`);
  for (const w of report.warnings) log.warn(`${report.adapter.name}: ${w}`);
  ReportPanel.show(ctx.extensionUri, report);
}

async function exportReport(arg: unknown): Promise<void> {
  const panel = ReportPanel.current();
  if (!panel) {
    void vscode.window.showInformationMessage('LoRA Lens: no report is open. Run "LoRA Lens: Analyze Adapter" first.');
    return;
  }
  let format: 'json' | 'csv' | undefined = arg === 'json' || arg === 'csv' ? arg : undefined;
  if (!format) {
    const pick = await vscode.window.showQuickPick(
      [
        { label: 'JSON', description: 'full report with singular values', format: 'json' as const },
        { label: 'CSV', description: 'one row per module', format: 'csv' as const },
      ],
      { title: `Export report: ${panel.report.adapter.name}` },
    );
    format = pick?.format;
  }
  if (format) await panel.exportTo(format);
}

async function openCheckpoint(arg: unknown): Promise<void> {
  let p = argPath(arg);
  if (!p) {
    const active = vscode.window.activeTextEditor?.document.uri;
    if (active?.scheme === 'file' && /\.(safetensors|gguf)$/i.test(active.fsPath)) p = active.fsPath;
  }
  if (!p) {
    const picked = await vscode.window.showOpenDialog({
      canSelectMany: false, title: 'Open Checkpoint', filters: { Checkpoints: ['safetensors', 'gguf'] },
      defaultUri: vscode.workspace.workspaceFolders?.[0]?.uri,
    });
    p = picked?.[0]?.fsPath;
    if (!p) return;
  }
  if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
    const w = ['adapter_model.safetensors', 'adapters.safetensors'].map((n) => path.join(p!, n)).find((f) => fs.existsSync(f));
    if (!w) throw new Error(`${p} has no safetensors weights to view`);
    p = w;
  }
  await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(p), 'loraLens.checkpointViewer');
}

/** Registers all commands, each wrapped so that failures surface once, at the boundary. */
export function registerCommands(context: vscode.ExtensionContext, ctx: CommandContext): void {
  const commands: Record<string, (...args: unknown[]) => unknown> = {
    'loraLens.analyzeAdapter': (arg) => analyze(ctx, arg),
    'loraLens.exportReport': (arg) => exportReport(arg),
    'loraLens.openCheckpoint': (arg) => openCheckpoint(arg),
    'loraLens.refreshInspector': () => ctx.inspector.refresh(),
  };
  for (const [id, fn] of Object.entries(commands)) {
    context.subscriptions.push(
      vscode.commands.registerCommand(id, async (...args: unknown[]) => {
        try {
          await fn(...args);
        } catch (e) {
          if (e instanceof CancelledError) {
            log.info(`${id}: cancelled`);
            void vscode.window.showInformationMessage('LoRA Lens: analysis cancelled.');
            return;
          }
          log.error(`${id}: ${errorMessage(e)}`);
          void vscode.window.showErrorMessage(`LoRA Lens: ${errorMessage(e)}`);
        }
      }),
    );
  }
}
