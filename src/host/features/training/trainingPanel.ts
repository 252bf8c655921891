/**
 * Webview panel `loraLens.training` (singleton): form, Start/Stop/Resume, live charts of LoRA vs
 * BaLoRA. The run itself is a `training.run` job on a dedicated worker (so analyses stay
 * responsive); streamed points are forwarded to the webview at most ~10 times per second.
 */
import type { Dirent } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { Train } from '../../../shared/jobs';
// Preset texts only (no trainer, no onnxruntime on the extension host).
import { TRAIN_TASKS as PRESETS } from '../../../core/train/presets';
import type { WorkerClient } from '../../../worker/client';
import {
  BUILTIN_TASKS, DEFAULT_FORM, checkForm, isBuiltinTask, parseWebviewToHost, type TaskInfo, type HostToWebview, type ResumeStates, type RunSnapshot, type RunStatus, type TrainForm,
  type TrainJobParams, type TrainJobResult, type TrainPoint, type TrainProgressData, type WebviewToHost,
} from '../../../shared/training';
import { errorMessage, log } from '../../log';
import { createWebviewPanel, LensPanel, PanelMap } from '../../panel';
import { pathExists, providerSetting } from '../../ui';

export interface TrainingDeps {
  extensionUri: vscode.Uri;
  /** Dedicated worker for training (created lazily by the feature). */
  trainingWorker: () => WorkerClient;
  reveal: () => Promise<void>;
  refreshTree: () => void;
}

const TRAIN_FOLDER = 'lora-lens-training';
/** Folders not searched for models / datasets. */
const SKIP_DIRS = new Set(['node_modules', TRAIN_FOLDER, 'out', 'dist', '__pycache__', 'venv']);
const WALK_DEPTH = 3;
const WALK_MAX_ENTRIES = 5000;
const MAX_LISTED = 50;

/**
 * Model folders (config.json + tokenizer.json + *.safetensors) and dataset files (*.jsonl, *.txt;
 * data/train.jsonl first, then other .jsonl, then .txt) under `root`, as `/`-separated relative paths.
 */
export async function detectTrainingInputs(root: string): Promise<{ models: string[]; datasets: string[] }> {
  const models: string[] = [], datasets: string[] = [];
  let seen = 0;
  const walk = async (dir: string, rel: string, depth: number): Promise<void> => {
    let entries: Dirent[];
    try { entries = await fsp.readdir(dir, { withFileTypes: true }); } catch { return; }
    entries.sort((a, b) => a.name.localeCompare(b.name));
    const names = new Set(entries.filter((e) => e.isFile()).map((e) => e.name));
    if (rel && names.has('config.json') && names.has('tokenizer.json') && [...names].some((n) => n.endsWith('.safetensors'))) models.push(rel);
    for (const e of entries) {
      if (++seen > WALK_MAX_ENTRIES) return;
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (depth < WALK_DEPTH && !e.name.startsWith('.') && !SKIP_DIRS.has(e.name)) await walk(path.join(dir, e.name), r, depth + 1);
      } else if (e.isFile() && /\.(jsonl|txt)$/i.test(e.name) && !/^(requirements|license|readme|notice|cmakelists)/i.test(e.name)) datasets.push(r);
    }
  };
  await walk(root, '', 0);
  const rank = (d: string): number => (d === 'data/train.jsonl' ? 0 : /train\.jsonl$/i.test(d) ? 1 : /\.jsonl$/i.test(d) ? 2 : 3);
  datasets.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return { models: models.slice(0, MAX_LISTED), datasets: datasets.slice(0, MAX_LISTED) };
}

/** The built-in tasks as the panel shows them. */
export function taskInfos(): TaskInfo[] {
  return BUILTIN_TASKS.map((id) => {
    const t = PRESETS[id];
    return { id, title: t.title, description: t.description, caveat: t.caveat, research: t.research, chance: 1 / t.model.p };
  });
}

/** Folder (under lora-lens-training/) of a built-in task's pre-trained base: one per task. */
export const baseFolderName = (task: string): string => `base-${task}-p${PRESETS[task as keyof typeof PRESETS]?.model.p ?? 0}`;

export class TrainingPanel extends LensPanel<WebviewToHost, HostToWebview> {
  static readonly viewType = 'loraLens.training';
  /** A singleton: one key. */
  private static readonly panels = new PanelMap<'training', TrainingPanel>();

