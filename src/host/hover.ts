/**
 * Hovers on string/path tokens that resolve to weight files, adapter_config.json or adapter
 * folders: header-only summaries read by the reader worker (`inspect.describe`, cached by mtime
 * there); the host only stats paths (async) and renders.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as vscode from 'vscode';
import { formatBytes, formatCount } from '../shared/format';
import { adapterFlags, formatLabel, scaleRule } from '../shared/inspect';
import { Describe } from '../shared/jobs';
import type { WorkerClient } from '../worker/client';
import { errorMessage, log } from './log';

const WEIGHT_RE = /\.(safetensors|gguf|bin)$/i;
const MAX_META_CHARS = 600;

function mdEscape(s: string): string {
  return s.replace(/([\\`*_{}[\]<>|#])/g, '\\$1');
}

/** The quoted string (or bare path-like token) under `pos`, with its range. */
export function tokenAt(line: string, ch: number): { text: string; start: number; end: number } | undefined {
  const re = /"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|`([^`]*)`/g;
  for (let m = re.exec(line); m; m = re.exec(line)) {
    const start = m.index + 1;
    const end = m.index + m[0].length - 1;
    if (ch >= start && ch <= end) return { text: m[1] ?? m[2] ?? m[3] ?? '', start, end };
    if (m.index > ch) break;
  }
  const word = /[\w~./\\:@+-]+/g;
  for (let m = word.exec(line); m; m = word.exec(line)) {
    if (ch >= m.index && ch <= m.index + m[0].length) return { text: m[0].replace(/[.,:;]+$/, ''), start: m.index, end: m.index + m[0].length };
  }
  return undefined;
}

type Target = { kind: 'file' | 'config' | 'folder'; path: string };

const exists = (p: string): Promise<boolean> => fsp.access(p).then(() => true, () => false);

async function classify(p: string): Promise<Target | undefined> {
  let st;
  try {
    st = await fsp.stat(p);
  } catch {
    return undefined;
  }
  if (st.isDirectory()) return (await exists(path.join(p, 'adapter_config.json'))) ? { kind: 'folder', path: p } : undefined;
  if (path.basename(p) === 'adapter_config.json') return { kind: 'config', path: p };
  if (WEIGHT_RE.test(p)) return { kind: 'file', path: p };
  return undefined;
}

export async function resolveTarget(text: string, doc: vscode.Uri): Promise<Target | undefined> {
  let t = text.trim();
  if (!t || t.length > 1024 || /[\n\0]/.test(t)) return undefined;
  if (t.startsWith('file://')) {
    try {
      t = vscode.Uri.parse(t).fsPath;
    } catch {
      return undefined;
    }
  }
  if (t.startsWith('~/')) t = path.join(process.env.HOME ?? '', t.slice(2));
  const candidates: string[] = [];
  if (path.isAbsolute(t)) candidates.push(t);
  else {
    if (doc.scheme === 'file') candidates.push(path.resolve(path.dirname(doc.fsPath), t));
    for (const f of vscode.workspace.workspaceFolders ?? []) if (f.uri.scheme === 'file') candidates.push(path.resolve(f.uri.fsPath, t));
  }
  for (const c of candidates) {
    const r = await classify(c);
    if (r) return r;
  }
  return undefined;
}

function analyzeLink(p: string): string {
  const args = encodeURIComponent(JSON.stringify([p]));
  return `[$(pulse) Analyze adapter](command:loraLens.analyzeAdapter?${args} "Run the LoRA Lens analysis")`;
}

