/**
 * Commands: analyze (worker + progress + cancel), export, open checkpoint viewer, refresh.
 * Errors are shown to the user here, at the command boundary, and logged.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { Analyze } from '../shared/jobs';
import type { LensContext } from './context';
import { CheckpointNode } from './inspectorTree';
import { log } from './log';
import { jobProgress, pathExists, pickAdapter, providerSetting, registerBoundaryCommands } from './ui';
import { ReportPanel } from './reportPanel';


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

async function analyze(ctx: LensContext, arg: unknown): Promise<void> {
  let p = argPath(arg);
  if (!p) {
    // Palette on a checkpoint viewer / weights file: analyze that file's adapter.
    p = await pickAdapter(ctx.reader, 'LoRA Lens: Analyze Adapter');
    if (!p) return;
  }
  if (!(await pathExists(p))) throw new Error(`${p} does not exist`);
  const name = path.basename(p);
  const ep = providerSetting();
  log.info(`analyze ${p} (provider ${ep})`);
  const report = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `LoRA Lens: analyzing ${name}`, cancellable: true },
    (progress, token) => ctx.worker.run(Analyze, { path: p }, { provider: ep, ...jobProgress(progress, token) }),
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
  const st = await fsp.stat(p).catch(() => undefined);
  if (st?.isDirectory()) {
    let w: string | undefined;
    for (const n of ['adapter_model.safetensors', 'adapters.safetensors']) if (!w && (await pathExists(path.join(p, n)))) w = path.join(p, n);
    if (!w) throw new Error(`${p} has no safetensors weights to view`);
    p = w;
  }
  await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(p), 'loraLens.checkpointViewer');
}

/** Registers all commands, each wrapped so that failures surface once, at the boundary. */
export function registerCommands(ctx: LensContext): void {
  const commands: Record<string, (...args: unknown[]) => unknown> = {
    'loraLens.analyzeAdapter': (arg) => analyze(ctx, arg),
    'loraLens.exportReport': (arg) => exportReport(arg),
    'loraLens.openCheckpoint': (arg) => openCheckpoint(arg),
    'loraLens.refreshInspector': () => ctx.inspector.refresh(),
  };
  registerBoundaryCommands(ctx.extension, commands);
}
