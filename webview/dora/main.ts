/**
 * DoRA webview (`loraLens.dora`, issue 11.6): per DoRA module, the base row norms ‖W₀ᵢ‖, the learned
 * magnitudes mᵢ and the merged direction's norms ‖W₀ᵢ + s(BA)ᵢ‖ per output row (chart.js, theme
 * colours), a histogram of the per-row direction angles, the true ΔW's leading σ next to s·B·A's,
 * and a summary table over all modules (click a row to show its charts). Modules stream in one at
 * a time; a failed run stays visible as an error card. Cells carry data-metric / data-value for tests.
 */
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip } from 'chart.js';
import type { DoraHostToWebview, DoraModuleView, DoraView, DoraWebviewToHost } from '../../src/shared/dora';
import { refusalOf } from '../../src/shared/base';
import { onThemeChange, themeColors } from '../common/theme';
import { h, HostChannel } from '../common/vscodeApi';
import { badge, card, fact, fmt, short, SortTable, warningsCard, type Col } from '../peers/ui';

Chart.register(LineController, LineElement, PointElement, BarController, BarElement, LinearScale, CategoryScale, Legend, Tooltip);

let view: DoraView | undefined;
let selected: string | undefined;
let charts: Chart[] = [];
const app = document.getElementById('app')!;

const channel = new HostChannel<DoraWebviewToHost, DoraHostToWebview>((m) => {
  if (m.type === 'init' || m.type === 'update') { view = m.view; render(); }
  else if (m.type === 'module' && view) { view.modules.push(m.module); view.total = m.total; schedule(); }
});

/** Streamed modules re-render at most once per animation frame (large adapters stream hundreds). */
let pending = false;
function schedule(): void {
  if (pending) return;
  pending = true;
  requestAnimationFrame(() => { pending = false; render(); });
}

const angleDeg = (c: number): number => (180 / Math.PI) * Math.acos(Math.max(-1, Math.min(1, c)));

const COLS: Col<DoraModuleView>[] = [
  { key: 'module', label: 'Module', title: 'DoRA module', value: (r) => r.name, text: (r) => short(r.name), num: false },
  { key: 'ratioMin', label: 'm/‖W₀‖ min', title: 'smallest learned magnitude mᵢ over the base row norm ‖W₀ᵢ‖', value: (r) => r.summary.magnitudeRatio.min },
  { key: 'ratioMean', label: 'mean', title: 'mean of mᵢ / ‖W₀ᵢ‖', value: (r) => r.summary.magnitudeRatio.mean },
  { key: 'ratioMax', label: 'max', title: 'largest mᵢ / ‖W₀ᵢ‖', value: (r) => r.summary.magnitudeRatio.max },
  { key: 'maxAngle', label: 'max angle °', title: 'largest per-row angle between W₀ᵢ and W₀ᵢ + s(BA)ᵢ', value: (r) => r.summary.maxAngleDeg },
  { key: 'trueFro', label: '‖ΔW_true‖_F', title: 'Frobenius norm of the true ΔW = m ⊙ (W₀ + s·B·A)/‖W₀ + s·B·A‖ − W₀', value: (r) => r.trueDelta.fro },
  { key: 'loraFro', label: '‖s·B·A‖_F', title: 'what a LoRA-only view reports', value: (r) => r.trueDelta.loraFro },
  { key: 'relDiff', label: 'rel. diff', title: '‖ΔW_true − s·B·A‖_F / ‖ΔW_true‖_F', value: (r) => r.trueDelta.relDiffFromLora },
];

const table = new SortTable<DoraModuleView>('dora-summary', COLS, (r) => ({ 'data-module': r.name, class: r.name === selected ? 'selected' : undefined }), (r) => { selected = r.name; render(); });

function chartBox(id: string, label: string, height: number, attrs: Record<string, string | number> = {}): { box: HTMLElement; canvas: HTMLCanvasElement } {
  const canvas = h('canvas', { role: 'img', 'aria-label': label });
  const box = h('div', { class: 'chart-box dora-chart', id, ...attrs }, canvas);
  box.style.height = `${height}px`; // CSSOM, allowed under the CSP
  return { box, canvas };
}

