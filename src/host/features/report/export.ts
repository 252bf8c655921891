/** "Export Report…": an analysis as Markdown or one self-contained HTML file (worker job peers.report), chosen in a save dialog. */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { ExportReport } from '../../../shared/jobs';
import type { ReportFormat, ReportResult, ReportSource } from '../../../shared/peers';
import type { LensContext } from '../../context';
import { log } from '../../log';
import { ReportPanel } from '../../reportPanel';
import { adapterArg, adapterFromArgOrPick, adapterName, pathExists, registerBoundaryCommands, runJobWithProgress } from '../../ui';

/** Asks for the new file (save dialog) and writes the report; undefined when the user cancels. */
export async function exportReport(ctx: LensContext, source: ReportSource, format: ReportFormat, name: string): Promise<ReportResult | undefined> {
  const root = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const dir = source.kind === 'adapter' ? path.dirname(source.path) : root ?? process.cwd();
  const ext = format === 'html' ? 'html' : 'md';
  let file = path.join(dir, `${name}-report.${ext}`);
  for (let i = 2; (await pathExists(file)) && i < 100; i++) file = path.join(dir, `${name}-report-${i}.${ext}`);
  const target = await vscode.window.showSaveDialog({
    defaultUri: vscode.Uri.file(file), saveLabel: 'Export report', title: `Export report (${format === 'html' ? 'self-contained HTML' : 'Markdown'})`,
    filters: format === 'html' ? { HTML: ['html'] } : { Markdown: ['md'] },
  });
  if (!target) return undefined;
  if (await pathExists(target.fsPath)) throw new Error(`${target.fsPath} already exists; LoRA Lens never overwrites, choose a new file name`);
  const r = await runJobWithProgress(ctx.worker, ExportReport, { source, format, out: target.fsPath }, `LoRA Lens: exporting ${path.basename(target.fsPath)}`);
  log.info(`report ${r.title} → ${r.out} (${r.chars} characters)`);
  void vscode.window.showInformationMessage(`LoRA Lens: wrote ${path.basename(r.out)}`, 'Open').then((a) => {
    if (a === 'Open') void vscode.commands.executeCommand('vscode.open', vscode.Uri.file(r.out));
  });
  return r;
}

export async function pickFormat(title: string): Promise<ReportFormat | undefined> {
  const f = await vscode.window.showQuickPick([
    { label: 'Markdown', description: '.md — with the model-card section, ready to paste', format: 'md' as const },
    { label: 'HTML', description: '.html — one self-contained file, charts inline', format: 'html' as const },
  ], { title, placeHolder: 'Report format' });
  return f?.format;
}

/**
 * `loraLens.exportAdapterReport` (palette, tree context menu, the Analyze report panel's button):
 * arg = the adapter (tree node, Uri or path), optional second arg = 'md' | 'html'.
 */
export function registerReport(ctx: LensContext): void {
  registerBoundaryCommands(ctx.extension, {
    'loraLens.exportAdapterReport': async (arg, fmt) => {
      // From the Analyze report panel's title bar (no argument): that report's adapter.
      const shown = ReportPanel.current();
      const fromPanel = adapterArg(arg) === undefined && shown?.panel.active ? shown.report.adapter.path : undefined;
      const p = fromPanel ?? await adapterFromArgOrPick(ctx.reader, arg, 'LoRA Lens: Export Report');
      if (!p) return;
      const format = fmt === 'md' || fmt === 'html' ? fmt : await pickFormat(`Export report of ${adapterName(p)}`);
      if (!format) return;
      await exportReport(ctx, { kind: 'adapter', path: p }, format, adapterName(p));
    },
  });
}