export async function hoverMarkdown(t: Target, reader: WorkerClient): Promise<vscode.MarkdownString> {
  const md = new vscode.MarkdownString('', true);
  md.isTrusted = { enabledCommands: ['loraLens.analyzeAdapter', 'loraLens.openCheckpoint'] };
  const dir = t.kind === 'folder' ? t.path : path.dirname(t.path);
  const inAdapterFolder = t.kind !== 'file' || (await exists(path.join(dir, 'adapter_config.json')));
  // A single-file LoRA (kohya, diffusers, GGUF, …): the worker classifies the file and describes the adapter.
  const d = await reader.run(Describe, { adapter: inAdapterFolder ? (t.kind === 'file' ? t.path : dir) : undefined, file: t.kind === 'file' ? t.path : undefined });
  const isAdapter = inAdapterFolder || !!(d.adapter && 'value' in d.adapter);
  if (isAdapter) {
    if (d.adapter && 'value' in d.adapter) {
      const a = d.adapter.value;
      const s = a.summary;
      md.appendMarkdown(`### $(layers) LoRA adapter \`${mdEscape(a.name)}\`\n\n${analyzeLink(a.path)}\n\n`);
      md.appendMarkdown(`| | |\n|---|---|\n`);
      md.appendMarkdown(`| format | ${formatLabel(a.format)}${s.peftType ? ` (${mdEscape(s.peftType)})` : ''} |\n`);
      md.appendMarkdown(`| **rank** | **${s.rank ?? a.modules[0]?.rank ?? '–'}** |\n| **alpha** | **${s.alpha ?? a.modules[0]?.alpha ?? '–'}** |\n`);
      md.appendMarkdown(`| scale | ${mdEscape(scaleRule(a))} |\n`);
      md.appendMarkdown(`| targets | ${mdEscape(s.targetModules.join(', ') || '–')} |\n`);
      md.appendMarkdown(`| rsLoRA · DoRA | ${s.useRslora ? 'yes' : 'no'} · ${s.useDora ? 'yes' : 'no'} |\n`);
      if (s.baseModel) md.appendMarkdown(`| base model | \`${mdEscape(s.baseModel)}\` |\n`);
      md.appendMarkdown(`| modules | ${a.modules.length} |\n| parameters | ${formatCount(a.parameters)} |\n`);
      const flags = adapterFlags(a).filter((f) => f !== 'rsLoRA' && f !== 'DoRA');
      if (flags.length) md.appendMarkdown(`| flags | ${flags.join(', ')} |\n`);
      if (a.warnings.length) md.appendMarkdown(`\n$(warning) ${a.warnings.slice(0, 3).map(mdEscape).join('; ')}\n`);
      md.appendMarkdown('\n');
    } else {
      md.appendMarkdown(`$(error) **Not a readable adapter**: ${mdEscape(d.adapter?.error ?? 'not described')}\n\n`);
    }
  }
  if (t.kind === 'file') {
    if (d.file && 'value' in d.file) {
      const s = d.file.value;
      if (isAdapter) md.appendMarkdown('---\n\n');
      md.appendMarkdown(`### $(file-binary) \`${mdEscape(path.basename(t.path))}\`\n\n`);
      md.appendMarkdown(`| | |\n|---|---|\n| kind | ${s.kind} |\n| tensors | ${s.tensorCount.toLocaleString('en-US')} |\n`);
      md.appendMarkdown(`| parameters | ${formatCount(s.parameters)} |\n| size | ${formatBytes(s.fileBytes)} |\n`);
      const dt = Object.entries(s.dtypes).sort((a, b) => b[1] - a[1]).map(([d, n]) => `${d}: ${formatCount(n)}`).join(', ');
      md.appendMarkdown(`| dtypes | ${dt || '–'} |\n`);
      const meta = Object.entries(s.metadata);
      if (meta.length) {
        let text = meta.map(([k, v]) => `${k}: ${v}`).join('\n');
        if (text.length > MAX_META_CHARS) text = `${text.slice(0, MAX_META_CHARS)}… (${meta.length} entries)`;
        md.appendMarkdown('\n**`__metadata__`**\n');
        md.appendCodeblock(text, 'yaml');
      }
      if (s.warnings.length) md.appendMarkdown(`\n$(warning) ${s.warnings.slice(0, 3).map(mdEscape).join('; ')}\n`);
      const open = encodeURIComponent(JSON.stringify([t.path]));
      md.appendMarkdown(`\n[$(preview) Open Checkpoint Viewer](command:loraLens.openCheckpoint?${open})\n`);
    } else {
      md.appendMarkdown(`$(error) **${mdEscape(path.basename(t.path))}**: ${mdEscape(d.file?.problem ?? 'not described')}\n`);
    }
  }
  return md;
}

export class CheckpointHoverProvider implements vscode.HoverProvider {
  static register(context: vscode.ExtensionContext, reader: WorkerClient): void {
    context.subscriptions.push(
      vscode.languages.registerHoverProvider([{ scheme: 'file' }, { scheme: 'untitled' }, { scheme: 'vscode-notebook-cell' }], new CheckpointHoverProvider(reader)),
    );
  }

  constructor(private readonly reader: WorkerClient) {}

  async provideHover(doc: vscode.TextDocument, pos: vscode.Position): Promise<vscode.Hover | undefined> {
    const line = doc.lineAt(pos.line).text;
    if (line.length > 4000) return undefined;
    const tok = tokenAt(line, pos.character);
    if (!tok || tok.text.length < 2) return undefined;
    try {
      const t = await resolveTarget(tok.text, doc.uri);
      if (!t) return undefined;
      return new vscode.Hover(await hoverMarkdown(t, this.reader), new vscode.Range(pos.line, tok.start, pos.line, tok.end));
    } catch (e) {
      log.warn(`hover: ${errorMessage(e)}`);
      return undefined;
    }
  }
}
