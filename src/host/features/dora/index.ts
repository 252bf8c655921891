/**
 * DoRA analysed, not just listed (issue 11.6): "Analyze DoRA Magnitudes" (palette, Checkpoints tree
 * context menu on adapters) resolves the adapter's base like the other base features (the stored
 * base model, base_model_name_or_path via the `base.resolve` job, else a folder/file dialog), refuses
 * adapters without DoRA modules, and opens a panel that fills in one module at a time (`analysis.dora`).
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { parseDoraMessage, type DoraHostToWebview, type DoraModuleView, type DoraRequest, type DoraView, type DoraWebviewToHost } from '../../../shared/dora';
import { Describe, Dora, ResolveBase } from '../../../shared/jobs';
import type { LensContext } from '../../context';
import { errorMessage, log } from '../../log';
import { createWebviewPanel, LensPanel, PanelMap, type ReplyFields } from '../../panel';
import { adapterFromArgOrPick, adapterName, pathExists, providerSetting, registerBoundaryCommands } from '../../ui';

/** Bases picked in the dialog for this command, per adapter (the base feature's store holds folders only). */
const PICKED = 'loraLens.doraBases';
/** The base feature's store (src/host/features/base/baseModels.ts), read only. */
const BASE_MODELS = 'loraLens.baseModels';

class DoraPanel extends LensPanel<DoraWebviewToHost, DoraHostToWebview> {
  static readonly open = new PanelMap<string, DoraPanel>();
  private cts: vscode.CancellationTokenSource | undefined;

  static show(ctx: LensContext, view: DoraView): DoraPanel {
    const have = DoraPanel.open.get(view.adapter);
    if (have) { have.view = { ...view }; have.panel.reveal(); return have; }
    const panel = createWebviewPanel(ctx.extensionUri, 'loraLens.dora', `DoRA: ${view.adapterName}`, vscode.ViewColumn.Active);
    return DoraPanel.open.add(view.adapter, new DoraPanel(panel, ctx, view));
  }

  private constructor(panel: vscode.WebviewPanel, private readonly ctx: LensContext, public view: DoraView) {
    super(panel, ctx.extensionUri, { name: 'dora', title: `DoRA: ${view.adapterName}`, script: 'dora.js', styles: ['webview.css', 'report.css', 'peers.css', 'dora.css'], bodyClass: 'peers dora' }, ctx.status);
    this.onDispose(() => this.cts?.cancel());
  }

  /** Runs the job, streaming each module into the panel; errors stay in the panel (and its banner). */
  async run(base: string, force = false): Promise<void> {
    this.cts?.cancel();
    const cts = (this.cts = new vscode.CancellationTokenSource());
    this.view = { ...this.view, base, modules: [], warnings: [], running: true, error: undefined };
    this.post({ type: 'update', view: this.view });
    this.clearBanner();
    try {
      const r = await this.ctx.worker.run(Dora, { adapterPath: this.view.adapter, basePath: base, force }, {
        provider: providerSetting(),
        token: { get cancelled() { return cts.token.isCancellationRequested; }, onCancellationRequested: (cb: () => void) => cts.token.onCancellationRequested(cb) },
        onProgress: (done, total, _msg, data) => {
          if (!data || cts.token.isCancellationRequested) return;
          this.view.modules.push(data.module);
          this.view.total = total;
          this.post({ type: 'module', module: data.module, done, total });
        },
      });
      if (cts.token.isCancellationRequested) return;
      await remember(this.ctx, this.view.adapter, base); // a base that worked is used next time
      this.view = { ...this.view, modules: r.modules, total: r.modules.length, warnings: r.warnings, running: false, updated: new Date().toISOString() };
      log.info(`dora ${this.view.adapter} against ${base}: ${r.modules.length} module(s)`);
    } catch (e) {
      if (cts.token.isCancellationRequested) return;
      this.view = { ...this.view, running: false, error: errorMessage(e) };
      log.error(`dora ${this.view.adapter}: ${errorMessage(e)}`);
    }
    this.post({ type: 'update', view: this.view });
  }

  protected parse(raw: unknown): DoraWebviewToHost | undefined {
    return parseDoraMessage(raw);
  }

  protected onReady(): void {
    this.post({ type: 'init', view: this.view });
  }

  protected override async onRequest(m: DoraRequest): Promise<ReplyFields> {
    if (m.type === 'rerun') void this.run(this.view.base, m.force === true);
    else if (m.type === 'changeBase') {
      const base = await pickBase(this.view.adapter);
      if (!base) return { ok: false, message: 'Cancelled' };
      void this.run(base);
    }
    return {};
  }
}

/** Stored pick, the base feature's folder, base_model_name_or_path (adapter folder or workspace roots), else a dialog. */
async function resolveBase(ctx: LensContext, adapter: string): Promise<string | undefined> {
  const state = ctx.extension.workspaceState;
  const key = path.resolve(adapter);
  for (const stored of [state.get<Record<string, string>>(PICKED, {})[key], state.get<Record<string, string>>(BASE_MODELS, {})[key]]) {
    if (stored && (await pathExists(stored))) return stored;
  }
  const roots = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
  let message: string | undefined;
  try {
    const det = await ctx.reader.run(ResolveBase, { adapterPath: adapter, roots });
    if (det.dir ?? det.weights) return det.dir ?? det.weights;
    message = det.message;
  } catch (e) {
    log.warn(`base model detection for ${adapter}: ${errorMessage(e)}`);
  }
  return pickBase(adapter, message);
}

/** The open dialog for the base (folder or weights file); remembered only once a run with it succeeded. */
async function pickBase(adapter: string, message?: string): Promise<string | undefined> {
  const sel = await vscode.window.showOpenDialog({
    canSelectFiles: true, canSelectFolders: true, canSelectMany: false, openLabel: 'Use as Base',
    title: `Base model of ${adapterName(adapter)} (folder or .safetensors)${message ? ` — ${message}` : ''}`,
    defaultUri: vscode.Uri.file(path.dirname(adapter)),
  });
  return sel?.[0]?.fsPath;
}

async function remember(ctx: LensContext, adapter: string, base: string): Promise<void> {
  const state = ctx.extension.workspaceState;
  await state.update(PICKED, { ...state.get<Record<string, string>>(PICKED, {}), [path.resolve(adapter)]: base });
}

async function analyzeDoraCommand(ctx: LensContext, arg: unknown): Promise<void> {
  const p = await adapterFromArgOrPick(ctx.reader, arg, 'LoRA Lens: Analyze DoRA Magnitudes');
  if (!p) return;
  const d = (await ctx.reader.run(Describe, { adapter: p })).adapter;
  if (!d) throw new Error(`${p} is not a LoRA adapter`);
  if ('error' in d) throw new Error(d.error);
  const total = d.value.modules.filter((m) => m.dora).length;
  if (total === 0) {
    void vscode.window.showWarningMessage(`LoRA Lens: ${adapterName(p)} has no DoRA modules (no lora_magnitude_vector tensors), so there is nothing to analyse.`);
    return;
  }
  const base = await resolveBase(ctx, p);
  if (!base) return;
  const panel = DoraPanel.show(ctx, { adapter: p, adapterName: adapterName(p), base, total, modules: [] as DoraModuleView[], warnings: [], running: true });
  await panel.run(base);
}

export function registerDora(ctx: LensContext): void {
  ctx.extension.subscriptions.push({ dispose: () => DoraPanel.open.disposeAll() });
  registerBoundaryCommands(ctx.extension, {
    'loraLens.analyzeDora': (arg) => analyzeDoraCommand(ctx, arg),
  });
}
