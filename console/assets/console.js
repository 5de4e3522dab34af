// The console's client side: draws the live pipeline graph, the uPlot charts from each page's embedded
// JSON, and sends review actions. Plain browser JavaScript, no build step; uPlot is the global `uPlot`.
// What it drew is kept on `window.__gs` (charts, bands, the last pipeline status) for tests and debugging.

(() => {
  const gs = { charts: {}, bands: [], pipeline: null, errors: [] };
  window.__gs = gs;
  const body = document.body;
  const base = body.dataset.base;
  const page = body.dataset.page;

  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const svgEl = (tag, attrs, text) => {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [k, v] of Object.entries(attrs ?? {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const data = (id) => {
    const node = document.getElementById(id);
    return node === null ? null : JSON.parse(node.textContent);
  };
  const fmt = (n, digits = 0) =>
    n === null || n === undefined || !Number.isFinite(n)
      ? '–'
      : n.toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
  const width = (node) => Math.max(320, node.clientWidth || 900);

  // ---------------------------------------------------------------- Pipeline
  let previous = null;

  const layers = (topology) => {
    const incoming = new Map(topology.nodes.map((n) => [n.name, []]));
    for (const e of topology.edges) incoming.get(e.to)?.push(e.from);
    const depth = new Map();
    const depthOf = (name, seen) => {
      if (depth.has(name)) return depth.get(name);
      if (seen.has(name)) return 0;
      seen.add(name);
      const parents = incoming.get(name) ?? [];
      const d = parents.length === 0 ? 0 : 1 + Math.max(...parents.map((p) => depthOf(p, seen)));
      depth.set(name, d);
      return d;
    };
    for (const n of topology.nodes) depthOf(n.name, new Set());
    // Sinks share one last layer, so the stages read as a chain and the stores as a column at its end.
    const last = Math.max(
      0,
      ...topology.nodes.filter((n) => n.kind !== 'sink').map((n) => depth.get(n.name)),
    );
    for (const n of topology.nodes) if (n.kind === 'sink') depth.set(n.name, last + 1);
    return depth;
  };

  const drawGraph = (status, rates) => {
    const host = document.getElementById('graph');
    const topology = status.topology;
    if (host === null || topology === null || topology === undefined) return;
    const depth = layers(topology);
    const columns = [];
    for (const n of topology.nodes) {
      const d = depth.get(n.name) ?? 0;
      columns[d] = columns[d] ?? [];
      columns[d].push(n);
    }
    const boxW = 190;
    const boxH = 54;
    const gapX = 60;
    const gapY = 18;
    // The layers wrap into bands as wide as the page, read left to right, band after band.
    const perBand = Math.max(2, Math.floor((width(host) - 20) / (boxW + gapX)));
    const bands = [];
    columns.forEach((col, d) => {
      const band = Math.floor(d / perBand);
      bands[band] = Math.max(bands[band] ?? 0, col.length);
    });
    const bandTop = [];
    let top = 10;
    for (let b = 0; b < bands.length; b++) {
      bandTop[b] = top;
      top += bands[b] * (boxH + gapY) + 36;
    }
    const w = Math.min(columns.length, perBand) * (boxW + gapX) + 20;
    const h = top;
    const pos = new Map();
    columns.forEach((col, d) => {
      const band = Math.floor(d / perBand);
      const offset = ((bands[band] - col.length) * (boxH + gapY)) / 2;
      col.forEach((n, y) => {
        pos.set(n.name, {
          x: 10 + (d % perBand) * (boxW + gapX),
          y: bandTop[band] + offset + y * (boxH + gapY),
        });
      });
    });
    const svg = svgEl('svg', {
      width: w,
      height: h,
      viewBox: `0 0 ${w} ${h}`,
      role: 'img',
      'aria-label': `graph ${topology.name}`,
    });
    const defs = svgEl('defs');
    const marker = svgEl('marker', {
      id: 'arrow',
      viewBox: '0 0 10 10',
      refX: 10,
      refY: 5,
      markerWidth: 6,
      markerHeight: 6,
      orient: 'auto',
    });
    marker.appendChild(svgEl('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#64748b' }));
    defs.appendChild(marker);
    svg.appendChild(defs);
    for (const e of topology.edges) {
      const a = pos.get(e.from);
      const b = pos.get(e.to);
      if (a === undefined || b === undefined) continue;
      const forward = b.x > a.x;
      const x1 = forward ? a.x + boxW : a.x + boxW / 2;
      const y1 = forward ? a.y + boxH / 2 : a.y + boxH;
      const x2 = forward ? b.x : b.x + boxW / 2;
      const y2 = forward ? b.y + boxH / 2 : b.y;
      const mid = (x1 + x2) / 2;
      const d = forward
        ? `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`
        : `M${x1},${y1} C${x1},${y1 + 60} ${x2},${y2 - 60} ${x2},${y2}`;
      const path = svgEl('path', {
        d,
        class: e.label === undefined ? 'edge' : 'edge tagged',
        'marker-end': 'url(#arrow)',
      });
      path.appendChild(
        svgEl(
          'title',
          {},
          e.label === undefined ? `${e.from} → ${e.to}` : `${e.from} → ${e.to} (${e.label})`,
        ),
      );
      svg.appendChild(path);
    }
    for (const n of topology.nodes) {
      const p = pos.get(n.name);
      const c = status.stages?.[n.name];
      const g = svgEl('g', {
        class: `node ${n.kind}`,
        'data-stage': n.name,
        transform: `translate(${p.x},${p.y})`,
      });
      g.appendChild(svgEl('rect', { width: boxW, height: boxH, rx: n.kind === 'stage' ? 6 : 18 }));
      g.appendChild(svgEl('text', { x: 8, y: 18, class: 'name' }, n.name));
      if (c !== undefined) {
        const tagged = Object.values(c.tagged ?? {}).reduce((s, v) => s + v, 0);
        g.appendChild(
          svgEl(
            'text',
            { x: 8, y: 34, class: 'figures' },
            `in ${fmt(c.in)} · out ${fmt(c.out)}${tagged > 0 ? ` · tagged ${fmt(tagged)}` : ''}`,
          ),
        );
        const r = rates.get(n.name);
        if (r !== undefined)
          g.appendChild(svgEl('text', { x: 8, y: 48, class: 'figures' }, `${fmt(r, 1)} in/s`));
      } else {
        g.appendChild(svgEl('text', { x: 8, y: 34, class: 'figures' }, n.kind));
      }
      svg.appendChild(g);
    }
    host.replaceChildren(svg);
  };

  const tile = (label, value, id) => {
    const t = el('div', { class: 'tile', id });
    t.append(el('span', {}, label), el('b', {}, value));
    return t;
  };

  const showPipeline = (status) => {
    gs.pipeline = status;
    const rates = new Map();
    let recordRate = null;
    if (
      previous !== null &&
      status.at !== undefined &&
      previous.at !== undefined &&
      status.at > previous.at
    ) {
      const dt = (status.at - previous.at) / 1000;
      for (const [name, c] of Object.entries(status.stages ?? {})) {
        const p = previous.stages?.[name];
        if (p !== undefined) rates.set(name, (c.in - p.in) / dt);
      }
      recordRate = (status.recordsIn - previous.recordsIn) / dt;
    }
    previous = status;
    const tiles = document.getElementById('pipeline-tiles');
    const live = status.at !== undefined;
    tiles.replaceChildren(
      tile(
        'worker',
        status.error !== undefined
          ? `unreachable: ${status.error}`
          : live
            ? status.ready
              ? 'ready'
              : 'not ready'
            : 'none given',
        'tile-worker',
      ),
      tile('records in', live ? fmt(status.recordsIn) : '–', 'tile-records'),
      tile('records/s', fmt(recordRate, 1), 'tile-rate'),
      tile('consumer lag', live ? fmt(status.consumerLag) : '–', 'tile-lag'),
      tile(
        'watermark delay',
        live && status.watermarkDelaySeconds !== null ? `${fmt(status.watermarkDelaySeconds, 1)} s` : '–',
        'tile-watermark',
      ),
      tile(
        'last checkpoint',
        live && status.checkpointAgeSeconds !== null ? `${fmt(status.checkpointAgeSeconds, 1)} s ago` : '–',
        'tile-checkpoint',
      ),
      tile(
        'write latency (mean)',
        live && status.sinkWriteMeanSeconds !== null
          ? `${fmt(status.sinkWriteMeanSeconds * 1000, 1)} ms`
          : '–',
        'tile-write',
      ),
      tile(
        'quarantined / dead-lettered',
        live ? `${fmt(status.quarantined)} / ${fmt(status.deadLettered)}` : '–',
        'tile-bad',
      ),
    );
    drawGraph(status, rates);
    const stages = document.getElementById('stages');
    const names = Object.keys(status.stages ?? {});
    if (names.length === 0) {
      stages.replaceChildren(
        el('p', { class: 'empty' }, 'No stage figures: no running worker (give --metrics-url).'),
      );
      return;
    }
    const table = el('table', { id: 'stage-table' });
    const head = el('tr');
    for (const h of ['stage', 'in', 'out', 'tagged', 'in/s', 'watermark']) head.appendChild(el('th', {}, h));
    table.appendChild(el('thead')).appendChild(head);
    const tbody = table.appendChild(el('tbody'));
    for (const name of names) {
      const c = status.stages[name];
      const tr = el('tr');
      const tagged = Object.entries(c.tagged ?? {})
        .map(([k, v]) => `${k} ${fmt(v)}`)
        .join(', ');
      for (const v of [
        name,
        fmt(c.in),
        fmt(c.out),
        tagged,
        fmt(rates.get(name), 1),
        c.watermark === null ? '' : new Date(c.watermark).toISOString(),
      ])
        tr.appendChild(el('td', {}, v));
      tbody.appendChild(tr);
    }
    stages.replaceChildren(table);
  };

  const pollPipeline = async () => {
    try {
      const response = await fetch(`${base}/api/pipeline`, { cache: 'no-store' });
      showPipeline(await response.json());
    } catch (error) {
      gs.errors.push(String(error));
    }
  };

  // ---------------------------------------------------------------- Charts
  const tiersChart = () => {
    const d = data('quality-data');
    const host = document.getElementById('tiers-chart');
    if (d === null || host === null) return;
    const t = d.tiers;
    gs.charts['tiers-chart'] = new uPlot(
      {
        width: width(host),
        height: 260,
        series: [
          {},
          { label: 'premium', stroke: '#15803d', width: 2 },
          { label: 'standard', stroke: '#ca8a04', width: 2 },
          { label: 'quarantine', stroke: '#dc2626', width: 2 },
        ],
        axes: [{}, { label: 'readings / hour' }],
      },
      [t.t, t.premium, t.standard, t.quarantine],
      host,
    );
  };

  const BAND = { interpolated: 'rgba(245, 158, 11, 0.30)', missing: 'rgba(220, 38, 38, 0.28)' };

  const meterChart = () => {
    const d = data('meter-data');
    const host = document.getElementById('meter-chart');
    if (d === null || host === null) return;
    const s = d.series;
    // Consecutive interpolated or missing intervals make one band, up to the next interval's start.
    const step =
      s.t.length > 1
        ? Math.min(
            ...s.t
              .slice(1)
              .map((t, i) => t - s.t[i])
              .filter((x) => x > 0),
          )
        : 900;
    const bands = [];
    for (let i = 0; i < s.t.length; i++) {
      const status = s.status[i];
      if (status !== 'interpolated' && status !== 'missing') continue;
      const end = s.t[i] + step;
      const last = bands[bands.length - 1];
      if (last !== undefined && last.status === status && last.to >= s.t[i]) last.to = end;
      else bands.push({ status, from: s.t[i], to: end });
    }
    gs.bands = bands;
    const shade = (u) => {
      const ctx = u.ctx;
      const { top, height } = u.bbox;
      ctx.save();
      for (const b of bands) {
        const x0 = u.valToPos(b.from, 'x', true);
        const x1 = u.valToPos(b.to, 'x', true);
        ctx.fillStyle = BAND[b.status];
        ctx.fillRect(x0, top, Math.max(1, x1 - x0), height);
      }
      for (const f of d.faults) {
        const x0 = u.valToPos(Math.max(f.from, d.from), 'x', true);
        const x1 = u.valToPos(Math.min(f.to, d.to), 'x', true);
        ctx.fillStyle = 'rgba(124, 58, 237, 0.85)';
        ctx.fillRect(x0, top, Math.max(2, x1 - x0), 8 * devicePixelRatio);
      }
      ctx.restore();
    };
    const marks = (u) => {
      const ctx = u.ctx;
      const { top, height } = u.bbox;
      ctx.save();
      ctx.strokeStyle = '#be123c';
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.setLineDash([4, 3]);
      for (const a of d.alerts) {
        const x = u.valToPos(a.t, 'x', true);
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
      }
      ctx.restore();
    };
    const interpolated = s.kw.map((v, i) => (s.status[i] === 'interpolated' ? v : null));
    const measured = s.kw.map((v, i) => (s.status[i] === 'measured' ? v : null));
    gs.charts['meter-chart'] = new uPlot(
      {
        width: width(host),
        height: 320,
        scales: { x: { time: true, min: d.from, max: d.to } },
        series: [
          {},
          { label: 'kW', stroke: '#2563eb', width: 1.5, spanGaps: false },
          { label: 'interpolated kW', stroke: '#d97706', width: 1.5, dash: [5, 3], spanGaps: false },
        ],
        axes: [{}, { label: 'kW' }],
        hooks: { drawClear: [shade], draw: [marks] },
      },
      [s.t, measured, interpolated],
      host,
    );
  };

  // ---------------------------------------------------------------- Review
  const reviewForms = () => {
    const who = document.getElementById('reviewer');
    const status = document.getElementById('review-status');
    if (who === null) return;
    who.value = localStorage.getItem('gs-reviewer') ?? '';
    who.addEventListener('change', () => localStorage.setItem('gs-reviewer', who.value));
    for (const form of document.querySelectorAll('form.act')) {
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        const action = event.submitter?.value ?? 'approve';
        const fields = Object.fromEntries(new FormData(form).entries());
        const payload = {
          action,
          reviewer: who.value,
          reason: fields.reason ?? '',
          value: action === 'approve' ? (fields.value ?? '') : '',
          score: fields.score ?? '',
          id: form.dataset.id ?? '',
          meter: form.dataset.meter ?? '',
          ts: form.dataset.ts ?? '',
          path: form.dataset.path ?? '',
        };
        if (payload.reviewer.trim() === '') {
          status.textContent = 'Give your name as reviewer first.';
          status.className = 'bad';
          who.focus();
          return;
        }
        const response = await fetch(`${base}/api/review`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(payload),
        });
        const answer = await response.json();
        status.textContent = answer.message ?? answer.error;
        status.className = response.ok ? 'ok' : 'bad';
        if (response.ok) {
          const done = el('span', { class: 'decided' }, `${action}: ${answer.message}`);
          form.replaceWith(done);
        }
      });
    }
  };

  const start = () => {
    if (page === 'pipeline') {
      pollPipeline();
      setInterval(pollPipeline, 2000);
    } else if (page === 'quality') tiersChart();
    else if (page === 'meter') meterChart();
    else if (page === 'review') reviewForms();
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
