/** Disposable discipline: a base class that owns child disposables. */
import * as vscode from 'vscode';

export function disposeAll(ds: vscode.Disposable[]): void {
  while (ds.length) {
    try {
      ds.pop()?.dispose();
    } catch {
      /* keep disposing the rest */
    }
  }
}

export abstract class Disposable implements vscode.Disposable {
  private readonly disposables: vscode.Disposable[] = [];
  private disposedFlag = false;

  protected get isDisposed(): boolean {
    return this.disposedFlag;
  }

  protected register<T extends vscode.Disposable>(d: T): T {
    if (this.disposedFlag) d.dispose();
    else this.disposables.push(d);
    return d;
  }

  dispose(): void {
    if (this.disposedFlag) return;
    this.disposedFlag = true;
    disposeAll(this.disposables);
  }
}
