/**
 * Tree view `loraLens.inspector` ("Checkpoints"): checkpoints found in the workspace folders, grouped
 * by folder (a folder with one checkpoint is one row labelled with its folder-relative path, so four
 * `model.safetensors` read `tiny-llama/model.safetensors`, …), training outputs under "Training runs"
 * (one row per run: its LoRA and BaLoRA adapters), and a filter (`loraLens.filterCheckpoints`).
 * Below a checkpoint: adapters → layer groups → modules → tensors, weight files → tensors (grouped by
 * layer when large). Headers are read by the reader worker (`inspect.scan`, `inspect.describe`),
 * never on the extension host's thread; a weight file's tensors are listed when its node is expanded.
 */
import * as path from 'node:path';
import * as vscode from 'vscode';
import { formatBytes, formatCount } from '../shared/format';
import {
  adapterDescription, adapterFlags, formatLabel, layoutCheckpoints, scaleRule, shapeText,
  type AdapterSnapshot, type CheckpointEntry, type CheckpointRefBrief, type ModuleBrief, type TensorBrief,
} from '../shared/inspect';
import { Describe, Scan } from '../shared/jobs';
import type { WorkerClient } from '../worker/client';
import { Disposable } from './dispose';
import { errorMessage, log } from './log';

const GROUP_THRESHOLD = 50;

export type InspectorNode = FolderNode | RunNode | CheckpointNode | GroupNode | ModuleNode | TensorNode | MessageNode;

abstract class Node extends vscode.TreeItem {
  abstract readonly parent: InspectorNode | undefined;
  abstract children(): InspectorNode[] | Promise<InspectorNode[]>;
}

export class CheckpointNode extends Node {
  /** The folder or run row it is listed under (undefined at the top level). */
  parent: InspectorNode | undefined = undefined;
  readonly isAdapter: boolean;
  readonly ref: CheckpointRefBrief;
  readonly error?: string;
  private adapter?: AdapterSnapshot;

  /** @param label the row's label (folder-relative; defaults to the checkpoint's name) */
  constructor(entry: CheckpointEntry, private readonly reader: WorkerClient, label?: string) {
    const ref = entry.ref;
    const rel = path.relative(entry.folder, ref.path) || ref.name;
    super(label ?? ref.name, vscode.TreeItemCollapsibleState.Collapsed);
    this.ref = ref;
    this.id = `ckpt:${ref.path}`;
    this.isAdapter = entry.isAdapter;
    this.resourceUri = vscode.Uri.file(ref.path);
    const d = entry.isAdapter ? entry.adapter : entry.file;
    if (!d || !('value' in d)) {
      const error = d?.error ?? 'not described';
      this.error = d?.problem ?? error;
      this.description = this.error;
      this.iconPath = new vscode.ThemeIcon('error', new vscode.ThemeColor('errorForeground'));
      this.contextValue = this.isAdapter ? 'adapterError' : 'fileError';
      this.collapsibleState = vscode.TreeItemCollapsibleState.None;
      this.tooltip = new vscode.MarkdownString(`$(error) **${ref.name}**\n\n${mdEscape(error)}`, true);
      log.warn(`inspector: ${error}`);
      return;
    }
    if (entry.isAdapter && entry.adapter && 'value' in entry.adapter) {
      const a = (this.adapter = entry.adapter.value);
      this.description = adapterDescription(a);
      this.iconPath = new vscode.ThemeIcon('layers');
      // Single-file LoRAs (kohya, diffusers, GGUF, …) are adapters too: same context, same actions.
      this.contextValue = 'adapter';
      this.tooltip = adapterTooltip(a, rel);
    } else if (entry.file && 'value' in entry.file) {
      const s = entry.file.value;
      this.description = `${ref.kind === 'sharded' ? 'sharded' : s.kind} · ${formatCount(s.parameters)} params · ${formatBytes(s.fileBytes)}`;
      this.iconPath = new vscode.ThemeIcon(ref.kind === 'sharded' ? 'files' : 'file-binary');
      this.contextValue = ref.kind === 'sharded' ? 'sharded' : 'file';
      const md = new vscode.MarkdownString(`**${ref.name}**\n\n`);
      md.appendMarkdown(`- path: \`${rel}\`\n- kind: ${s.kind}\n- tensors: ${s.tensorCount}\n- parameters: ${formatCount(s.parameters)}\n- size: ${formatBytes(s.fileBytes)}\n`);
      md.appendMarkdown(`- dtypes: ${Object.entries(s.dtypes).map(([d, n]) => `${d} (${formatCount(n)})`).join(', ')}\n`);
      this.tooltip = md;
    }
  }