  private status: RunStatus = 'idle';
  private message = 'Ready. Start trains LoRA and BaLoRA side by side from the same initialisation.';
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
    const open = TrainingPanel.panels.get('training');
    if (open) {
      open.panel.reveal(vscode.ViewColumn.Active);
      return open;
    }
    const panel = createWebviewPanel(deps.extensionUri, TrainingPanel.viewType, 'LoRA Lens: Training', vscode.ViewColumn.Active);
    return TrainingPanel.panels.add('training', new TrainingPanel(panel, deps));
  }

  static disposeAll(): void {
    TrainingPanel.panels.disposeAll();
  }

  private constructor(panel: vscode.WebviewPanel, private readonly deps: TrainingDeps) {
    super(panel, deps.extensionUri, { name: 'training', title: 'LoRA Lens: Training', script: 'training.js', styles: ['webview.css', 'report.css', 'surgery.css', 'training.css'], bodyClass: 'training' });
    this.statusItem.name = 'LoRA Lens training';
    this.statusItem.command = { title: 'Show training', command: 'loraLens.trainAdapter' };
    this.register(vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration('loraLens.executionProvider')) this.postStatus();
    }));
  }

  override dispose(): void {
    this.cts?.cancel();
    if (this.flushTimer) clearTimeout(this.flushTimer);
    super.dispose();
  }

  private async detected(): Promise<{ models: string[]; datasets: string[] }> {
    const f = vscode.workspace.workspaceFolders?.find((w) => w.uri.scheme === 'file');
    return f ? detectTrainingInputs(f.uri.fsPath) : { models: [], datasets: [] };
  }

  private async snapshot(): Promise<RunSnapshot> {
    const found = await this.detected();
    const form = { ...this.form };
    // Defaults of the causal-lm fields: the detected model / dataset (the webview shows them when the task is switched).
    form.modelDir ??= found.models[0];
    form.dataFile ??= found.datasets[0];
    return {
      status: this.status, message: this.message, form, points: this.points,
      provider: { setting: providerSetting(), ...this.providerUsed }, result: this.result, canResume: !!this.resumeStates && !this.cts, ...found,
      tasks: taskInfos(),
    };
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

  /** Resolves a workspace-relative path from the form; refuses paths outside the workspace and missing ones. */
  private async inWorkspace(rel: string, what: string, kind: 'dir' | 'file'): Promise<string> {
    const root = this.workspaceRoot();
    const abs = path.resolve(root, rel);
    const r = path.relative(root, abs);
    if (!r || r.startsWith('..') || path.isAbsolute(r)) throw new Error(`${what} ${rel} is not inside the workspace folder`);
    const st = await fsp.stat(abs).catch(() => undefined);
    if (!st || (kind === 'dir' ? !st.isDirectory() : !st.isFile())) throw new Error(`${what} ${rel} not found in the workspace`);
    return abs;
  }

  private async newRunDirs(form: TrainForm): Promise<TrainJobParams['saveDirs']> {
    const root = path.join(this.workspaceRoot(), TRAIN_FOLDER);
    const exists = (n: string): Promise<boolean> => pathExists(path.join(root, n));
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-');
    if (form.task === 'causal-lm') {
      const model = path.basename(form.modelDir ?? 'model').replace(/[^A-Za-z0-9._-]+/g, '_') || 'model';
      let suffix = stamp;
      for (let i = 2; (await exists(`${model}-lora-${suffix}`)) || (await exists(`${model}-balora-${suffix}`)); i++) suffix = `${stamp}-${i}`;
      return { lora: path.join(root, `${model}-lora-${suffix}`), balora: path.join(root, `${model}-balora-${suffix}`) };
    }
    const short = form.task === 'modular-subtraction' ? 'sub' : form.task;
    let base = `${short}-r${form.r}-${stamp}`;
    for (let i = 2; (await exists(`${base}-lora`)) || (await exists(`${base}-balora`)); i++) base = `${short}-r${form.r}-${stamp}-${i}`;
    return { lora: path.join(root, `${base}-lora`), balora: path.join(root, `${base}-balora`) };
  }

  private async run(resume: boolean): Promise<void> {
    if (this.cts) throw new Error('a training run is already in progress');
    // Claimed before the first await, so a second Start is refused meanwhile.
    const cts = (this.cts = new vscode.CancellationTokenSource());
    try {
      if (!resume) {
        this.points = [];
        this.unsent = [];
        this.result = undefined;
        this.resumeStates = undefined;
        this.runDirs = await this.newRunDirs(this.form);
        this.post({ type: 'init', snapshot: await this.snapshot() });
      }
    } catch (e) {
      this.cts = undefined;
      cts.dispose();
      throw e;
    }
    await this.runJob(cts, resume);
  }

  private async runJob(cts: vscode.CancellationTokenSource, resume: boolean): Promise<void> {
    try {
      const dirs = this.runDirs ?? (await this.newRunDirs(this.form));
      const causal = this.form.task === 'causal-lm';
      const params: TrainJobParams = {
        form: causal
          ? { ...this.form, modelDir: await this.inWorkspace(this.form.modelDir!, 'model folder', 'dir'), dataFile: await this.inWorkspace(this.form.dataFile!, 'dataset', 'file') }
          : this.form,
        baseDir: causal ? undefined : path.join(this.workspaceRoot(), TRAIN_FOLDER, baseFolderName(this.form.task)), provider: providerSetting(),
        resume: resume && !causal ? this.resumeStates : undefined, saveDirs: dirs,
      };
      this.setStatus('running', resume ? 'Resuming both runs…' : 'Starting…');
      log.info(`training: ${JSON.stringify(this.form)} provider ${params.provider}${resume ? ' (resume)' : ''}`);
      const r = await this.deps.trainingWorker().run(Train, params, {
        provider: params.provider,
        onProgress: (_d, _t, msg, data) => this.onProgress(msg, data),
        token: { get cancelled() { return cts.token.isCancellationRequested; }, onCancellationRequested: (cb: () => void) => cts.token.onCancellationRequested(cb) },
      });
      this.flushNow();
      this.result = r;
      this.providerUsed = { used: r.provider.used, reason: r.provider.reason };
      this.resumeStates = r.stopped ? r.resume : undefined;
      this.cts = undefined;
      cts.dispose();
      if (r.stopped) {
        this.setStatus('stopped', r.task === 'causal-lm'
          ? `Stopped at step ${r.step}/${this.form.steps}; nothing was saved. Causal-LM runs cannot be resumed: Start begins a new run.`
          : `Stopped at step ${r.step}/${this.form.steps}. Resume continues both runs.`);
      }
      else {
        const e = r.eval;
        const acc = e ? ` Held-out ${isBuiltinTask(r.task) ? 'answer' : 'next-token'} accuracy: LoRA ${(100 * e.lora.acc).toFixed(1)} %, BaLoRA ${(100 * e.balora.acc).toFixed(1)} % (base ${(100 * e.base.acc).toFixed(1)} %).` : '';
        this.setStatus('finished', `Finished ${r.step} steps in ${(r.ms / 1000).toFixed(1)} s; both adapters saved.${acc}`);
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
  private async start(form: TrainForm): Promise<void> {
    const f = checkForm(form);
    if (f.task === 'causal-lm') {
      // Refused here (so the webview's request fails with the reason) rather than inside the run.
      await this.inWorkspace(f.modelDir!, 'model folder', 'dir');
      await this.inWorkspace(f.dataFile!, 'dataset', 'file');
    }
    if (this.cts) throw new Error('a training run is already in progress');
    this.form = f;
    void this.run(false).catch((e) => log.error(`training: ${errorMessage(e)}`));
  }

  protected parse(raw: unknown): WebviewToHost | undefined {
    return parseWebviewToHost(raw);
  }

  protected onReady(): void {
    void this.snapshot().then((snapshot) => {
      this.post({ type: 'init', snapshot });
      this.postStatus();
    });
  }

  protected override async onRequest(m: Extract<WebviewToHost, { requestId: number }>): Promise<void> {
    switch (m.type) {
      case 'start':
        if (this.cts) throw new Error('a training run is already in progress');
        await this.start(m.form);
        return;
      case 'stop':
        if (!this.cts) throw new Error('no training run in progress');
        this.setStatus('stopping', 'Stopping after the current step…');
        this.cts.cancel();
        return;
      case 'resume':
        if (!this.resumeStates) throw new Error('nothing to resume');
        void this.run(true).catch((e) => log.error(`training: ${errorMessage(e)}`));
        return;
      case 'reveal':
        return this.deps.reveal();
      case 'analyze':
        await vscode.commands.executeCommand('loraLens.analyzeAdapter', vscode.Uri.file(m.path));
        return;
    }
  }

}
