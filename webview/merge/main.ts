/**
 * N-adapter merge webview (`loraLens.merge`): the preview of a TIES / DARE / magnitude merge
 * (per-module sign conflicts, energy kept against density; nothing written), "Update preview" at
 * another density, "Write merged adapter", then per-module errors and the verification badge.
 * Charts: tree-shaken chart.js; tables carry data-module / data-metric / data-value.
 */
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LineController, LineElement, PointElement, Tooltip } from 'chart.js';
import { onThemeChange, themeColors } from '../common/theme';
import { methodUsesDensity, type MergePreviewModuleView, type MergeModuleResultView, type MergeView } from '../../src/shared/merge';
import { act, badge, warningsCard, card, connect, fact, fmt, h, header, pct, short, SortTable } from '../peers/ui';

Chart.register(BarController, BarElement, LineController, LineElement, PointElement, CategoryScale, LinearScale, Legend, Tooltip);

let view: MergeView | undefined;
const charts: { destroy(): void }[] = [];
const app = document.getElementById('app')!;
const channel = connect((m) => {
  if ((m.type === 'init' || m.type === 'update') && m.view.kind === 'merge') { view = m.view; render(); }
});

function chartBox(id: string, points: number): { box: HTMLElement; canvas: HTMLCanvasElement } {
  const canvas = h('canvas', { id: `${id}-canvas`, role: 'img' });
  return { box: h('div', { class: 'chart-box', 'data-points': points }, canvas), canvas };
}