  /** The file the checkpoint viewer should open for this node. */
  get viewerFile(): string {
    return this.adapter?.weightsFile ?? this.ref.files[0] ?? this.ref.path;
  }

  async children(): Promise<InspectorNode[]> {
    if (this.error) return [];
    if (this.adapter) {
      const a = this.adapter;
      const groups = new Map<string, ModuleBrief[]>();
      for (const m of a.modules) {
        const g = groups.get(m.group) ?? [];
        g.push(m);
        groups.set(m.group, g);
      }
      const out: InspectorNode[] = [...groups.entries()].map(([g, ms]) => new GroupNode(this, g, ms.map((m) => ({ m })), `${ms.length} module${ms.length === 1 ? '' : 's'}`));
      if (a.other.length) out.push(new GroupNode(this, 'other tensors', a.other.map((t) => ({ t })), `${a.other.length}`));
      return out;
    }
    try {
      const d = (await this.reader.run(Describe, { file: this.ref.files[0] ?? this.ref.path })).file;
      if (!d || !('value' in d)) return [new MessageNode(this, d?.error ?? 'not described', true)];
      const s = d.value;
      const tensors: TensorBrief[] = s.tensors.map((t) => ({ name: t.name, shape: t.shape, dtype: t.dtype }));
      if (tensors.length <= GROUP_THRESHOLD) return tensors.map((t) => new TensorNode(this, t, t.name));
      const groups = new Map<string, TensorBrief[]>();
      for (const t of tensors) {
        const m = /(?:^|\.)((?:layers|layer|h|blocks|block|resblocks|transformer_blocks)\.\d+)(?:\.|$)/.exec(t.name) ?? /(?:^|\.)(blk\.\d+)(?:\.|$)/.exec(t.name);
        const g = m ? m[1] : 'other';
        const arr = groups.get(g) ?? [];
        arr.push(t);
        groups.set(g, arr);
      }
      return [...groups.entries()].map(([g, ts]) => new GroupNode(this, g, ts.map((t) => ({ t })), `${ts.length} tensors`));
    } catch (e) {
      return [new MessageNode(this, errorMessage(e), true)];
    }
  }
}

/** A workspace folder holding several checkpoints (label: its workspace-relative path). */
export class FolderNode extends Node {
  readonly parent = undefined;
  constructor(readonly folder: string, label: string, readonly items: CheckpointNode[]) {
    super(label, vscode.TreeItemCollapsibleState.Expanded);
    this.id = `folder:${folder}`;
    this.description = `${items.length} checkpoint${items.length === 1 ? '' : 's'}`;
    this.iconPath = vscode.ThemeIcon.Folder;
    this.resourceUri = vscode.Uri.file(folder);
    this.contextValue = 'folder';
    this.tooltip = folder;
    for (const it of items) it.parent = this;
  }
  children(): InspectorNode[] {
    return this.items;
  }
}

/** "Training runs" (kind 'runs') and each run in it (kind 'run': its LoRA and BaLoRA adapters). */
export class RunNode extends Node {
  parent: InspectorNode | undefined = undefined;
  constructor(readonly key: string, label: string, readonly items: (CheckpointNode | RunNode)[], kind: 'runs' | 'run', expanded = kind === 'runs') {
    super(label, expanded ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.Collapsed);
    this.id = `${kind}:${key}`;
    this.iconPath = new vscode.ThemeIcon(kind === 'runs' ? 'history' : 'beaker');
    this.contextValue = kind;
    if (kind === 'runs') this.description = `${items.length} run${items.length === 1 ? '' : 's'}`;
    else this.description = items.map((i) => (i instanceof CheckpointNode && /-balora(?:-|$)/.test(i.ref.name) ? 'BaLoRA' : 'LoRA')).join(' + ');
    this.tooltip = key;
    for (const it of items) it.parent = this;
  }
  children(): InspectorNode[] {
    return this.items;
  }
}

export class GroupNode extends Node {
  constructor(readonly parent: CheckpointNode, readonly group: string, private readonly items: ({ m: ModuleBrief } | { t: TensorBrief })[], description: string) {
    super(group, vscode.TreeItemCollapsibleState.Collapsed);
    this.id = `${parent.id}/group:${group}`;
    this.description = description;
    this.iconPath = new vscode.ThemeIcon('symbol-namespace');
    this.contextValue = 'group';
  }

  children(): InspectorNode[] {
    return this.items.map((it) => ('m' in it ? new ModuleNode(this, it.m) : new TensorNode(this, it.t, relName(it.t.name, this.group))));
  }
}

function relName(name: string, group: string): string {
  const i = name.indexOf(`${group}.`);
  return i >= 0 ? name.slice(i + group.length + 1) || name : name;
}