function axes(xTitle: string, yTitle: string, c = themeColors()) {
  const ax = (t: string) => ({ title: { display: true, text: t, color: c.muted, font: { size: 12 } }, ticks: { color: c.muted, font: { size: 11 }, maxTicksLimit: 10, callback: (v: string | number) => fmt(Number(v)) }, grid: { color: c.grid } });
  return { x: { ...ax(xTitle), type: 'linear' as const }, y: ax(yTitle) };
}

const legend = (c: ReturnType<typeof themeColors>) => ({ position: 'bottom' as const, labels: { color: c.fg, boxWidth: 14, boxHeight: 3, font: { size: 12 } } });

/** ‖W₀ᵢ‖, mᵢ and ‖W₀ᵢ + s(BA)ᵢ‖ per output row. */
function normsChart(m: DoraModuleView): HTMLElement {
  const c = themeColors();
  const { box, canvas } = chartBox('dora-norms', `Row norms of ${m.name}`, 300, { 'data-rows': m.magnitude.length });
  const pts = (v: number[]) => v.map((y, x) => ({ x, y }));
  const series = [
    { label: 'base norm ‖W₀ᵢ‖', data: pts(m.normBefore), color: c.series[0], dash: [] as number[] },
    { label: 'learned magnitude mᵢ', data: pts(m.magnitude), color: c.series[1], dash: [] },
    { label: 'merged norm ‖W₀ᵢ + s(BA)ᵢ‖', data: pts(m.normMerged), color: c.series[2], dash: [5, 4] },
  ];
  const dense = m.magnitude.length > 64;
  requestAnimationFrame(() => charts.push(new Chart(canvas, {
    type: 'line',
    data: { datasets: series.map((s) => ({ label: s.label, data: s.data, borderColor: s.color, backgroundColor: s.color, borderDash: s.dash, borderWidth: 2, pointRadius: dense ? 0 : 2.5, pointHoverRadius: 4, tension: 0 })) },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false, parsing: false, normalized: true,
      interaction: { mode: 'index', intersect: false },
      plugins: { legend: legend(c), tooltip: { callbacks: { title: (items) => `row ${items[0]?.parsed.x ?? ''}`, label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y ?? undefined, 4)}` } } },
      scales: (() => { const s = axes('output row i', 'norm', c); return { ...s, x: { ...s.x, min: 0, max: Math.max(1, m.magnitude.length - 1) } }; })(),
    },
  })));
  return box;
}

/** Histogram of the per-row angles ∠(W₀ᵢ, W₀ᵢ + s(BA)ᵢ) in degrees. */
function angleHistogram(m: DoraModuleView): HTMLElement {
  const c = themeColors();
  const angles = m.directionCos.map(angleDeg);
  const top = Math.max(1e-9, ...angles);
  const bins = Math.max(5, Math.min(30, Math.ceil(Math.sqrt(angles.length))));
  const w = top / bins;
  const counts = new Array<number>(bins).fill(0);
  for (const a of angles) counts[Math.min(bins - 1, Math.floor(a / w))]++;
  const labels = counts.map((_, i) => `${fmt(i * w, 2)}–${fmt((i + 1) * w, 2)}°`);
  const { box, canvas } = chartBox('dora-angles', `Histogram of the direction angles of ${m.name}`, 260, { 'data-bins': bins, 'data-count': angles.length });
  requestAnimationFrame(() => charts.push(new Chart(canvas, {
    type: 'bar',
    data: { labels, datasets: [{ label: 'rows', data: counts, backgroundColor: c.series[3], borderColor: c.series[3], borderWidth: 1, barPercentage: 1, categoryPercentage: 0.95 }] },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: false }, tooltip: { callbacks: { label: (ctx) => `${ctx.parsed.y} rows` } } },
      scales: {
        x: { title: { display: true, text: 'angle between W₀ᵢ and W₀ᵢ + s(BA)ᵢ (degrees)', color: c.muted }, ticks: { color: c.muted, font: { size: 10 }, maxRotation: 45, autoSkip: true }, grid: { display: false } },
        y: { beginAtZero: true, title: { display: true, text: 'rows', color: c.muted }, ticks: { color: c.muted, precision: 0 }, grid: { color: c.grid } },
      },
    },
  })));
  return box;
}

/** Leading σ of the true ΔW next to s·B·A's (grouped bars + the numbers). */
function sigmaChart(m: DoraModuleView): HTMLElement {
  const c = themeColors();
  const k = Math.max(m.trueDelta.sigma.length, Math.min(m.loraSigma.length, m.trueDelta.sigma.length || m.loraSigma.length));
  const labels = Array.from({ length: k }, (_, i) => `σ${i + 1}`);
  const { box, canvas } = chartBox('dora-sigma', `Leading singular values of ${m.name}`, 240, { 'data-k': k });
  requestAnimationFrame(() => charts.push(new Chart(canvas, {
    type: 'bar',
    data: {
      labels,
      datasets: [
        { label: 'true ΔW', data: m.trueDelta.sigma.slice(0, k), backgroundColor: c.series[0], borderColor: c.series[0], borderWidth: 1, maxBarThickness: 36 },
        { label: 's·B·A (LoRA-only view)', data: labels.map((_, i) => m.loraSigma[i] ?? 0), backgroundColor: c.series[1], borderColor: c.series[1], borderWidth: 1, maxBarThickness: 36 },
      ],
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: legend(c), tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y ?? undefined, 4)}` } } },
      scales: {
        x: { ticks: { color: c.muted }, grid: { display: false } },
        y: { beginAtZero: true, title: { display: true, text: 'singular value', color: c.muted }, ticks: { color: c.muted, callback: (v) => fmt(Number(v)) }, grid: { color: c.grid } },
      },
    },
  })));
  const row = (label: string, v: number[], metric: string) => h('tr', {}, h('th', { scope: 'row' }, label), ...labels.map((_, i) => h('td', { class: 'num', 'data-metric': `${metric}${i + 1}`, 'data-value': String(v[i] ?? '') }, fmt(v[i], 4))));
  const t = h('table', { class: 'data sigma-table', id: 'dora-sigma-table' },
    h('thead', {}, h('tr', {}, h('th', {}, ''), ...labels.map((l) => h('th', { class: 'num', scope: 'col' }, l)))),
    h('tbody', {}, row('true ΔW', m.trueDelta.sigma, 'true-sigma'), row('s·B·A', m.loraSigma, 'lora-sigma')));
  return h('div', {}, box, h('div', { class: 'table-wrap' }, t));
}