function drawCharts(curveCanvas: HTMLCanvasElement, barCanvas: HTMLCanvasElement, mods: MergePreviewModuleView[], density?: number): void {
  for (const c of charts.splice(0)) c.destroy();
  const c = themeColors();
  const ds = mods[0]?.energyCurve.map((p) => p.density) ?? [];
  const mean = ds.map((_, k) => mods.reduce((s, m) => s + m.energyCurve[k].retained, 0) / Math.max(1, mods.length));
  const minE = ds.map((_, k) => Math.min(...mods.map((m) => m.energyCurve[k].retained)));
  const axis = { ticks: { color: c.muted }, grid: { color: c.grid } };
  charts.push(new Chart(curveCanvas, {
    type: 'line',
    data: {
      labels: ds.map((d) => String(d)),
      datasets: [
        { label: 'mean over modules', data: mean, borderColor: c.series[0], backgroundColor: c.series[0], pointRadius: ds.map((d) => (d === density ? 6 : 2)) },
        { label: 'worst module', data: minE, borderColor: c.series[1], backgroundColor: c.series[1], borderDash: [4, 3], pointRadius: 2 },
      ],
    },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: 'bottom', labels: { color: c.fg, boxWidth: 12 } }, tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${pct(ctx.parsed.y)}` } } },
      scales: { x: { ...axis, title: { display: true, text: 'density (fraction of entries kept)', color: c.muted } }, y: { ...axis, min: 0, max: 1, title: { display: true, text: 'energy kept', color: c.muted } } },
    },
  }));
  charts.push(new Chart(barCanvas, {
    type: 'bar',
    data: { labels: mods.map((m) => short(m.name)), datasets: [{ label: 'sign conflict', data: mods.map((m) => m.signConflict), backgroundColor: c.series[4] }, { label: 'energy kept', data: mods.map((m) => m.retainedEnergy), backgroundColor: c.series[0] }] },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { position: 'bottom', labels: { color: c.fg, boxWidth: 12 } }, tooltip: { callbacks: { title: (it) => mods[it[0].dataIndex].name, label: (ctx) => `${ctx.dataset.label}: ${pct(ctx.parsed.y)}` } } },
      scales: { x: { ticks: { color: c.muted, autoSkip: true, maxRotation: 60, minRotation: 30, font: { size: 10 } }, grid: { display: false } }, y: { ...axis, min: 0, max: 1 } },
    },
  }));
}

function render(): void {
  if (!view) return;
  const v = view, p = v.preview, r = v.result;
  const uses = methodUsesDensity(p.method);
  const busy = v.running !== undefined;
  const dens = h('input', { type: 'number', id: 'merge-density', min: 0.01, max: 1, step: 0.05, value: String(p.density ?? v.params.density ?? 0.5), disabled: !uses || busy, 'aria-label': 'Density' });
  const upd = h('button', { id: 'merge-preview', class: 'secondary', type: 'button', disabled: !uses || busy, title: 'Recompute the preview at this density' }, v.running === 'preview' ? 'Computing…' : 'Update preview');
  upd.addEventListener('click', () => void act(channel, { type: 'preview', density: Number(dens.value) }, 'Computing the preview…'));
  const write = h('button', { id: 'merge-write', class: 'primary', type: 'button', disabled: busy, title: 'Write the merged adapter into a NEW folder and verify it' }, v.running === 'write' ? 'Writing…' : r ? 'Write again…' : 'Write merged adapter…');
  write.addEventListener('click', () => void act(channel, { type: 'write' }, 'Writing…'));
  const actions: HTMLElement[] = [write];
  if (r) {
    const an = h('button', { id: 'merge-analyze', class: 'secondary', type: 'button', title: 'Open the analysis report of the merged adapter' }, 'Analyze');
    an.addEventListener('click', () => void act(channel, { type: 'analyze', path: r.outDir }));
    actions.unshift(an);
  }
  const badges = [badge(p.method, 'accent')];
  if (r) badges.push(badge(r.verification.passed ? '✓ verified' : '✗ verification failed', r.verification.passed ? 'ok' : 'error'));
  const meanConflict = p.modules.reduce((s, m) => s + m.signConflict, 0) / Math.max(1, p.modules.length);
  const meanKept = p.modules.reduce((s, m) => s + m.retainedEnergy, 0) / Math.max(1, p.modules.length);
  const parts: HTMLElement[] = [header(channel, {
    id: 'merge-header', title: `Combine ${v.names.length} adapters`, badges, path: v.names.map((n, i) => `${v.params.weights[i]} × ${n}`).join('  +  '), actions,
    facts: [fact('method', 'Method', p.method), fact('density', 'Density', p.density === undefined ? '—' : String(p.density)), fact('modules', 'Modules', String(p.modules.length)),
      fact('conflict', 'Mean sign conflict', pct(meanConflict)), fact('kept', 'Mean energy kept', pct(meanKept)), ...(r ? [fact('out', 'Written', r.outDir, 'wide')] : [])],
  })];
  const warn = [...p.warnings, ...(r?.warnings ?? [])];
  if (warn.length) parts.push(warningsCard('merge-warnings', 'Warnings', [...new Set(warn)]));
  if (r) {
    const t = new SortTable<MergeModuleResultView>('merge-result-table', [
      { key: 'name', label: 'module', title: 'Module', value: (m) => m.name, num: false },
      { key: 'rank', label: 'rank', title: 'Rank of the written module', value: (m) => m.rank },
      { key: 'relErrToLinear', label: 'vs linear sum', title: '‖ΔW_out − Σ wᵢsᵢΔWᵢ‖_F / ‖Σ wᵢsᵢΔWᵢ‖_F (0 for cat; what TIES/DARE change on purpose)', value: (m) => m.relErrToLinear },
      { key: 'relErrToMerged', label: 'truncation', title: 'svd / *_svd: ‖ΔW_out − D_merged‖_F / ‖D_merged‖_F', value: (m) => m.relErrToMerged ?? null },
      { key: 'maxAbsError', label: 'max abs error', title: 'max |written s·B·A − fp64 reference| (the verification)', value: (m) => m.maxAbsError },
    ], (m) => ({ 'data-module': m.name }));
    t.setRows(r.perModule);
    parts.push(card('merge-result', `Written: ${r.outDir.split(/[\\/]/).pop()}`, `verification: max abs error ${fmt(r.verification.maxAbsError)}, max rel error ${fmt(r.verification.maxRelError)} over ${r.verification.modules} modules · ${(r.ms / 1000).toFixed(1)} s`, t.el));
  }
  const ctrl = h('div', { class: 'toolbar' }, h('label', { for: 'merge-density', class: 'check' }, 'density'), dens, upd,
    h('span', { class: 'hint' }, uses ? 'energy kept = Σ kept entries² / Σ entries² of each task tensor at this density' : `${p.method} keeps every entry (no density)`));
  const curve = chartBox('energy-curve', p.modules[0]?.energyCurve.length ?? 0);
  const bars = chartBox('conflict-bars', p.modules.length);
  parts.push(h('div', { class: 'charts' },
    card('energy-card', 'Energy kept vs density', 'magnitude pruning of the task tensors; the large dot = the chosen density', ctrl, curve.box),
    card('conflict-card', 'Sign conflicts per module', 'fraction of overlapping entries whose signs disagree between adapters', bars.box)));
  const pt = new SortTable<MergePreviewModuleView>('merge-preview-table', [
    { key: 'name', label: 'module', title: 'Module', value: (m) => m.name, num: false },
    { key: 'level', label: 'level', title: 'Task tensors: the A and B stacks (factor level) or ΔW', value: (m) => m.level, num: false },
    { key: 'overlap', label: 'overlap', title: 'fraction of entries non-zero in ≥ 2 adapters after pruning', value: (m) => m.overlap, text: (m) => pct(m.overlap) },
    { key: 'signConflict', label: 'sign conflict', title: 'fraction of overlapping entries with disagreeing signs', value: (m) => m.signConflict, text: (m) => pct(m.signConflict) },
    { key: 'retainedEnergy', label: 'energy kept', title: 'mean over adapters of the energy kept at the density', value: (m) => m.retainedEnergy, text: (m) => pct(m.retainedEnergy) },
    { key: 'perAdapter', label: 'per adapter', title: 'energy kept per adapter', value: (m) => Math.min(...m.retainedPerAdapter), text: (m) => m.retainedPerAdapter.map(pct).join(' · '), num: false },
  ], (m) => ({ 'data-module': m.name }));
  pt.setRows(p.modules);
  parts.push(card('merge-preview-card', 'Preview per module', `nothing written yet${r ? ' (the written result is above)' : ''} · ${(p.ms / 1000).toFixed(1)} s`, pt.el));
  app.replaceChildren(...parts);
  requestAnimationFrame(() => drawCharts(curve.canvas, bars.canvas, p.modules, p.density));
}

onThemeChange(render);
channel.post({ type: 'ready' });
