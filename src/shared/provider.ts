/** The one execution-provider vocabulary (settings, worker requests, the engine, training). */

export const PROVIDERS = ['cpu', 'webgpu', 'cuda'] as const;
export type Provider = (typeof PROVIDERS)[number];

/** A provider name from an untrusted value (a setting, a message); anything else is 'cpu'. */
export function asProvider(v: unknown): Provider {
  return v === 'webgpu' || v === 'cuda' ? v : 'cpu';
}
