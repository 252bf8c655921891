/**
 * Webview panel `loraLens.training` (singleton): form, Start/Stop/Resume, live charts of LoRA vs
 * BaLoRA. The run itself is a `training.run` job on a dedicated worker (so analyses stay
 * responsive); streamed points are forwarded to the webview at most ~10 times per second.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { AnalysisWorkerClient } from '../../../core/analysis/workerClient';
import {
  DEFAULT_FORM, checkForm, parseWebviewToHost, type HostToWebview, type ResumeStates, type RunSnapshot, type RunStatus, type TrainForm,
  type TrainJobParams, type TrainJobResult, type TrainPoint, type TrainProgressData,
} from '../../../../webview/training/protocol';
import { Disposable } from '../../dispose';
import { errorMessage, log } from '../../log';
import { webviewHtml, webviewOptions } from '../../webviewHtml';
import { providerSetting } from '../../ui';

export interface TrainingDeps {
  extensionUri: vscode.Uri;
  /** Dedicated worker for training (created lazily by the feature). */
  trainingWorker: () => AnalysisWorkerClient;
  reveal: () => Promise<void>;
  refreshTree: () => void;
}

const TRAIN_FOLDER = 'lora-lens-training';

export class TrainingPanel extends Disposable {
  static readonly viewType = 'loraLens.training';
  private static instance: TrainingPanel | undefined;

  private ready = false;
  private status: RunStatus = 'idle';
  private message = 'Ready. LoRA and BaLoRA are trained side by side from the same initialisation.';
  private form: TrainForm = { ...DEFAULT_FORM };
  private points: TrainPoint[] = [];
  private unsent: TrainPoint[] = [];
  private flushTimer: NodeJS.Timeout | undefined;
  private providerUsed: { used?: RunSnapshot['provider']['used']; reason?: string } = {};
  private resumeStates: ResumeStates | undefined;
  private result: TrainJobResult | undefined;
  private cts: vscode.CancellationTokenSource | undefined;
  private runDirs: TrainJobParams['saveDirs'] | undefined;
  private readonly statusItem = this.register(vscode.window.createStatusBarItem('loraLens.training', vscode.StatusBarAlignment.Right, 99));

  static show(deps: TrainingDeps): TrainingPanel {
    if (TrainingPanel.instance) {
      TrainingPanel.instance.panel.reveal(vscode.ViewColumn.Active);
      return TrainingPanel.instance;
    }
    const panel = vscode.window.createWebviewPanel(TrainingPanel.viewType, 'LoRA Lens: Training', vscode.ViewColumn.Active, {
      ...webviewOptions(deps.extensionUri), retainContextWhenHidden: true,
    });
    TrainingPanel.instance = new TrainingPanel(panel, deps);
    return TrainingPanel.instance;
  }

  static disposeAll(): void {
    TrainingPanel.instance?.panel.dispose();
  }

