/**
 * Adapter doctor in the editor (issue 11.1): "Run Doctor" (palette, tree context menu) runs the
 * doctor job, puts every finding into the Problems panel on the adapter's files (config line or
 * weights file) and opens the findings panel; the adapter's files are watched and the doctor
 * re-runs (debounced) when they change.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import type { DoctorJobResult } from '../../../shared/doctor';
import { Doctor } from '../../../shared/jobs';
import type { LensContext } from '../../context';
import { errorMessage, log } from '../../log';
import { adapterFromArgOrPick, adapterName, providerSetting, registerBoundaryCommands, runJobWithProgress } from '../../ui';
import { PeersPanel } from '../report/peersPanel';

const SEVERITY: Record<string, vscode.DiagnosticSeverity> = {
  error: vscode.DiagnosticSeverity.Error, warning: vscode.DiagnosticSeverity.Warning, info: vscode.DiagnosticSeverity.Information,
};

class DoctorDiagnostics implements vscode.Disposable {
  readonly collection = vscode.languages.createDiagnosticCollection('LoRA Lens doctor');
  /** Files each adapter's findings were put on (to clear them on a re-run). */
  private readonly files = new Map<string, Set<string>>();
  private readonly watchers = new Map<string, vscode.Disposable>();
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(private readonly ctx: LensContext) {}

  set(adapter: string, r: DoctorJobResult): void {
    for (const f of this.files.get(adapter) ?? []) this.collection.delete(vscode.Uri.file(f));
    const byFile = new Map<string, vscode.Diagnostic[]>();
    for (const f of r.findings) {
      const line = Math.max(0, (f.line ?? 1) - 1);
      const d = new vscode.Diagnostic(new vscode.Range(line, 0, line, 1000), `${f.module ? `${f.module}: ` : ''}${f.message}`, SEVERITY[f.severity] ?? vscode.DiagnosticSeverity.Information);
      d.source = 'LoRA Lens doctor';
      d.code = f.code;
      const list = byFile.get(f.file) ?? [];
      list.push(d);
      byFile.set(f.file, list);
    }
    for (const [file, ds] of byFile) this.collection.set(vscode.Uri.file(file), ds);
    this.files.set(adapter, new Set(byFile.keys()));
    this.watch(adapter, r);
  }

  private watch(adapter: string, r: DoctorJobResult): void {
    if (this.watchers.has(adapter)) return;
    const dir = /\.(safetensors|gguf|bin|pt|pth|ckpt)$/i.test(adapter) ? path.dirname(adapter) : adapter;
    const names = [r.adapter.weightsFile, r.adapter.configFile].filter((x): x is string => !!x).map((f) => path.basename(f));
    const w = vscode.workspace.createFileSystemWatcher(new vscode.RelativePattern(vscode.Uri.file(dir), `{${names.join(',')}}`));
    const changed = (): void => this.schedule(adapter);
    w.onDidChange(changed); w.onDidCreate(changed);
    w.onDidDelete(() => { this.clear(adapter); });
    this.watchers.set(adapter, w);
  }

  private schedule(adapter: string): void {
    clearTimeout(this.timers.get(adapter));
    this.timers.set(adapter, setTimeout(() => {
      this.timers.delete(adapter);
      void runDoctor(this.ctx, this, adapter, false).catch((e) => log.warn(`doctor re-run of ${adapter}: ${errorMessage(e)}`));
    }, 800));
  }

  clear(adapter: string): void {
    for (const f of this.files.get(adapter) ?? []) this.collection.delete(vscode.Uri.file(f));
    this.files.delete(adapter);
    this.watchers.get(adapter)?.dispose();
    this.watchers.delete(adapter);
  }

  dispose(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    for (const w of this.watchers.values()) w.dispose();
    this.collection.dispose();
  }
}

async function runDoctor(ctx: LensContext, diags: DoctorDiagnostics, p: string, show: boolean): Promise<void> {
  const title = `Doctor: ${adapterName(p)}`;
  const open = PeersPanel.get('doctor', p);
  if (open && open.view.kind === 'doctor') open.update({ ...open.view, running: true });
  let r: DoctorJobResult;
  try {
    r = show ? await runJobWithProgress(ctx.worker, Doctor, { path: p }, `LoRA Lens: doctor on ${adapterName(p)}`)
      : await ctx.worker.run(Doctor, { path: p }, { provider: providerSetting() });
  } catch (e) {
    if (open && open.view.kind === 'doctor') open.update({ ...open.view, running: false });
    throw e;
  }
  log.info(`doctor ${p}: ${r.summary.error} error(s), ${r.summary.warning} warning(s), ${r.summary.info} info (${r.ms.toFixed(0)} ms)`);
  diags.set(p, r);
  const view = { kind: 'doctor' as const, result: r, updated: new Date().toISOString() };
  const have = PeersPanel.get('doctor', p);
  if (!show) { have?.update(view); return; } // background re-run: refresh in place, no focus change
  PeersPanel.show(ctx, p, title, view, {
    reportSource: () => {
      const v = PeersPanel.get('doctor', p)?.view;
      return v?.kind === 'doctor' ? { kind: 'doctor', result: v.result } : undefined;
    },
    rerun: () => runDoctor(ctx, diags, p, false),
  });
}

export function registerDoctor(ctx: LensContext): void {
  const diags = new DoctorDiagnostics(ctx);
  ctx.extension.subscriptions.push(diags);
  registerBoundaryCommands(ctx.extension, {
    'loraLens.runDoctor': async (arg) => {
      const p = await adapterFromArgOrPick(ctx.reader, arg, 'LoRA Lens: Run Doctor');
      if (p) await runDoctor(ctx, diags, p, true);
    },
  });
}
