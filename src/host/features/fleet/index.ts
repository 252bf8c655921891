/**
 * "Analyze Folder" (issue 11.3): every adapter under a folder in one sortable, filterable table;
 * records stream into the panel as the worker finishes them; Stop cancels the job.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { FleetView } from '../../../shared/fleet';
import { Fleet } from '../../../shared/jobs';
import type { LensContext } from '../../context';
import { errorMessage, log } from '../../log';
import { providerSetting, registerBoundaryCommands } from '../../ui';
import { PeersPanel } from '../report/peersPanel';

async function folderArg(arg: unknown): Promise<string | undefined> {
  if (arg instanceof vscode.Uri && arg.scheme === 'file') return arg.fsPath;
  if (typeof arg === 'string') return arg;
  const ws = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file');
  const items: (vscode.QuickPickItem & { dir?: string })[] = ws.map((f) => ({ label: `$(root-folder) ${f.name}`, description: f.uri.fsPath, dir: f.uri.fsPath }));
  items.push({ label: '$(folder-opened) Browse…', description: 'choose another folder' });
  const pick = items.length === 1 ? items[0] : await vscode.window.showQuickPick(items, { title: 'LoRA Lens: Analyze Folder', placeHolder: 'Folder to analyse (all adapters below it)' });
  if (!pick) return undefined;
  if (pick.dir) return pick.dir;
  const sel = await vscode.window.showOpenDialog({ canSelectFolders: true, canSelectFiles: false, canSelectMany: false, title: 'Folder of adapters' });
  return sel?.[0]?.fsPath;
}

/** The latest run per folder: an older run's rows and end never touch a newer run's view. */
const runs = new Map<string, number>();

async function analyzeFolder(ctx: LensContext, arg: unknown): Promise<void> {
  const dir = await folderArg(arg);
  if (!dir) return;
  PeersPanel.get('fleet', dir)?.stop(); // a new run of the same folder replaces a running one
  const run = (runs.get(dir) ?? 0) + 1;
  runs.set(dir, run);
  const mine = (): boolean => runs.get(dir) === run;
  const cts = new vscode.CancellationTokenSource();
  const t0 = Date.now();
  const view: FleetView = { kind: 'fleet', dir, entries: [], done: 0, total: 0, running: true };
  const panel = PeersPanel.show(ctx, dir, `Fleet: ${path.basename(dir)}`, view, {
    reportSource: () => ({ kind: 'fleet', view: panel.view as FleetView }),
    stop: () => cts.cancel(),
  });
  panel.onDispose(() => cts.cancel());
  const finish = (patch: Partial<FleetView>): void => {
    const v = panel.view;
    if (!mine()) return; // replaced by a newer run of this folder
    if (v.kind === 'fleet') panel.update({ ...v, running: false, ...patch });
  };
  try {
    const summary = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: `LoRA Lens: analysing ${path.basename(dir)}` }, () =>
      ctx.worker.run(Fleet, { dir }, {
        provider: providerSetting(),
        onProgress: (done, total, _m, data) => { if (mine()) panel.append(data?.entries ?? [], done, total); },
        token: { get cancelled() { return cts.token.isCancellationRequested; }, onCancellationRequested: (cb) => cts.token.onCancellationRequested(cb) },
      }));
    log.info(`fleet ${dir}: ${summary.count} adapters, ${summary.failed} failed, ${(summary.ms / 1000).toFixed(1)} s`);
    finish({ summary });
  } catch (e) {
    const cancelled = cts.token.isCancellationRequested;
    const v = panel.view as FleetView;
    const bytes = v.entries.reduce((a, x) => a + (x.ok ? x.bytes : 0), 0);
    finish({ summary: { dir, count: v.entries.length, failed: v.entries.filter((x) => !x.ok).length, bytes, ms: Date.now() - t0, cancelled } });
    if (!cancelled) throw e;
    log.info(`fleet ${dir}: stopped (${errorMessage(e)})`);
  } finally {
    cts.dispose();
  }
}

export function registerFleet(ctx: LensContext): void {
  registerBoundaryCommands(ctx.extension, { 'loraLens.analyzeFolder': (arg) => analyzeFolder(ctx, arg) });
}