function moduleFacts(m: DoraModuleView): HTMLElement {
  const r = m.summary.magnitudeRatio;
  return h('dl', { class: 'facts', id: 'dora-module-facts', 'data-module': m.name },
    fact('ratio', 'm/‖W₀‖ min · mean · max', `${fmt(r.min)} · ${fmt(r.mean)} · ${fmt(r.max)}`),
    fact('max-angle', 'max angle', h('span', { 'data-value': String(m.summary.maxAngleDeg) }, `${fmt(m.summary.maxAngleDeg, 4)}°`)),
    fact('true-fro', '‖ΔW_true‖_F', h('span', { 'data-value': String(m.trueDelta.fro) }, fmt(m.trueDelta.fro, 4))),
    fact('lora-fro', '‖s·B·A‖_F', h('span', { 'data-value': String(m.trueDelta.loraFro) }, fmt(m.trueDelta.loraFro, 4))),
    fact('rel-diff', 'relative difference', h('span', { 'data-value': String(m.trueDelta.relDiffFromLora) }, fmt(m.trueDelta.relDiffFromLora))),
    fact('shape', 'shape · rank · scale', `${m.outFeatures}×${Number.isFinite(m.inFeatures) ? m.inFeatures : '?'} · r=${m.rank} · s=${fmt(m.scale)}`));
}

