/**
 * LensContext: what every feature's `register(ctx)` gets (after rust-analyzer's Ctx): the extension
 * context, the workers, the tree and the engine status item. Created once in activate().
 */
import type * as vscode from 'vscode';
import type { WorkerClient } from '../worker/client';
import type { InspectorProvider } from './inspectorTree';
import type { EngineStatus } from './status';

export interface LensContext {
  readonly extension: vscode.ExtensionContext;
  readonly extensionUri: vscode.Uri;
  /** Analyses, surgery, base-model and research jobs. */
  readonly worker: WorkerClient;
  /**
   * Header reads for the UI (tree, hovers, pickers, viewer, base-model resolution): a second worker
   * thread, so that the host never parses a file and the UI stays responsive during long jobs.
   */
  readonly reader: WorkerClient;
  readonly inspector: InspectorProvider;
  readonly status: EngineStatus;
}
