/**
 * Extraction webview (`loraLens.extract`): per-module progress while the worker extracts, then
 * the result table (rank, relative error ‖D − s·B·A‖_F/‖D‖_F, Frobenius fraction kept,
 * optimality ‖D − s·B·A‖₂/σ̃_{k+1}) and a bar chart of the relative errors (tree-shaken chart.js).
 */
import { BarController, BarElement, CategoryScale, Chart, LinearScale, LogarithmicScale, Tooltip } from 'chart.js';
import { logTick } from '../common/format';
import { onThemeChange, themeColors } from '../common/theme';
import type { ExtractModuleView, ExtractView } from '../../src/shared/extract';
import { act, badge, warningsCard, card, connect, fact, fmt, h, header, pct, short, SortTable } from '../peers/ui';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LogarithmicScale, Tooltip);

let view: ExtractView | undefined;
let chart: { destroy(): void } | undefined;
const app = document.getElementById('app')!;
const channel = connect((m) => {
  if ((m.type === 'init' || m.type === 'update') && m.view.kind === 'extract') { view = m.view; render(); }
  else if (m.type === 'progress' && view && !view.result) {
    view.log.push(m.message);
    view.done = m.done;
    view.total = m.total;
    const ul = document.getElementById('extract-log');
    if (ul) { ul.append(h('li', {}, m.message)); ul.scrollTop = ul.scrollHeight; }
    const bar = document.getElementById('extract-progress') as HTMLProgressElement | null;
    if (bar) { bar.max = Math.max(1, m.total); bar.value = m.done; }
    const d = document.querySelector('[data-fact="done"] dd');
    if (d) d.textContent = `${m.done} / ${m.total}`;
  }
});

const rule = (v: ExtractView): string => (v.params.rule.kind === 'rank' ? `rank ${v.params.rule.k}` : `sv_fro ${v.params.rule.value}`);

function render(): void {
  if (!view) return;
  const v = view, r = v.result;
  const st = r ? badge('done', 'ok') : v.error ? badge('failed', 'error') : badge('running', 'accent');
  const actions: HTMLElement[] = [];
  if (r) {
    const an = h('button', { id: 'extract-analyze', class: 'primary', type: 'button', title: 'Open the analysis report of the extracted adapter' }, 'Analyze');
    an.addEventListener('click', () => void act(channel, { type: 'analyze', path: r.outDir }));
    actions.push(an);
  }
  const facts = [fact('rule', 'Rule', rule(v)), fact('done', 'Modules', r ? String(r.summary.modules) : `${v.done} / ${v.total || '?'}`),
    fact('base', 'Base', v.params.base, 'wide'), fact('tuned', 'Fine-tuned', v.params.tuned, 'wide')];
  if (r) facts.push(fact('meanErr', 'Mean rel. error', fmt(r.summary.meanRelError)), fact('maxErr', 'Max rel. error', fmt(r.summary.maxRelError)),
    fact('params', 'Parameters', r.summary.parameters.toLocaleString('en-US')), fact('time', 'Time', `${(r.ms / 1000).toFixed(1)} s`));
  const parts: HTMLElement[] = [header(channel, { id: 'extract-header', title: `Extract LoRA: ${v.params.outDir.split(/[\\/]/).pop()}`, badges: [st], path: v.params.outDir, actions, facts, exportable: !!r })];
  if (v.error) parts.push(h('section', { class: 'card warnings', id: 'extract-error' }, h('div', { class: 'warnings-title' }, 'Failed'), h('p', {}, v.error), h('p', { class: 'hint' }, 'Nothing was written.')));
  if (!r) {
    parts.push(card('extract-progress-card', 'Progress', 'one line per module as it is extracted (randomized SVD on onnxruntime, error-checked)',
      h('progress', { id: 'extract-progress', class: 'fleet-progress', max: Math.max(1, v.total), value: v.done }),
      h('ul', { id: 'extract-log', class: 'log' }, ...v.log.map((l) => h('li', {}, l)))));
    app.replaceChildren(...parts);
    return;
  }
  if (r.warnings.length) parts.push(warningsCard('extract-warnings', 'Warnings', r.warnings));
  const canvas = h('canvas', { id: 'extract-canvas', role: 'img', 'aria-label': 'relative error per module' });
  parts.push(card('extract-chart', 'Relative error per module', '‖D − s·B·A‖_F / ‖D‖_F with D = W_tuned − W0 (log scale)', h('div', { class: 'chart-box', 'data-points': r.modules.length }, canvas)));
  const t = new SortTable<ExtractModuleView>('extract-table', [
    { key: 'name', label: 'module', title: 'Module', value: (m) => m.name, num: false },
    { key: 'shape', label: 'shape', title: 'out × in', value: (m) => `${m.outFeatures}×${m.inFeatures}`, num: false },
    { key: 'rank', label: 'rank', title: 'rank of the extracted factors', value: (m) => m.rank },
    { key: 'relError', label: 'rel. error', title: '‖D − s·B·A‖_F / ‖D‖_F', value: (m) => m.relError },
    { key: 'froKept', label: '‖·‖_F kept', title: '√(Σ_{i≤k}σ̃ᵢ²)/‖D‖_F', value: (m) => m.froKept, text: (m) => pct(m.froKept) },
    { key: 'deltaFro', label: '‖D‖_F', title: 'Frobenius norm of W_tuned − W0', value: (m) => m.deltaFro },
    { key: 'optimality', label: 'optimality', title: '‖D − s·B·A‖₂ / σ̃_{k+1}: ≈ 1 for the best rank-k approximation (Eckart–Young)', value: (m) => m.optimality },
  ], (m) => ({ 'data-module': m.name }));
  t.setRows(r.modules);
  parts.push(card('extract-modules', 'Modules', `${r.unchanged} unchanged tensors, ${r.skipped.length} skipped`, t.el));
  app.replaceChildren(...parts);
  requestAnimationFrame(() => {
    chart?.destroy();
    const c = themeColors();
    chart = new Chart(canvas, {
      type: 'bar',
      data: { labels: r.modules.map((m) => short(m.name)), datasets: [{ label: 'relative error', data: r.modules.map((m) => Math.max(m.relError, 1e-12)), backgroundColor: c.series[0] }] },
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        plugins: { legend: { display: false }, tooltip: { callbacks: { title: (it) => r.modules[it[0].dataIndex].name, label: (ctx) => `rel. error ${fmt(ctx.parsed.y)}` } } },
        scales: { x: { ticks: { color: c.muted, autoSkip: true, maxRotation: 60, minRotation: 30, font: { size: 10 } }, grid: { display: false } }, y: { type: 'logarithmic', ticks: { color: c.muted, callback: (x) => logTick(Number(x)) }, grid: { color: c.grid } } },
      },
    });
  });
}

onThemeChange(render);
channel.post({ type: 'ready' });
