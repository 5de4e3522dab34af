/**
 * The console's pages as server-rendered HTML: tables are rendered here, charts and the live pipeline
 * graph are drawn by `assets/console.js` from the JSON each page embeds. Every value from the store is
 * HTML-escaped; embedded JSON has `<` escaped so no value can close its script element.
 */

import type { MeterData, QualityData } from './queries.js';
import type { DeadLetter, QuarantineItem } from './review.js';

export type PageName = 'pipeline' | 'quality' | 'meter' | 'review';

export interface PageContext {
  readonly base: string;
  readonly describe: string;
  readonly readOnly: boolean;
  /** Why reviews are off, shown on the Review page. */
  readonly readOnlyWhy?: string;
}

const ESCAPES: Readonly<Record<string, string>> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

export function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

function jsonScript(id: string, data: unknown): string {
  const text = JSON.stringify(data)
    .replace(/</g, '\\u003c')
    .replace(/\u2028|\u2029/g, (c) => (c === '\u2028' ? '\\u2028' : '\\u2029'));
  return `<script type="application/json" id="${id}">${text}</script>`;
}

function iso(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '';
  return new Date(seconds * 1000).toISOString().replace('.000Z', 'Z');
}

function table(headers: readonly string[], rows: readonly (readonly string[])[], empty: string): string {
  if (rows.length === 0) return `<p class="empty">${escapeHtml(empty)}</p>`;
  return `<table><thead><tr>${headers.map((h) => `<th>${escapeHtml(h)}</th>`).join('')}</tr></thead><tbody>${rows
    .map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join('')}</tr>`)
    .join('')}</tbody></table>`;
}

export function layout(ctx: PageContext, page: PageName | 'error', title: string, body: string): string {
  const link = (name: PageName, label: string) =>
    `<a href="${ctx.base}/${name}"${name === page ? ' class="active" aria-current="page"' : ''}>${label}</a>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · GreenStream console</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${ctx.base}/assets/uPlot.min.css">
<link rel="stylesheet" href="${ctx.base}/assets/console.css">
<script src="${ctx.base}/assets/uPlot.iife.min.js" defer></script>
<script src="${ctx.base}/assets/console.js" defer></script>
</head><body data-page="${page}" data-base="${ctx.base}" data-read-only="${ctx.readOnly ? '1' : '0'}">
<header><strong>GreenStream</strong><nav>${link('pipeline', 'Pipeline')}${link('quality', 'Quality')}${link('meter', 'Meter')}${link('review', 'Review')}</nav></header>
<main><h1>${escapeHtml(title)}</h1>${body}</main>
<footer>${escapeHtml(ctx.describe)}${ctx.readOnly ? ' · read-only' : ''}</footer>
</body></html>`;
}

export function emptyStorePage(ctx: PageContext, page: PageName, title: string): string {
  return layout(
    ctx,
    page,
    title,
    '<p class="notice" id="empty-store">The store is empty: no readings and no quarantined records yet. Run the pipeline into it (e.g. <code>npm start</code>, then start the console on <code>chdb:./data/demo/chdb</code>).</p>',
  );
}

export function pipelinePage(ctx: PageContext, source: string): string {
  return layout(
    ctx,
    'pipeline',
    'Pipeline',
    `<p class="muted" id="pipeline-source">${escapeHtml(source)}</p>
<section class="tiles" id="pipeline-tiles"></section>
<section><h2>Operator graph</h2><div id="graph" class="graph"></div></section>
<section><h2>Stages</h2><div id="stages"></div></section>`,
  );
}

export function qualityPage(ctx: PageContext, data: QualityData): string {
  const kinds = [...new Set(data.faults.map((f) => f.fault_type))];
  const regions = [...new Set(data.faults.map((f) => f.region))];
  const cell = (k: string, r: string) =>
    data.faults.find((f) => f.fault_type === k && f.region === r)?.faults ?? 0;
  const maxReason = Math.max(1, ...data.reasons.map((r) => r.records));
  return layout(
    ctx,
    'quality',
    'Quality',
    `<section><h2>Readings by tier per hour</h2><div class="chart" id="tiers-chart"></div></section>
<div class="columns">
<section><h2>Faults by kind × region</h2>${table(
      ['kind', ...regions],
      kinds.map((k) => [escapeHtml(k), ...regions.map((r) => String(cell(k, r)))]),
      'No faults detected.',
    )}</section>
<section><h2>Open alerts by severity</h2>${table(
      ['severity', 'kind', 'alerts', 'latest'],
      data.alerts.map((a) => [
        `<span class="sev sev-${escapeHtml(a.severity)}">${escapeHtml(a.severity)}</span>`,
        escapeHtml(a.kind),
        String(a.alerts),
        escapeHtml(iso(a.latest)),
      ]),
      'No alerts.',
    )}</section>
</div>
<div class="columns">
<section><h2>Quarantine reasons</h2>${table(
      ['reason', 'records', ''],
      data.reasons.map((r) => [
        `<a href="${ctx.base}/review?reason=${encodeURIComponent(r.reason)}">${escapeHtml(r.reason)}</a>`,
        String(r.records),
        `<span class="bar" style="width:${Math.round((r.records / maxReason) * 160)}px"></span>`,
      ]),
      'Nothing quarantined.',
    )}</section>
