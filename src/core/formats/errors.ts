/**
 * Errors raised by readers. Every message names the file and says what is wrong with it,
 * so that the UI can show it as is ("<file>: <problem>").
 */
export class FormatError extends Error {
  constructor(
    /** Path of the offending file. */
    public readonly file: string,
    /** What is wrong, in words a user understands. */
    public readonly problem: string,
  ) {
    super(`${file}: ${problem}`);
    this.name = 'FormatError';
  }
}

// Cancellation lives in core/util/cancel.ts; re-exported for existing callers.
export { CancelledError, throwIfCancelled, type CancelToken } from '../util/cancel';