export class ModuleNode extends Node {
  constructor(readonly parent: GroupNode, readonly module: ModuleBrief) {
    super(module.label, vscode.TreeItemCollapsibleState.Collapsed);
    const m = module;
    this.id = `${parent.id}/module:${m.name}`;
    const s = Number.isInteger(m.scale) ? String(m.scale) : m.scale.toPrecision(4);
    const type = m.structure === 'loha' ? 'LoHa · ' : m.structure === 'lokr' ? 'LoKr · ' : m.structure === 'vera' ? 'VeRA · ' : '';
    this.description = `${type}r=${m.rank} · s=${s} · ${m.outFeatures}×${m.inFeatures}${m.dora ? ' · DoRA' : ''}`;
    this.iconPath = new vscode.ThemeIcon('symbol-method');
    this.contextValue = 'module';
    this.tooltip = new vscode.MarkdownString(
      `**${mdEscape(m.name)}**\n\n| | |\n|---|---|\n| rank | ${m.rank} |\n| alpha | ${m.alpha ?? '–'} |\n| scale | ${s} (${mdEscape(m.scaleSource)}) |\n| ΔW shape | ${m.outFeatures}×${m.inFeatures} |\n| DoRA | ${m.dora ? 'yes' : 'no'} |\n`,
    );
  }

  children(): InspectorNode[] {
    return this.module.tensors.map((t) => new TensorNode(this, t, tensorLeaf(t.name, this.module.name)));
  }
}

/** `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` → `lora_A.weight`. */
function tensorLeaf(name: string, moduleName: string): string {
  const i = name.indexOf(`${moduleName}.`);
  if (i >= 0) return name.slice(i + moduleName.length + 1);
  const parts = name.split('.');
  return parts.slice(-2).join('.');
}

export class TensorNode extends Node {
  constructor(readonly parent: InspectorNode, readonly tensor: TensorBrief, label: string) {
    super(label, vscode.TreeItemCollapsibleState.None);
    this.id = `${parent.id}/t:${tensor.name}`;
    this.description = `${shapeText(tensor.shape)} ${tensor.dtype}`;
    this.iconPath = new vscode.ThemeIcon('symbol-array');
    this.contextValue = 'tensor';
    const numel = tensor.shape.reduce((a, b) => a * b, 1);
    this.tooltip = new vscode.MarkdownString(`\`${mdEscape(tensor.name)}\`\n\n- shape: ${shapeText(tensor.shape)}\n- dtype: ${tensor.dtype}\n- elements: ${numel.toLocaleString('en-US')}`);
  }
  children(): InspectorNode[] {
    return [];
  }
}

export class MessageNode extends Node {
  constructor(public parent: InspectorNode | undefined, message: string, error = false) {
    super(message, vscode.TreeItemCollapsibleState.None);
    this.iconPath = new vscode.ThemeIcon(error ? 'error' : 'info', error ? new vscode.ThemeColor('errorForeground') : undefined);
    this.contextValue = error ? 'message.error' : 'message';
    this.tooltip = message;
  }
  children(): InspectorNode[] {
    return [];
  }
}

