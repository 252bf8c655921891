/**
 * Surgery webview (`loraLens.surgery`): rebalance before/after (gap, κ(A), κ(B), Hessian κ, product
 * check), rank-reduction preview → written result, merge/combine/rescale summary. chart.js is
 * tree-shaken; charts expose `data-points` on their container; table cells carry
 * data-module / data-metric / data-value.
 */
import { BarController, BarElement, CategoryScale, Chart, Legend, LinearScale, LogarithmicScale, Tooltip } from 'chart.js';
import { h, HostChannel } from '../common/vscodeApi';
import { onThemeChange, themeColors } from '../common/theme';
import type { HostToWebview, PlanJobResult, RebalanceJobResult, ReduceJobResult, SimpleJobResult, SurgeryView, Verification, WebviewToHost } from '../../src/shared/surgery';
import { logTick } from '../common/format';

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LogarithmicScale, Legend, Tooltip);

let view: SurgeryView | undefined;
const charts: { destroy(): void }[] = [];
const channel = new HostChannel<WebviewToHost, HostToWebview>((m) => {
  switch (m.type) {
    case 'init':
    case 'update':
      view = m.view;
      render();
      break;
    case 'reply':
      break;
  }
});
window.addEventListener('error', (e) => channel.post({ type: 'log', level: 'error', message: `${e.message} @${e.filename}:${e.lineno}` }));
const app = document.getElementById('app')!;

const fmt = (x: number | undefined, d = 3): string => {
  if (x === undefined || Number.isNaN(x)) return '–';
  if (!Number.isFinite(x)) return '∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : Number(x.toPrecision(d + 1)).toString();
};
const pct = (x: number): string => `${(100 * x).toFixed(2)} %`;
const short = (name: string): string => name.replace(/^(base_model\.model\.)?(model\.)?/, '').replace(/self_attn\.|mlp\./, '');

function fact(id: string, label: string, value: string | Node, cls = ''): HTMLElement {
  return h('div', { class: `fact ${cls}`.trim(), 'data-fact': id }, h('dt', {}, label), h('dd', {}, value));
}

function status(): HTMLElement {
  return h('span', { class: 'export-status', id: 'action-status', role: 'status' });
}

function setStatus(text: string, error = false): void {
  const s = document.getElementById('action-status');
  if (!s) return;
  s.textContent = text;
  s.classList.toggle('error', error);
}

function actionButtons(p: string, isAdapter: boolean): HTMLElement[] {
  const reveal = h('button', { id: 'reveal-in-tree', class: 'secondary', type: 'button', title: 'Refresh the Checkpoints tree and show it' }, 'Reveal in tree');
  reveal.addEventListener('click', () => void channel.request({ type: 'revealInTree', path: p }).catch((e: Error) => setStatus(e.message, true)));
  const out = [reveal];
  if (isAdapter) {
    const an = h('button', { id: 'analyze-output', class: 'primary', type: 'button', title: 'Open the analysis report of the new adapter' }, 'Analyze');
    an.addEventListener('click', () => void channel.request({ type: 'analyze', path: p }).catch((e: Error) => setStatus(e.message, true)));
    out.push(an);
  }
  return out;
}

function chartCard(id: string, title: string, hint: string, points: number): { card: HTMLElement; canvas: HTMLCanvasElement } {
  const canvas = h('canvas', { id: `${id}-canvas`, role: 'img', 'aria-label': title });
  const card = h('div', { class: 'card chart-card', id },
    h('div', { class: 'card-head' }, h('h2', {}, title), h('span', { class: 'hint' }, hint)),
    h('div', { class: 'chart-box', 'data-points': points }, canvas));
  return { card, canvas };
}

