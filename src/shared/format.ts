/** Pure display helpers shared by the CLI, the worker, the extension host and the webviews. */

/** Human-readable byte size. */
export function formatBytes(n: number): string {
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return `${v < 10 && i > 0 ? v.toFixed(2) : v < 100 && i > 0 ? v.toFixed(1) : Math.round(v)} ${u[i]}`;
}

/** Human-readable parameter count (1.2M, 8.0B). */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}K`;
  return String(n);
}

/** Progress line "Reading factors 2/28": the count once, after the message (not when the message already has it). */
export function progressText(message: string, done: number, total: number): string {
  if (!(total > 0) || message.includes(`${done}/${total}`)) return message;
  return `${message} ${done}/${total}`;
}