function mdEscape(s: string): string {
  return s.replace(/([\\`*_{}[\]<>|#])/g, '\\$1');
}

function adapterTooltip(a: AdapterSnapshot, rel: string): vscode.MarkdownString {
  const s = a.summary;
  const md = new vscode.MarkdownString(`**${mdEscape(a.name)}** — ${formatLabel(a.format)} adapter\n\n`);
  md.appendMarkdown(`| | |\n|---|---|\n`);
  md.appendMarkdown(`| path | \`${rel}\` |\n| rank | **${s.rank ?? a.modules[0]?.rank ?? '–'}** |\n| alpha | **${s.alpha ?? '–'}** |\n`);
  md.appendMarkdown(`| scale | ${mdEscape(scaleRule(a))} |\n| targets | ${mdEscape(s.targetModules.join(', ') || '–')} |\n`);
  md.appendMarkdown(`| modules | ${a.modules.length} |\n| parameters | ${formatCount(a.parameters)} |\n`);
  const flags = adapterFlags(a);
  if (flags.length) md.appendMarkdown(`| flags | ${flags.join(', ')} |\n`);
  if (s.baseModel) md.appendMarkdown(`| base model | \`${mdEscape(s.baseModel)}\` |\n`);
  if (a.warnings.length) md.appendMarkdown(`\n**Warnings**\n\n${a.warnings.slice(0, 5).map((w) => `- ${mdEscape(w)}`).join('\n')}\n`);
  return md;
}

export class InspectorProvider extends Disposable implements vscode.TreeDataProvider<InspectorNode> {
  static readonly viewType = 'loraLens.inspector';
  private readonly emitter = this.register(new vscode.EventEmitter<InspectorNode | undefined | void>());
  readonly onDidChangeTreeData = this.emitter.event;
  private timer: NodeJS.Timeout | undefined;
  private view: vscode.TreeView<InspectorNode> | undefined;
  private filterText = '';

  private constructor(private readonly reader: WorkerClient) {
    super();
  }

  static register(context: vscode.ExtensionContext, reader: WorkerClient): InspectorProvider {
    const p = new InspectorProvider(reader);
    const view = vscode.window.createTreeView(InspectorProvider.viewType, { treeDataProvider: p, showCollapseAll: true });
    p.view = view;
    p.register(view);
    for (const glob of ['**/*.safetensors', '**/*.gguf', '**/adapter_config.json', '**/*.index.json', '**/*.bin']) {
      const w = p.register(vscode.workspace.createFileSystemWatcher(glob));
      p.register(w.onDidCreate(() => p.scheduleRefresh()));
      p.register(w.onDidChange(() => p.scheduleRefresh()));
      p.register(w.onDidDelete(() => p.scheduleRefresh()));
    }
    p.register(vscode.workspace.onDidChangeWorkspaceFolders(() => p.scheduleRefresh()));
    context.subscriptions.push(p);
    return p;
  }

  scheduleRefresh(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.refresh();
    }, 400);
  }

  /** Re-reads the tree (descriptions are cached by file mtime in the reader worker). */
  refresh(): void {
    this.emitter.fire();
  }

  /** The current filter ('' = none). */
  get filter(): string {
    return this.filterText;
  }

  /** Shows only checkpoints whose label, path, kind or format contains every word of `text`. */
  setFilter(text: string): void {
    this.filterText = text.trim();
    void vscode.commands.executeCommand('setContext', 'loraLens.checkpointFilter', !!this.filterText);
    if (this.view) this.view.description = this.filterText ? `filter: ${this.filterText}` : undefined;
    if (this.view && !this.filterText) this.view.message = undefined;
    this.refresh();
  }

  override dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    super.dispose();
  }

  getTreeItem(n: InspectorNode): vscode.TreeItem {
    return n;
  }

  getParent(n: InspectorNode): InspectorNode | undefined {
    return n.parent;
  }

  async getChildren(n?: InspectorNode): Promise<InspectorNode[]> {
    if (n) return n.children();
    const folders = fileFolders();
    const { entries, errors } = await this.reader.run(Scan, { folders });
    for (const e of errors) log.error(e);
    const layout = layoutCheckpoints(entries, this.filterText, folders.length > 1);
    const out: InspectorNode[] = [];
    for (const f of layout.folders) out.push(new FolderNode(f.dir, f.label, f.items.map((i) => new CheckpointNode(i.entry, this.reader, i.label))));
    for (const i of layout.top) out.push(new CheckpointNode(i.entry, this.reader, i.label));
    if (layout.runs.length) {
      // A few runs are shown open (their adapters one click from Analyze); many runs start collapsed.
      const open = layout.runs.length <= 3;
      const runs = layout.runs.map((r) => new RunNode(r.key, r.label, r.items.map((i) => new CheckpointNode(i.entry, this.reader, i.label)), 'run', open));
      out.push(new RunNode('training', 'Training runs', runs, 'runs'));
    }
    if (this.view) {
      const shown = layout.top.length + layout.folders.reduce((s, f) => s + f.items.length, 0) + layout.runs.reduce((s, r) => s + r.items.length, 0);
      this.view.description = this.filterText ? `filter: ${this.filterText}` : undefined;
      this.view.message = this.filterText ? `Showing ${shown} of ${entries.length} checkpoints matching "${this.filterText}".` : undefined;
    }
    if (!out.length && this.filterText) out.push(new MessageNode(undefined, `No checkpoints match "${this.filterText}"`));
    return out;
  }
}

function fileFolders(): string[] {
  return (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file').map((f) => f.uri.fsPath);
}

/** All adapters in the workspace (for the quick picks), found by the reader worker. */
export async function workspaceAdapters(reader: WorkerClient): Promise<CheckpointRefBrief[]> {
  const { entries, errors } = await reader.run(Scan, { folders: fileFolders(), adaptersOnly: true });
  for (const e of errors) log.error(e);
  return entries.map((e) => e.ref);
}

/** Checkpoints of the given kinds in the workspace (no descriptions). */
export async function workspaceCheckpoints(reader: WorkerClient, kinds: string[]): Promise<CheckpointEntry[]> {
  const { entries, errors } = await reader.run(Scan, { folders: fileFolders(), kinds });
  for (const e of errors) log.warn(e);
  return entries;
}
