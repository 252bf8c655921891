/**
 * Research views (issue 5 part 2) in a `loraLens.research` webview, one panel per view:
 *   loraLens.attentionLipschitz  per-layer/head ‖V‖₂, ‖KᵀQ‖₂/√d, radius bound (base vs adapted) + adversarial √n chart
 *   loraLens.tokenDynamics       base vs LoRA token-particle animation + Gaussian ODE overlay + Koubbi bifurcation table
 *   loraLens.vloraIncrements     σ of W_{l+1} − W_l per weight kind, effective ranks, VLoRA parameter savings
 * All numbers come from worker jobs (src/worker/jobs/research.ts) with progress and cancel; a failure stays
 * visible in the panel (an `error` message), not only in the log.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { Dynamics, Koubbi, Lipschitz, ResolveBase, Vlora } from '../../../shared/jobs';
import type { WorkerClient } from '../../../worker/client';
import { workspaceAdapters } from '../../inspectorTree';
import { errorMessage, log } from '../../log';
import { createWebviewPanel, LensPanel, PanelMap } from '../../panel';
import type { LensContext } from '../../context';
import { pathExists, registerBoundaryCommands, argTarget } from '../../ui';
import {
  HostToWebview, parseWebviewToHost, ResearchInputs, ResearchResult, ResearchView, WebviewToHost,
} from '../../../shared/research';

const TITLES: Record<ResearchView, string> = {
  lipschitz: 'Attention Lipschitz Bounds', dynamics: 'Token Dynamics', vlora: 'Cross-layer Increments (VLoRA)',
};

interface Target { base: string; adapter?: string }

/** Base model folder of an adapter (the one resolver, core/base/resolve.ts, run by the reader worker). */
async function resolveBase(reader: WorkerClient, adapterPath: string): Promise<string | undefined> {
  return (await reader.run(ResolveBase, { adapterPath })).dir;
}

async function pickTarget(reader: WorkerClient, arg: unknown, title: string): Promise<Target | undefined> {
  const given = argTarget(arg).path;
  if (given) {
    const base = await resolveBase(reader, given);
    if (base) return { base, adapter: given };
    if (await pathExists(path.join(given, 'config.json'))) return { base: given };
    throw new Error(`${given}: cannot find its base model (base_model_name_or_path with a config.json)`);
  }
  const cands = (await Promise.all((await workspaceAdapters(reader)).map(async (r) => ({ r, base: await resolveBase(reader, r.path) })))).filter((c) => c.base);
  if (!cands.length) throw new Error('no adapter with a local base model (config.json + weights) in this workspace; run "LoRA Lens: Create Demo Workspace" or open one');
  if (cands.length === 1) return { base: cands[0].base!, adapter: cands[0].r.path };
  const pick = await vscode.window.showQuickPick(cands.map((c) => ({ label: c.r.name, detail: c.r.path, c })), { title: `LoRA Lens: ${title}`, placeHolder: 'Adapter (its local base model is used)' });
  return pick ? { base: pick.c.base!, adapter: pick.c.r.path } : undefined;
}

interface ResearchDeps { extensionUri: vscode.Uri; worker: WorkerClient }

class ResearchPanel extends LensPanel<WebviewToHost, HostToWebview> {
  private static readonly panels = new PanelMap<ResearchView, ResearchPanel>();
  private inputs: ResearchInputs = {};
  private running: vscode.CancellationTokenSource | undefined;
  private last: ResearchResult | undefined;

  static show(ctx: ResearchDeps, view: ResearchView, target: Target): ResearchPanel {
    const p = ResearchPanel.panels.get(view);
    if (p) { p.retarget(target); return p; }
    const panel = createWebviewPanel(ctx.extensionUri, 'loraLens.research', `LoRA Lens: ${TITLES[view]}`, vscode.ViewColumn.Active);
    return ResearchPanel.panels.add(view, new ResearchPanel(panel, ctx, view, target));
  }

