import { solidColor } from './contrast';

/** Theme-aware colours from VS Code's CSS variables (re-read when the theme changes). */
export function cssVar(name: string, fallback: string): string {
  const v = getComputedStyle(document.body).getPropertyValue(name).trim();
  return v || fallback;
}

export interface ThemeColors {
  fg: string;
  muted: string;
  grid: string;
  series: string[];
}

export function themeColors(): ThemeColors {
  // VS Code's chart colours can be translucent (Dark Modern's orange is 33 % alpha): made opaque with
  // ≥ 3:1 contrast against the editor background (contrast.ts).
  const base = [
    ['--vscode-charts-blue', '#3794ff'],
    ['--vscode-charts-orange', '#d18616'],
    ['--vscode-charts-green', '#89d185'],
    ['--vscode-charts-purple', '#b180d7'],
    ['--vscode-charts-red', '#f14c4c'],
    ['--vscode-charts-yellow', '#cca700'],
  ].map(([v, d]) => solidColor(cssVar(v, d), d));
  const light = document.body.classList.contains('vscode-light') || document.body.classList.contains('vscode-high-contrast-light');
  // More distinct hues for adapters with many module kinds.
  const extra = [190, 330, 95, 260, 20, 160, 300, 45].map((h) => `hsl(${h} 60% ${light ? 40 : 62}%)`);
  return {
    fg: cssVar('--vscode-foreground', '#cccccc'),
    muted: cssVar('--vscode-descriptionForeground', '#9d9d9d'),
    grid: cssVar('--vscode-editorWidget-border', cssVar('--vscode-panel-border', 'rgba(128,128,128,0.35)')),
    series: [...base, ...extra],
  };
}

/** Calls `fn` when VS Code switches theme (it changes the body class / style). */
export function onThemeChange(fn: () => void): void {
  let t: number | undefined;
  new MutationObserver(() => {
    if (t !== undefined) clearTimeout(t);
    t = window.setTimeout(fn, 50);
  }).observe(document.body, { attributes: true, attributeFilter: ['class', 'data-vscode-theme-id'] });
}
