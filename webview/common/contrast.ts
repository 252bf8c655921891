/**
 * Chart colours that stay visible on the current theme. VS Code's chart colours can be translucent:
 * Dark Modern defines `--vscode-charts-orange` as rgba(234, 92, 0, 0.33), which drew the "adapted"
 * curve at a third of its opacity (issue 13). `solidColor` drops the alpha and, where the colour's
 * contrast with the editor background is below 3:1 (WCAG for graphics), mixes it towards the
 * foreground until it reaches 3:1. Returned as #rrggbb.
 */
import { cssVar } from './theme';

type RGB = [number, number, number];

let probe: CanvasRenderingContext2D | null | undefined;
/** Any CSS colour → [r, g, b] (0–255), alpha dropped; undefined when the browser cannot parse it. */
export function parseColor(css: string): RGB | undefined {
  probe ??= document.createElement('canvas').getContext('2d');
  if (!probe) return undefined;
  probe.fillStyle = '#010203';
  probe.fillStyle = css;
  const v = String(probe.fillStyle);
  if (v === '#010203' && css.trim().toLowerCase() !== '#010203') return undefined;
  const hex = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(v);
  if (hex) return [parseInt(hex[1], 16), parseInt(hex[2], 16), parseInt(hex[3], 16)];
  const m = /rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

/** WCAG relative luminance. */
export function luminance([r, g, b]: RGB): number {
  const f = (c: number): number => { const s = c / 255; return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
}

export function contrast(a: RGB, b: RGB): number {
  const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

const hex = (c: RGB): string => `#${c.map((x) => Math.round(Math.max(0, Math.min(255, x))).toString(16).padStart(2, '0')).join('')}`;

/** `css` made opaque and, if needed, moved towards the foreground until it has 3:1 contrast with the background. */
export function solidColor(css: string, fallback = '#3794ff'): string {
  const c = parseColor(css) ?? parseColor(fallback) ?? [55, 148, 255];
  const bg = parseColor(cssVar('--vscode-editor-background', '#1e1e1e')) ?? [30, 30, 30];
  const fg = parseColor(cssVar('--vscode-foreground', '#cccccc')) ?? [204, 204, 204];
  let out: RGB = c;
  for (let t = 0.1; contrast(out, bg) < 3 && t <= 1.0001; t += 0.1) out = [0, 1, 2].map((i) => c[i] + (fg[i] - c[i]) * t) as RGB;
  return hex(out);
}