  static disposeAll(): void { ResearchPanel.panels.disposeAll(); }

  private constructor(panel: vscode.WebviewPanel, private readonly ctx: ResearchDeps, private readonly view: ResearchView, private target: Target) {
    super(panel, ctx.extensionUri, { name: 'research', title: TITLES[view], script: 'research.js', styles: ['webview.css', 'report.css', 'research.css'], bodyClass: `research view-${view}` });
  }

  /** Another model / adapter for an open view: the header, inputs and result start afresh. */
  private retarget(target: Target): void {
    this.target = target;
    this.last = undefined;
    this.panel.reveal();
    this.post({ type: 'init', view: this.view, base: target.base, adapter: target.adapter });
    void this.compute();
  }

  override dispose(): void {
    this.running?.cancel();
    super.dispose();
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parseWebviewToHost(raw);
  }

  protected onReady(): void {
    this.post({ type: 'init', view: this.view, base: this.target.base, adapter: this.target.adapter });
    if (this.last) this.post({ type: 'result', result: this.last }); else void this.compute();
  }

  protected override onNotify(m: WebviewToHost): void {
    if (m.type !== 'recompute') return;
    this.inputs = { ...this.inputs, ...m.inputs };
    void this.compute();
  }

  private async compute(): Promise<void> {
    this.running?.cancel();
    const cts = new vscode.CancellationTokenSource();
    this.running = cts;
    const i = this.inputs, t = this.target;
    this.post({ type: 'busy', message: 'Reading the weights…' });
    try {
      const result = await vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: `LoRA Lens: ${TITLES[this.view]}`, cancellable: true }, async (progress, token) => {
        token.onCancellationRequested(() => cts.cancel());
        const opts = {
          token: { get cancelled() { return cts.token.isCancellationRequested; }, onCancellationRequested: (cb: () => void) => cts.token.onCancellationRequested(cb) },
          onProgress: (_d: number, _t: number, message: string) => { progress.report({ message }); this.post({ type: 'busy', message }); },
        };
        const w = this.ctx.worker;
        if (this.view === 'lipschitz') {
          const data = await w.run(Lipschitz, { base: t.base, adapter: t.adapter, n: i.n, R: i.R, layer: i.layer, head: i.head }, opts);
          return { view: 'lipschitz', data } as ResearchResult;
        }
        if (this.view === 'dynamics') {
          const data = await w.run(Dynamics, { base: t.base, adapter: t.adapter, layer: i.layer, head: i.head, n: i.tokens, seed: i.seed }, opts);
          const koubbi = await w.run(Koubbi, {}, opts);
          return { view: 'dynamics', data, koubbi } as ResearchResult;
        }
        const data = await w.run(Vlora, { base: t.base, adapter: t.adapter, rank: i.rank }, opts);
        return { view: 'vlora', data } as ResearchResult;
      });
      if (cts.token.isCancellationRequested) return;
      this.last = result;
      this.post({ type: 'result', result });
    } catch (e) {
      if (cts.token.isCancellationRequested) { this.post({ type: 'error', message: 'cancelled' }); return; }
      log.error(`research ${this.view}: ${errorMessage(e)}`);
      this.post({ type: 'error', message: errorMessage(e) });
    } finally {
      if (this.running === cts) this.running = undefined;
    }
  }
}

export function registerResearchFeature(ctx: LensContext): void {
  const cmds: [string, ResearchView][] = [['loraLens.attentionLipschitz', 'lipschitz'], ['loraLens.tokenDynamics', 'dynamics'], ['loraLens.vloraIncrements', 'vlora']];
  registerBoundaryCommands(ctx.extension, Object.fromEntries(cmds.map(([id, view]) => [id, async (arg?: unknown) => {
    const t = await pickTarget(ctx.reader, arg, TITLES[view]);
    if (t) ResearchPanel.show(ctx, view, t);
  }])));
  ctx.extension.subscriptions.push({ dispose: () => ResearchPanel.disposeAll() });
}