  private constructor(readonly panel: vscode.WebviewPanel, private readonly deps: TrainingDeps) {
    super();
    panel.iconPath = vscode.Uri.joinPath(deps.extensionUri, 'media', 'lora-lens.svg');
    panel.webview.html = webviewHtml(panel.webview, deps.extensionUri, { title: 'LoRA Lens: Training', script: 'training.js', styles: ['webview.css', 'report.css', 'surgery.css'], bodyClass: 'training' });
    this.statusItem.name = 'LoRA Lens training';
    this.statusItem.command = { title: 'Show training', command: 'loraLens.trainAdapter' };
    this.register(panel.webview.onDidReceiveMessage((m) => void this.onMessage(m)));
    this.register(panel.onDidDispose(() => this.dispose()));
    this.register(vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('loraLens.executionProvider')) this.postStatus();
    }));
  }

  override dispose(): void {
    this.cts?.cancel();
    if (this.flushTimer) clearTimeout(this.flushTimer);
    if (TrainingPanel.instance === this) TrainingPanel.instance = undefined;
    super.dispose();
  }

  private snapshot(): RunSnapshot {
    return {
      status: this.status, message: this.message, form: this.form, points: this.points,
      provider: { setting: providerSetting(), ...this.providerUsed }, result: this.result, canResume: !!this.resumeStates && !this.cts,
    };
  }

  private post(m: HostToWebview): void {
    if (!this.isDisposed && this.ready) void this.panel.webview.postMessage(m);
  }

  private setStatus(s: RunStatus, message: string): void {
    this.status = s;
    this.message = message;
    this.postStatus();
  }

  private postStatus(): void {
    this.post({ type: 'status', status: this.status, message: this.message, provider: { setting: providerSetting(), ...this.providerUsed }, canResume: !!this.resumeStates && !this.cts });
    const running = this.status === 'running' || this.status === 'pretraining' || this.status === 'stopping';
    if (running) {
      const last = this.points[this.points.length - 1];
      this.statusItem.text = `$(loading~spin) LoRA Lens training ${last ? `${last.step}/${this.form.steps}` : ''} · ORT ${this.providerUsed.used ?? providerSetting()}`;
      this.statusItem.tooltip = this.message;
      this.statusItem.show();
    } else this.statusItem.hide();
  }

  /** Forwards buffered points at most every 100 ms. */
  private queuePoints(pts: TrainPoint[]): void {
    this.points.push(...pts);
    this.unsent.push(...pts);
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      const send = this.unsent;
      this.unsent = [];
      if (send.length) this.post({ type: 'points', points: send });
      this.postStatus();
    }, 100);
  }

  private flushNow(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    if (this.unsent.length) this.post({ type: 'points', points: this.unsent });
    this.unsent = [];
  }

  private workspaceRoot(): string {
    const f = vscode.workspace.workspaceFolders?.find((w) => w.uri.scheme === 'file');
    if (!f) throw new Error('open a folder first: trained adapters are saved into the workspace');
    return f.uri.fsPath;
  }

  private newRunDirs(form: TrainForm): TrainJobParams['saveDirs'] {
    const root = path.join(this.workspaceRoot(), TRAIN_FOLDER);
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
    let base = `sub-r${form.r}-${stamp}`;
    for (let i = 2; fs.existsSync(path.join(root, `${base}-lora`)) || fs.existsSync(path.join(root, `${base}-balora`)); i++) base = `sub-r${form.r}-${stamp}-${i}`;
    return { lora: path.join(root, `${base}-lora`), balora: path.join(root, `${base}-balora`) };
  }

  private async run(resume: boolean): Promise<void> {
    if (this.cts) throw new Error('a training run is already in progress');
    if (!resume) {
      this.points = [];
      this.unsent = [];
      this.result = undefined;
      this.resumeStates = undefined;
      this.runDirs = this.newRunDirs(this.form);
      this.post({ type: 'init', snapshot: this.snapshot() });
    }
    const dirs = this.runDirs ?? this.newRunDirs(this.form);
    const params: TrainJobParams = {
      form: this.form, baseDir: path.join(this.workspaceRoot(), TRAIN_FOLDER, 'modular-base-p23'), provider: providerSetting(),
      resume: resume ? this.resumeStates : undefined, saveDirs: dirs,
    };
    const cts = (this.cts = new vscode.CancellationTokenSource());
    this.setStatus('running', resume ? 'Resuming…' : 'Starting…');
    log.info(`training: ${JSON.stringify(this.form)} provider ${params.provider}${resume ? ' (resume)' : ''}`);
    try {
      const r = await this.deps.trainingWorker().runJob<TrainJobResult>('training.run', params, {
        provider: params.provider,
        onProgress: (_d, _t, msg, data) => this.onProgress(msg, data as TrainProgressData | undefined),
        token: { get cancelled() { return cts.token.isCancellationRequested; }, onCancellationRequested: (cb: () => void) => cts.token.onCancellationRequested(cb) },
      });
      this.flushNow();
      this.result = r;
      this.providerUsed = { used: r.provider.used, reason: r.provider.reason };
      this.resumeStates = r.stopped ? r.resume : undefined;
      this.cts = undefined;
      cts.dispose();
      if (r.stopped) this.setStatus('stopped', `Stopped at step ${r.step}/${this.form.steps}. Resume continues both runs.`);
      else {
        this.setStatus('finished', `Finished ${r.step} steps in ${(r.ms / 1000).toFixed(1)} s; adapters saved.`);
        this.deps.refreshTree();
        log.info(`training: saved ${r.saved?.lora} and ${r.saved?.balora}`);
      }
      this.post({ type: 'finished', result: r });
    } catch (e) {
      this.flushNow();
      this.cts = undefined;
      cts.dispose();
      this.resumeStates = undefined;
      this.setStatus('error', errorMessage(e));
      throw e;
    }
  }

  private onProgress(msg: string, d: TrainProgressData | undefined): void {
    if (!d) {
      if (msg) { this.message = msg; this.postStatus(); }
      return;
    }
    switch (d.kind) {
      case 'points': this.queuePoints(d.points); break;
      case 'provider':
        this.providerUsed = { used: d.used, reason: d.reason };
        if (d.reason) log.warn(`training: ${d.reason}`);
        this.postStatus();
        break;
      case 'phase':
        this.setStatus(d.phase === 'pretrain' ? 'pretraining' : this.status === 'stopping' ? 'stopping' : 'running', d.message);
        break;
    }
  }

  /** Starts a fresh run (used by the webview Start button). */
  private start(form: TrainForm): void {
    this.form = checkForm(form);
    void this.run(false).catch((e) => log.error(`training: ${errorMessage(e)}`));
  }

  private async onMessage(raw: unknown): Promise<void> {
    const m = parseWebviewToHost(raw);
    if (!m) {
      log.warn(`training: ignored malformed message ${JSON.stringify(raw)?.slice(0, 200)}`);
      return;
    }
    const reply = (requestId: number, f: () => void | Promise<void>): Promise<void> => Promise.resolve()
      .then(f)
      .then(() => this.post({ type: 'reply', requestId, ok: true }))
      .catch((e) => this.post({ type: 'reply', requestId, ok: false, error: errorMessage(e) }));
    switch (m.type) {
      case 'ready':
        this.ready = true;
        this.post({ type: 'init', snapshot: this.snapshot() });
        this.postStatus();
        return;
      case 'start':
        return reply(m.requestId, () => {
          if (this.cts) throw new Error('a training run is already in progress');
          this.start(m.form);
        });
      case 'stop':
        return reply(m.requestId, () => {
          if (!this.cts) throw new Error('no training run in progress');
          this.setStatus('stopping', 'Stopping after the current step…');
          this.cts.cancel();
        });
      case 'resume':
        return reply(m.requestId, () => {
          if (!this.resumeStates) throw new Error('nothing to resume');
          void this.run(true).catch((e) => log.error(`training: ${errorMessage(e)}`));
        });
      case 'reveal':
        return reply(m.requestId, () => this.deps.reveal());
      case 'analyze':
        return reply(m.requestId, async () => { await vscode.commands.executeCommand('loraLens.analyzeAdapter', vscode.Uri.file(m.path)); });
      case 'log':
        log[m.level](`training webview: ${m.message}`);
        return;
    }
  }
}
