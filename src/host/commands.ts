/**
 * Commands: analyze (worker + progress + cancel), export, open checkpoint viewer, refresh.
 * Errors are shown to the user here, at the command boundary, and logged.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { Analyze } from '../shared/jobs';
import type { LensContext } from './context';
import { log, showLog } from './log';
import { argTarget, jobProgress, pathExists, pickAdapter, providerSetting, registerBoundaryCommands } from './ui';
import { ReportPanel } from './reportPanel';


async function analyze(ctx: LensContext, arg: unknown): Promise<void> {
  let p = argTarget(arg).path;
  if (!p) {
    // Palette on a checkpoint viewer / weights file: analyze that file's adapter.
    p = await pickAdapter(ctx.reader, 'LoRA Lens: Analyze Adapter');
    if (!p) return;
  }
  if (!(await pathExists(p))) throw new Error(`${p} does not exist`);
  const name = path.basename(p);
  const ep = providerSetting();
  log.info(`analyze ${p} (provider ${ep})`);
  const target = p;
  const report = await Promise.resolve(vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `LoRA Lens: analyzing ${name}`, cancellable: true },
    (progress, token) => ctx.worker.run(Analyze, { path: target }, { provider: ep, ...jobProgress(progress, token) }),
  )).catch((e: unknown) => {
    // Re-analysing an open report: the failure also stays visible in that panel (toasts vanish).
    if (!(e instanceof Error && e.name === 'CancelledError')) ReportPanel.find(target)?.showBanner('error', `Re-analysis failed: ${e instanceof Error ? e.message : String(e)}`);
    throw e;
  });
  log.info(`analysis of ${report.adapter.name}: ${report.modules.length} modules in ${report.timings.totalMs.toFixed(1)} ms on ${report.engine.provider}`);
  for (const w of report.warnings) log.warn(`${report.adapter.name}: ${w}`);
  ReportPanel.show(ctx.extensionUri, report);
  ReportPanel.find(report.adapter.path)?.clearBanner();
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
  let p = argTarget(arg).path;
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

/** Asks for (or takes) the Checkpoints filter text: words matched against labels, paths, kinds and formats. */
async function filterCheckpoints(ctx: LensContext, arg: unknown): Promise<void> {
  let text = typeof arg === 'string' ? arg : undefined;
  if (text === undefined) {
    text = await vscode.window.showInputBox({
      title: 'Filter Checkpoints', value: ctx.inspector.filter,
      prompt: 'Words matched against names, folders, kinds and formats (e.g. "kohya", "adapters", "gguf"); empty shows everything',
      placeHolder: 'e.g. lora, tiny-llama, safetensors',
    });
    if (text === undefined) return;
  }
  ctx.inspector.setFilter(text);
}

/** Registers all commands, each wrapped so that failures surface once, at the boundary. */
export function registerCommands(ctx: LensContext): void {
  const commands: Record<string, (...args: unknown[]) => unknown> = {
    'loraLens.analyzeAdapter': (arg) => analyze(ctx, arg),
    'loraLens.exportReport': (arg) => exportReport(arg),
    'loraLens.openCheckpoint': (arg) => openCheckpoint(arg),
    'loraLens.refreshInspector': () => ctx.inspector.refresh(),
    'loraLens.filterCheckpoints': (arg) => filterCheckpoints(ctx, arg),
    'loraLens.clearCheckpointFilter': () => ctx.inspector.setFilter(''),
    'loraLens.showLog': () => showLog(),
  };
  registerBoundaryCommands(ctx.extension, commands);
}
