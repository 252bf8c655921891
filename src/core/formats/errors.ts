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

/** Thrown when a long job is cancelled by the user. */
export class CancelledError extends Error {
  constructor() {
    super('cancelled');
    this.name = 'CancelledError';
  }
}

/** Cooperative cancellation, checked between units of work. */
export interface CancelToken {
  readonly cancelled: boolean;
}

export function throwIfCancelled(token?: CancelToken): void {
  if (token?.cancelled) throw new CancelledError();
}
