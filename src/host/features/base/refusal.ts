/**
 * Refusals in the UI (issue 8): the core refuses inputs that do not belong together with a
 * MismatchError (core/base/match.ts). The user sees its one sentence; when the refusal is
 * forceable, an "… anyway" action resends the job with `force: true`.
 */
import * as vscode from 'vscode';
import { refusalOf } from '../../../shared/base';
import { errorMessage, log } from '../../log';

/**
 * Runs `run(false)`; on a forceable refusal shows its sentence with `anyway` as an action and, when
 * chosen, returns `run(true)`; undefined when the user declines. Other errors (and non-forceable
 * refusals) propagate to the command boundary, which shows them once.
 */
export async function runRefusable<T>(run: (force: boolean) => Promise<T>, anyway: string): Promise<T | undefined> {
  try {
    return await run(false);
  } catch (e) {
    const r = refusalOf(errorMessage(e));
    if (!r.forceable) throw e;
    log.warn(`refused: ${r.sentence}`);
    const choice = await vscode.window.showErrorMessage(`LoRA Lens: ${r.sentence}`, anyway);
    if (choice !== anyway) return undefined;
    log.info(`${anyway}: resent with force`);
    return run(true);
  }
}
