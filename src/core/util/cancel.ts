/** Cooperative cancellation of long jobs (checked between units of work) and its error. */

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
