/**
 * The engine status-bar item "ORT: <provider>" (after media-preview's OwnedStatusBarEntry): a panel
 * shows its entry while it is active and hides it by owner; with no owner, the fallback (the current
 * report) is shown, or nothing.
 */
import * as vscode from 'vscode';
import { Disposable } from './dispose';

export interface StatusEntry {
  provider: string;
  fallbackReason?: string;
  /** Last tooltip paragraph (what the entry belongs to). */
  label: string;
}

export class EngineStatus extends Disposable {
  private readonly item = this.register(vscode.window.createStatusBarItem('loraLens.engine', vscode.StatusBarAlignment.Right, 100));
  private owner: object | undefined;
  private entry: StatusEntry | undefined;
  private fallback: () => StatusEntry | undefined = () => undefined;

  static register(context: vscode.ExtensionContext): EngineStatus {
    const s = new EngineStatus();
    context.subscriptions.push(s);
    return s;
  }

  private constructor() {
    super();
    this.item.name = 'LoRA Lens engine';
    this.item.command = 'loraLens.exportReport';
    this.refresh();
  }

  /** What is shown while no panel owns the item. */
  setFallback(fn: () => StatusEntry | undefined): void {
    this.fallback = fn;
    this.refresh();
  }

  show(owner: object, entry: StatusEntry): void {
    this.owner = owner;
    this.entry = entry;
    this.refresh();
  }

  hide(owner: object): void {
    if (this.owner !== owner) return;
    this.owner = undefined;
    this.entry = undefined;
    this.refresh();
  }

  refresh(): void {
    const e = this.entry ?? this.fallback();
    if (!e) {
      this.item.hide();
      return;
    }
    this.item.text = `$(pulse) ORT: ${e.provider}`;
    this.item.tooltip = new vscode.MarkdownString(`**LoRA Lens** — onnxruntime execution provider \`${e.provider}\`${e.fallbackReason ? `\n\nFallback: ${e.fallbackReason}` : ''}\n\n${e.label}`);
    this.item.show();
  }
}