function render(): void {
  if (!view) return;
  for (const c of charts) c.destroy();
  charts = [];
  const v = view;
  const mods = v.modules;
  if (!mods.some((m) => m.name === selected)) selected = mods[0]?.name;
  const sel = mods.find((m) => m.name === selected);
  const maxAngle = mods.length ? Math.max(...mods.map((m) => m.summary.maxAngleDeg)) : NaN;
  const rerun = h('button', { id: 'dora-rerun', class: 'secondary', type: 'button', title: 'Analyse again (after the adapter or the base changed)' }, 'Re-run');
  rerun.addEventListener('click', () => void channel.request({ type: 'rerun' }).catch(() => undefined));
  const change = h('button', { id: 'dora-change-base', class: 'secondary', type: 'button', title: 'Pick another base model folder or weights file and analyse again' }, 'Change base…');
  change.addEventListener('click', () => void channel.request({ type: 'changeBase' }).catch(() => undefined));
  if (v.running) { rerun.setAttribute('disabled', ''); change.setAttribute('disabled', ''); }
  const status = v.error ? badge('failed', 'warn') : v.running ? badge(`analysing ${mods.length} / ${v.total}`, '') : badge(`${mods.length} module${mods.length === 1 ? '' : 's'}`, 'ok');
  const header = h('header', { class: 'card header-card', id: 'dora-header', 'data-state': v.error ? 'error' : v.running ? 'running' : 'done', 'data-updated': v.updated ?? '' },
    h('div', { class: 'title-row' },
      h('div', { class: 'title' }, h('h1', {}, `DoRA: ${v.adapterName}`), badge('DoRA'), status),
      h('div', { class: 'actions' }, change, rerun)),
    h('div', { class: 'path', title: v.adapter }, v.adapter),
    h('dl', { class: 'facts' },
      fact('base', 'base', h('span', { title: v.base }, v.base.split(/[\\/]/).slice(-2).join('/'))),
      fact('modules', 'DoRA modules', `${mods.length}${v.running || v.error ? ` of ${v.total}` : ''}`),
      fact('max-angle-all', 'largest direction change', Number.isFinite(maxAngle) ? `${fmt(maxAngle, 4)}°` : '–'),
      fact('explain', 'reading', 'DoRA rescales each row of W₀ + s·B·A to the learned magnitude m: the true ΔW is not s·B·A.', 'wide')));
  const parts: (HTMLElement | undefined)[] = [header];
  if (v.error) {
    // A forceable refusal (the base does not fit every module) offers "Analyse anyway" (issue 8).
    const r = refusalOf(v.error);
    const anyway = r.forceable ? h('button', { id: 'dora-anyway', type: 'button', title: 'Analyse the modules that fit this base anyway' }, 'Analyse anyway') : undefined;
    anyway?.addEventListener('click', () => void channel.request({ type: 'rerun', force: true }).catch(() => undefined));
    parts.push(h('section', { class: 'card error-card', id: 'dora-error', role: 'alert' }, h('h2', {}, r.forceable ? 'Refused: this base does not fit the adapter' : 'The DoRA analysis failed'), h('p', { class: 'error-text' }, r.sentence), anyway));
  }
  if (v.running && mods.length < v.total) {
    parts.push(h('progress', { class: 'fleet-progress', id: 'dora-progress', max: Math.max(1, v.total), value: mods.length }));
  }
  if (v.warnings.length) parts.push(warningsCard('dora-warnings', 'Warnings', v.warnings));
  if (sel) {
    const pick = mods.length > 1 ? h('select', { id: 'dora-module-select', title: 'Module shown in the charts' }, ...mods.map((m) => {
      const o = h('option', { value: m.name }, short(m.name));
      if (m.name === sel.name) o.setAttribute('selected', '');
      return o;
    })) : undefined;
    pick?.addEventListener('change', () => { selected = (pick as HTMLSelectElement).value; render(); });
    parts.push(card('dora-module', short(sel.name), 'per output row i of this module', pick ? h('div', { class: 'toolbar' }, h('label', {}, 'Module ', pick)) : undefined, moduleFacts(sel),
      h('div', { class: 'dora-grid' },
        h('div', { class: 'dora-cell wide' }, h('h3', {}, 'Base norm, learned magnitude, merged norm'), normsChart(sel)),
        h('div', { class: 'dora-cell' }, h('h3', {}, 'Direction change per row'), angleHistogram(sel)),
        h('div', { class: 'dora-cell' }, h('h3', {}, 'Leading σ: true ΔW vs s·B·A'), sigmaChart(sel)))));
  }
  if (mods.length) {
    table.setRows(mods);
    parts.push(card('dora-table', 'All DoRA modules', 'click a row to chart it; click a header to sort', table.el));
  }
  app.replaceChildren(...parts.filter((p): p is HTMLElement => !!p));
}

onThemeChange(render);
channel.post({ type: 'ready' });