function barChart(canvas: HTMLCanvasElement, labels: string[], sets: { label: string; data: (number | null)[] }[], log: boolean, yTitle: string): void {
  const c = themeColors();
  charts.push(new Chart(canvas, {
    type: 'bar',
    data: { labels, datasets: sets.map((s, i) => ({ label: s.label, data: s.data, backgroundColor: c.series[i], borderColor: c.series[i], borderWidth: 1 })) },
    options: {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: { position: 'bottom', labels: { color: c.fg, boxWidth: 12, font: { size: 11 } } },
        tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label}: ${fmt(ctx.parsed.y ?? undefined)}` } },
      },
      scales: {
        x: { ticks: { color: c.muted, autoSkip: true, maxRotation: 60, minRotation: 30, font: { size: 10 } }, grid: { display: false } },
        y: { type: log ? 'logarithmic' : 'linear', title: { display: true, text: yTitle, color: c.muted }, ticks: { color: c.muted, callback: (v) => (log ? logTick(Number(v)) : fmt(Number(v), 1)) }, grid: { color: c.grid } },
      },
    },
  }));
}


type Col<T> = { key: string; label: string; title: string; value: (r: T) => number | string; text?: (r: T) => string | Node; num?: boolean };

function table<T extends { name: string }>(id: string, rows: T[], cols: Col<T>[]): HTMLElement {
  const thead = h('thead', {}, h('tr', {}, ...cols.map((c) => h('th', { class: c.num === false ? '' : 'num', title: c.title, scope: 'col' }, c.label))));
  const tbody = h('tbody', {}, ...rows.map((r) => h('tr', { 'data-module': r.name },
    ...cols.map((c) => {
      const v = c.value(r);
      const txt = c.text ? c.text(r) : typeof v === 'number' ? fmt(v) : v;
      return h('td', { class: c.num === false ? 'name' : 'num', 'data-metric': c.key, 'data-value': String(v) }, txt);
    }))));
  return h('div', { class: 'table-wrap' }, h('table', { id, class: 'data' }, thead, tbody));
}

function verifiedBadge(ok: boolean): HTMLElement {
  return h('span', { class: `badge ${ok ? 'ok' : 'error'}` }, ok ? '✓ verified' : '✗ failed');
}

/** "✓ verified: max abs error …" of a write (every writing job's `verification`). */
function verificationLine(v: Verification | undefined): HTMLElement | undefined {
  if (!v) return undefined;
  return h('p', { class: 'verification', id: 'verification', 'data-max-abs-error': String(v.maxAbsError), title: v.what },
    h('strong', {}, '✓ verified: '), `max abs error ${fmt(v.maxAbsError)}`,
    ` (max rel ${fmt(v.maxRelError)}, tolerance ${fmt(v.tolerance)}, ${v.checked} ${v.checked === 1 ? 'item' : 'items'} checked) — ${v.what}`);
}

function warningList(ws: string[] | undefined): HTMLElement | undefined {
  return ws?.length ? h('div', { class: 'warnings', id: 'surgery-warnings' }, h('ul', {}, ...ws.map((w) => h('li', {}, w)))) : undefined;
}

function renderRebalance(r: RebalanceJobResult): HTMLElement[] {
  const ms = r.modules;
  const maxGapB = Math.max(...ms.map((m) => m.gapBefore)), maxGapA = Math.max(...ms.map((m) => m.gapAfter));
  const maxErr = Math.max(...ms.map((m) => m.maxRelErr));
  const allOk = ms.every((m) => m.verified);
  const header = h('header', { class: 'card header-card', id: 'surgery-header' },
    h('div', { class: 'title-row' },
      h('div', { class: 'title' }, h('h1', { id: 'surgery-title' }, `Rebalanced ${r.adapterName}`), h('span', { class: 'badge accent' }, 'BaLoRA projection'), verifiedBadge(allOk)),
      h('div', { class: 'actions' }, status(), ...actionButtons(r.outDir, true))),
    h('div', { class: 'path', title: r.outDir }, `${r.adapterPath} → ${r.outDir}`),
    h('dl', { class: 'facts' },
      fact('modules', 'modules', String(ms.length)),
      fact('gap-before', 'max balance gap before', fmt(maxGapB)),
      fact('gap-after', 'max balance gap after', fmt(maxGapA), maxGapA < 1e-6 ? 'good' : ''),
      fact('max-rel-err', "max |B'A' − BA| / max|BA|", `${fmt(maxErr)} (${r.dtype})`),
      fact('input', 'input', 'unchanged (sha256 checked)'),
      fact('time', 'time', `${(r.ms / 1000).toFixed(2)} s`)),
    verificationLine(r.verification),
    h('p', { class: 'hint explain' },
      'Balance gap ‖BᵀB − AAᵀ‖_F / (‖A‖²_F + ‖B‖²_F): 0 on the balanced manifold. Hessian κ: condition number of the factorised least-squares ',
      'problem ½‖s·B·A − M‖² at the current factors, κ_H = (σ₁(B)² + σ₁(A)²) / min(σ_r(B)², σ_r(A)²) (nonzero Hessian spectrum at BA = M); ',
      'balanced factors reach 2σ₁/σ_r of the product.'));
  const labels = ms.map((m) => short(m.name));
  const pos = (x: number) => (x > 0 && Number.isFinite(x) ? x : null);
  const gap = chartCard('gap-chart', 'Balance gap per module', 'before vs after, log scale', ms.length * 2);
  const hess = chartCard('hessian-chart', 'Hessian condition number per module', 'κ at the current factors, log scale', ms.length * 2);
  const charts = h('section', { class: 'charts' }, gap.card, hess.card);
  requestAnimationFrame(() => {
    barChart(gap.canvas, labels, [{ label: 'gap before', data: ms.map((m) => pos(m.gapBefore)) }, { label: 'gap after', data: ms.map((m) => pos(m.gapAfter)) }], true, 'relative gap');
    barChart(hess.canvas, labels, [{ label: 'κ_H before', data: ms.map((m) => pos(m.hessianKappaBefore)) }, { label: 'κ_H after', data: ms.map((m) => pos(m.hessianKappaAfter)) }], true, 'κ_H');
  });
  type R = RebalanceJobResult['modules'][number];
  const cols: Col<R>[] = [
    { key: 'name', label: 'Module', title: 'Module name', value: (m) => m.name, num: false },
    { key: 'rank', label: 'r', title: 'rank', value: (m) => m.rank },
    { key: 'gapBefore', label: 'gap before', title: 'relative balance gap before', value: (m) => m.gapBefore },
    { key: 'gapAfter', label: 'gap after', title: 'relative balance gap after (written factors)', value: (m) => m.gapAfter },
    { key: 'kappaA', label: 'κ(A)', title: 'κ(A) before → after', value: (m) => m.kappaAAfter, text: (m) => `${fmt(m.kappaABefore)} → ${fmt(m.kappaAAfter)}` },
    { key: 'kappaB', label: 'κ(B)', title: 'κ(B) before → after', value: (m) => m.kappaBAfter, text: (m) => `${fmt(m.kappaBBefore)} → ${fmt(m.kappaBAfter)}` },
    { key: 'scale', label: 'c', title: 'factor scale imbalance (‖B‖/‖A‖)^½ before → after', value: (m) => m.scaleAfter, text: (m) => `${fmt(m.scaleBefore)} → ${fmt(m.scaleAfter)}` },
    { key: 'hessianBefore', label: 'κ_H before', title: 'Hessian condition number κ_H = (σ₁(B)² + σ₁(A)²) / min(σ_r(B)², σ_r(A)²) at the input factors (∞: a factor is rank-deficient)', value: (m) => m.hessianKappaBefore },
    { key: 'hessianAfter', label: 'κ_H after', title: 'κ_H = (σ₁(B)² + σ₁(A)²) / min(σ_r(B)², σ_r(A)²) at the written (balanced) factors; 2σ₁/σ_r of BA when balanced', value: (m) => m.hessianKappaAfter },
    { key: 'maxRelErr', label: "max|B'A'−BA| rel", title: 'max |B\'A\' − BA| / max|BA| of the written factors', value: (m) => m.maxRelErr },
    { key: 'tolerance', label: 'tolerance', title: 'tolerance of the check (dtype rounding)', value: (m) => m.tolerance },
    { key: 'verified', label: '✓', title: 'product verified within tolerance', value: (m) => (m.verified ? 'yes' : 'no'), text: (m) => (m.verified ? '✓' : '✗'), num: false },
  ];
  const tbl = h('section', { class: 'card table-card' },
    h('div', { class: 'card-head' }, h('h2', {}, 'Per module'), h('span', { class: 'hint' }, `${ms.length} modules, verified by reopening the written adapter`)),
    table('rebalance-table', ms, cols));
  return [header, charts, tbl];
}

function planHeader(p: PlanJobResult, title: string, extra: Node[]): HTMLElement {
  return h('header', { class: 'card header-card', id: 'surgery-header' },
    h('div', { class: 'title-row' }, h('div', { class: 'title' }, h('h1', { id: 'surgery-title' }, title), h('span', { class: 'badge accent' }, p.ruleText)), h('div', { class: 'actions' }, status(), ...extra)),
    h('div', { class: 'path', title: p.adapterPath }, p.adapterPath),
    h('dl', { class: 'facts' },
      fact('modules', 'modules', String(p.modules.length)),
      fact('params', 'LoRA parameters', `${p.paramsBefore.toLocaleString()} → ${p.paramsAfter.toLocaleString()} (${pct(p.paramsBefore ? p.paramsAfter / p.paramsBefore : 1)})`),
      fact('fro-kept', 'mean ‖ΔW‖_F kept', pct(p.meanFroKept)),
      fact('ranks', 'new ranks', [...new Set(p.modules.map((m) => m.k))].sort((a, b) => a - b).join(', '))));
}

function planChart(p: PlanJobResult): HTMLElement {
  const c = chartCard('rank-chart', 'Rank per module', 'current r vs new k', p.modules.length * 2);
  const e = chartCard('energy-chart', 'Energy kept per module', 'Σ_{i≤k}σᵢ² / Σσᵢ²', p.modules.length);
  requestAnimationFrame(() => {
    const labels = p.modules.map((m) => short(m.name));
    barChart(c.canvas, labels, [{ label: 'r', data: p.modules.map((m) => m.r) }, { label: 'new k', data: p.modules.map((m) => m.k) }], false, 'rank');
    barChart(e.canvas, labels, [{ label: 'energy kept', data: p.modules.map((m) => m.energyKept) }], false, 'fraction of ‖ΔW‖²_F');
  });
  return h('section', { class: 'charts' }, c.card, e.card);
}

function renderPlan(p: PlanJobResult, running: boolean): HTMLElement[] {
  const btn = h('button', { id: 'write-reduced', class: 'primary', type: 'button', disabled: running, title: 'Write a NEW adapter with these ranks (balanced factors, scale kept via alpha)' }, running ? 'Writing…' : 'Write reduced adapter');
  btn.addEventListener('click', () => {
    btn.disabled = true;
    setStatus('Writing…');
    channel.request({ type: 'writeReduced' }).then(
      (r) => setStatus((r as { message?: string }).message ?? ''),
      (e: Error) => { setStatus(e.message, true); btn.disabled = false; },
    );
  });
  type R = PlanJobResult['modules'][number];
  const cols: Col<R>[] = [
    { key: 'name', label: 'Module', title: 'Module name', value: (m) => m.name, num: false },
    { key: 'r', label: 'r', title: 'current rank', value: (m) => m.r },
    { key: 'k', label: 'new k', title: 'new rank', value: (m) => m.k },
    { key: 'energyKept', label: 'energy kept', title: 'Σ_{i≤k}σ²/Σσ²', value: (m) => m.energyKept, text: (m) => pct(m.energyKept) },
    { key: 'froKept', label: 'fro kept', title: '√energy kept', value: (m) => m.froKept, text: (m) => pct(m.froKept) },
    { key: 'sumKept', label: 'sum(S) kept', title: 'Σ_{i≤k}σ/Σσ', value: (m) => m.sumKept, text: (m) => pct(m.sumKept) },
    { key: 'maxRatio', label: 'σ₁/σ_k', title: 'kohya max(S) ratio', value: (m) => m.maxRatio },
    { key: 'tailFro', label: '‖ΔW − ΔW_k‖_F', title: 'Frobenius norm of the dropped tail', value: (m) => m.tailFro },
  ];
  return [
    planHeader(p, `Reduce rank: ${p.adapterName} (preview)`, [btn]),
    planChart(p),
    h('section', { class: 'card table-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Plan'), h('span', { class: 'hint' }, 'from the analysis σ; nothing written yet')), table('plan-table', p.modules, cols)),
  ];
}

function renderReduce(p: PlanJobResult, r: ReduceJobResult): HTMLElement[] {
  type R = ReduceJobResult['modules'][number];
  const cols: Col<R>[] = [
    { key: 'name', label: 'Module', title: 'Module name', value: (m) => m.name, num: false },
    { key: 'r', label: 'r', title: 'old rank', value: (m) => m.r },
    { key: 'k', label: 'k', title: 'new rank', value: (m) => m.k },
    { key: 'froKept', label: 'fro kept', title: '√energy kept', value: (m) => m.froKept, text: (m) => pct(m.froKept) },
    { key: 'scale', label: 'scale', title: 'scale s kept via alpha', value: (m) => m.scale },
    { key: 'relErrVsTruncated', label: 'rel. err vs ΔW_k', title: '‖s·B\'A\' − ΔW_k‖_F / ‖ΔW_k‖_F of the written factors', value: (m) => m.relErrVsTruncated },
    { key: 'errVsOriginal', label: '‖ΔW′ − ΔW‖_F', title: 'equals the dropped tail up to rounding', value: (m) => m.errVsOriginal },
  ];
  const head = planHeader(p, `Reduced ${p.adapterName}`, actionButtons(r.outDir, true));
  head.querySelector('.title')?.append(verifiedBadge(true));
  head.append(h('div', { class: 'path', id: 'output-path', title: r.outDir }, `written: ${r.outDir} (${(r.ms / 1000).toFixed(2)} s)`));
  const v = verificationLine(r.verification);
  if (v) head.append(v);
  return [head, planChart(p), h('section', { class: 'card table-card' }, h('div', { class: 'card-head' }, h('h2', {}, 'Written adapter'), h('span', { class: 'hint' }, 'verified by reopening')), table('reduce-table', r.modules, cols))];
}

function renderSimple(r: SimpleJobResult): HTMLElement[] {
  const title = { merge: 'Merged into base', combine: 'Combined adapters', rescale: 'Rescaled adapter' }[r.operation];
  const header = h('header', { class: 'card header-card', id: 'surgery-header' },
    h('div', { class: 'title-row' }, h('div', { class: 'title' }, h('h1', { id: 'surgery-title' }, title), verifiedBadge(true)), h('div', { class: 'actions' }, status(), ...actionButtons(r.output, r.isAdapter))),
    h('div', { class: 'path', id: 'output-path', title: r.output }, r.output),
    h('p', { class: 'summary' }, r.summary, ` (${(r.ms / 1000).toFixed(2)} s)`),
    verificationLine(r.verification), warningList(r.warnings));
  const cols: Col<{ name: string; value: string }>[] = [
    { key: 'name', label: r.operation === 'merge' ? 'Tensor' : r.operation === 'rescale' ? 'Config key' : 'Module', title: '', value: (x) => x.name, num: false },
    { key: 'value', label: 'Result', title: '', value: (x) => x.value, num: false },
  ];
  return [header, h('section', { class: 'card table-card' }, table('result-table', r.rows, cols))];
}

function render(): void {
  while (charts.length) charts.pop()!.destroy();
  if (!view) return;
  let parts: HTMLElement[];
  switch (view.kind) {
    case 'rebalance': parts = renderRebalance(view.result); break;
    case 'plan': parts = renderPlan(view.plan, !!view.running); break;
    case 'reduce': parts = renderReduce(view.plan, view.result); break;
    case 'simple': parts = renderSimple(view.result); break;
  }
  app.replaceChildren(...parts);
  app.dataset.view = view.kind;
}

onThemeChange(render);
channel.post({ type: 'ready' });