<section><h2>Daily balance: in = stored + quarantined + dead-lettered</h2>${table(
      ['day (processed)', 'in', 'stored', 'quarantined', 'dead-lettered', 'balance'],
      data.balance.map((b) => {
        const ok = b.records_in === b.stored + b.quarantined + b.dead_lettered;
        return [
          escapeHtml(b.day),
          String(b.records_in),
          String(b.stored),
          String(b.quarantined),
          String(b.dead_lettered),
          ok
            ? '<span class="ok">✓</span>'
            : `<span class="bad">✗ ${b.records_in - b.stored - b.quarantined - b.dead_lettered}</span>`,
        ];
      }),
      'No batches logged.',
    )}</section>
</div>
${jsonScript('quality-data', { tiers: data.tiers })}`,
  );
}

export function meterForm(ctx: PageContext, meter: string, from?: number, to?: number): string {
  const day = (s: number | undefined) =>
    s === undefined ? '' : new Date(s * 1000).toISOString().slice(0, 16);
  return `<form class="filters" method="get" action="${ctx.base}/meter">
<label>meter <input name="id" value="${escapeHtml(meter)}" required></label>
<label>from (UTC) <input type="datetime-local" name="from" value="${day(from)}"></label>
<label>to (UTC) <input type="datetime-local" name="to" value="${day(to)}"></label>
<button type="submit">Show</button></form>`;
}

export function meterPage(ctx: PageContext, id: string, data: MeterData): string {
  const m = data.meter;
  const registry =
    m === undefined
      ? '<p class="notice">Not in the registry (readings only).</p>'
      : table(
          ['region', 'neighborhood', 'type', 'vacant', 'max kW'],
          [
            [
              escapeHtml(m.region),
              escapeHtml(m.neighborhood),
              escapeHtml(m.meter_type),
              Number(m.vacant) === 1 ? 'yes' : 'no',
              m.max_kw === null ? 'profile default' : escapeHtml(m.max_kw),
            ],
          ],
          '',
        );
  const counts = { measured: 0, interpolated: 0, missing: 0 } as Record<string, number>;
  for (const s of data.series.status) counts[s] = (counts[s] ?? 0) + 1;
  return layout(
    ctx,
    'meter',
    `Meter ${id}`,
    `${meterForm(ctx, id, data.from, data.to)}
<div class="tiles">
<div class="tile"><span>quality score (mean)</span><b id="meter-score">${data.score.avg ?? '–'}</b></div>
<div class="tile"><span>premium / standard / quarantine</span><b>${data.score.premium} / ${data.score.standard} / ${data.score.quarantine}</b></div>
<div class="tile"><span>measured / interpolated / missing</span><b id="meter-status">${counts.measured ?? 0} / ${counts.interpolated ?? 0} / ${counts.missing ?? 0}</b></div>
<div class="tile"><span>quarantined records</span><b><a href="${ctx.base}/review?meter=${encodeURIComponent(id)}&amp;decision=all">${data.quarantined}</a></b></div>
</div>
<section><h2>Readings ${escapeHtml(iso(data.from))} – ${escapeHtml(iso(data.to))}</h2>
<p class="legend"><span class="swatch interpolated"></span>interpolated <span class="swatch missing"></span>missing <span class="swatch fault"></span>fault window <span class="swatch alert"></span>alert</p>
${data.series.t.length === 0 ? '<p class="notice" id="no-readings">No readings of this meter in this range.</p>' : '<div class="chart" id="meter-chart"></div>'}</section>
<div class="columns">
<section><h2>Registry entry</h2>${registry}</section>
<section><h2>Fault windows</h2>${table(
      ['kind', 'from', 'to', 'evidence'],
      data.faults.map((f) => [
        escapeHtml(f.fault_type),
        escapeHtml(iso(f.from)),
        escapeHtml(iso(f.to)),
        `<code>${escapeHtml(f.evidence)}</code>`,
      ]),
      'No fault in this range.',
    )}</section>
</div>
<div class="columns">
<section><h2>Alerts</h2>${table(
      ['time', 'severity', 'kind', 'message'],
      data.alerts.map((a) => [
        escapeHtml(iso(a.t)),
        `<span class="sev sev-${escapeHtml(a.severity)}">${escapeHtml(a.severity)}</span>`,
        escapeHtml(a.kind),
        escapeHtml(a.message),
      ]),
      'No alert in this range.',
    )}</section>
<section><h2>Reviews</h2>${table(
      ['when', 'action', 'by', 'reason'],
      data.reviews.map((r) => [
        escapeHtml(iso(r.at)),
        escapeHtml(r.action),
        escapeHtml(r.reviewer),
        escapeHtml(r.reason),
      ]),
      'No review of this meter.',
    )}</section>
</div>
${jsonScript('meter-data', { series: data.series, faults: data.faults, alerts: data.alerts, from: data.from, to: data.to })}`,
  );
}

export interface ReviewPageData {
  readonly filter: { meter: string; reason: string; decision: string };
  readonly quarantine: readonly QuarantineItem[];
  readonly lowScores: readonly { meter_id: string; t: number; kw: number; score: number; flags: string[] }[];
  readonly deadLetters: readonly DeadLetter[] | undefined;
  readonly recent: readonly {
    target: string;
    target_id: string;
    action: string;
    reviewer: string;
    at: number;
    reason: string;
  }[];
}

export function reviewPage(ctx: PageContext, data: ReviewPageData): string {
  const disabled = ctx.readOnly ? ' disabled' : '';
  const f = data.filter;
  const option = (v: string, label: string) =>
    `<option value="${v}"${f.decision === v ? ' selected' : ''}>${label}</option>`;
  const quarantineRows = data.quarantine.map((q) => [
    `<code>${escapeHtml(q.id)}</code>`,
    `<a href="${ctx.base}/meter?id=${encodeURIComponent(q.meter_id)}">${escapeHtml(q.meter_id)}</a>`,
    escapeHtml(q.ts === null ? '' : iso(q.ts / 1000)),
    escapeHtml(q.reasons.join(', ')),
    `<code class="raw">${escapeHtml(q.raw)}</code>`,
    escapeHtml(iso(q.quarantined_at / 1000)),
    q.decision === ''
      ? `<form class="act" data-action="quarantine" data-id="${escapeHtml(q.id)}">
<input name="value" placeholder="corrected kW" size="8" inputmode="decimal"${disabled}>
<input name="reason" placeholder="reason" required${disabled}>
<button name="do" value="approve"${disabled}>Approve</button><button name="do" value="reject"${disabled}>Reject</button></form>`
      : `<span class="decided">${q.decision === 'approve' ? 'approved' : 'rejected'} by ${escapeHtml(q.decided_by)}</span>`,
  ]);
  const lowRows = data.lowScores.map((r) => [
    `<a href="${ctx.base}/meter?id=${encodeURIComponent(r.meter_id)}">${escapeHtml(r.meter_id)}</a>`,
    escapeHtml(iso(r.t)),
    String(r.kw),
    String(r.score),
    escapeHtml(r.flags.join(', ')),
    `<form class="act" data-action="override" data-meter="${escapeHtml(r.meter_id)}" data-ts="${r.t}">
<input name="score" type="number" min="0" max="100" placeholder="score" required${disabled}>
<input name="reason" placeholder="reason" required${disabled}>
<button name="do" value="override"${disabled}>Override</button></form>`,
  ]);
  const deadRows = (data.deadLetters ?? []).map((d) => [
    `<code>${escapeHtml(d.path)}</code>`,
    escapeHtml(d.reason),
    String(d.bytes),
    escapeHtml(new Date(d.since).toISOString()),
    `<form class="act" data-action="redrive" data-path="${escapeHtml(d.path)}">
<input name="reason" placeholder="reason" required${disabled}>
<button name="do" value="redrive"${disabled}>Redrive</button></form>`,
  ]);
  return layout(
    ctx,
    'review',
    'Review',
    `${ctx.readOnly ? `<p class="notice">Read-only: ${escapeHtml(ctx.readOnlyWhy ?? 'reviews are not enabled here')}.</p>` : ''}
<p><label>reviewer <input id="reviewer" placeholder="your name"${disabled}></label> <span id="review-status" role="status"></span></p>
<section><h2>Quarantined records</h2>
<form class="filters" method="get" action="${ctx.base}/review">
<label>meter <input name="meter" value="${escapeHtml(f.meter)}"></label>
<label>reason <input name="reason" value="${escapeHtml(f.reason)}"></label>
<label>decision <select name="decision">${option('undecided', 'awaiting')}${option('decided', 'decided')}${option('all', 'all')}</select></label>
<button type="submit">Filter</button></form>
${table(['id', 'meter', 'time', 'reasons', 'raw', 'quarantined', 'decision'], quarantineRows, 'No quarantined record matches.')}</section>
<section><h2>Readings scored under 70</h2>${table(['meter', 'time', 'kW', 'score', 'flags', 'override'], lowRows, 'No stored reading scores under 70.')}</section>
<section><h2>Dead letters</h2>${
      data.deadLetters === undefined
        ? '<p class="empty">No dead-letter folder given (<code>--dead-letter &lt;dir&gt;</code>).</p>'
        : table(['file', 'reason', 'bytes', 'since', 'redrive'], deadRows, 'No dead letters.')
    }</section>
<section><h2>Recent decisions</h2>${table(
      ['when', 'target', 'id', 'action', 'by', 'reason'],
      data.recent.map((r) => [
        escapeHtml(iso(r.at)),
        escapeHtml(r.target),
        `<code>${escapeHtml(r.target_id)}</code>`,
        escapeHtml(r.action),
        escapeHtml(r.reviewer),
        escapeHtml(r.reason),
      ]),
      'No decision yet.',
    )}</section>`,
  );
}

export function messagePage(
  ctx: PageContext,
  page: PageName | 'error',
  title: string,
  message: string,
  extra = '',
): string {
  return layout(ctx, page, title, `${extra}<p class="notice" id="message">${escapeHtml(message)}</p>`);
}
