// The operator console's page: plain JavaScript, no framework, no build step.
// Every value from the API reaches the page through textContent or an
// attribute, never as HTML. Views are picked by location.hash:
// #requests, #request/<id>, #topics, #topics/<name>, #health, #replay.
(function () {
  'use strict';

  const TOKEN_KEY = 'storefront-console-token';
  const REPLAY_KEY = 'storefront-console-replay';
  const MAX_ROWS = 500;
  const RECONNECT_MS = 3000;
  const HEALTH_MS = 5000;
  const REPLAY_POLL_MS = 1000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers

  /** An element with attributes and children; text is always text. */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    appendAll(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) return;
    for (const [name, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (name === 'class') e.setAttribute('class', value);
      else if (name === 'text') e.textContent = String(value);
      else if (name === 'dataset') Object.assign(e.dataset, value);
      else if (name.startsWith('on') && typeof value === 'function') e.addEventListener(name.slice(2), value);
      else e.setAttribute(name, value === true ? '' : String(value));
    }
  }

  function appendAll(parent, children) {
    for (const child of children) {
      if (child == null || child === false) continue;
      if (Array.isArray(child)) appendAll(parent, child);
      else parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  /** An SVG element. */
  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value == null) continue;
        if (name === 'class') e.setAttribute('class', value);
        else e.setAttribute(name, String(value));
      }
    }
    if (text != null) e.textContent = String(text);
    return e;
  }

  function svgTitle(parent, text) {
    parent.append(svgEl('title', null, text));
    return parent;
  }

  function setText(id, text) {
    const e = $(id);
    if (e) e.textContent = text == null ? '' : String(text);
  }

  const none = () => el('span', { class: 'none', text: '—' });

  // --------------------------------------------------------------- formatting

  const pad = (n, width = 2) => String(n).padStart(width, '0');

  function isTime(ms) {
    return ms != null && ms !== '' && Number.isFinite(Number(ms));
  }

  /** Local time, ISO-like: 2026-12-01 10:00:00.123. */
  function fmtTime(ms) {
    if (!isTime(ms)) return '—';
    const d = new Date(Number(ms));
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  }

  function fmtClock(ms, withSeconds) {
    const d = new Date(Number(ms));
    return `${pad(d.getHours())}:${pad(d.getMinutes())}` + (withSeconds ? `:${pad(d.getSeconds())}` : '');
  }

  function fmtMs(ms) {
    if (ms == null || !Number.isFinite(Number(ms))) return '—';
    return `${Math.round(Number(ms)).toLocaleString('en-US')} ms`;
  }

  function fmtInt(n) {
    if (n == null || !Number.isFinite(Number(n))) return '—';
    return Number(n).toLocaleString('en-US');
  }

  function plural(n, one, many) {
    return `${fmtInt(n)} ${n === 1 ? one : (many || one + 's')}`;
  }

  /** The last characters of a long ID (a UUIDv7 begins with its time, alike for neighbours). */
  function shortId(id) {
    const s = String(id || '');
    return s.length > 10 ? '…' + s.slice(-8) : s;
  }

  const STATUS_CLASS = { complete: 'complete', partial: 'partial', rejected: 'rejected', timed_out: 'timed_out', unavailable: 'timed_out' };

  function statusBadge(status) {
    const s = status == null ? 'no page' : String(status);
    return el('span', { class: 'badge ' + (STATUS_CLASS[s] || ''), text: s.replace(/_/g, ' ') });
  }

  /** Only http(s) links are followed; anything else is shown as text. */
  function safeHref(url) {
    try {
      const u = new URL(String(url), location.href);
      return u.protocol === 'http:' || u.protocol === 'https:' ? u.href : null;
    } catch (_) {
      return null;
    }
  }

  // ---------------------------------------------------------------------- API

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  const getToken = () => sessionStorage.getItem(TOKEN_KEY) || '';

  async function errorOf(res) {
    let code = 'http_' + res.status;
    let message = `The console answered HTTP ${res.status}.`;
    try {
      const body = await res.json();
      if (body && body.error) {
        if (body.error.code) code = String(body.error.code);
        if (body.error.message) message = String(body.error.message);
      }
    } catch (_) { /* not JSON */ }
    return new ApiError(res.status, code, message);
  }

  /** Calls the API with the token; a 401 asks for the token again. */
  async function api(path, options = {}) {
    const headers = { Accept: 'application/json', Authorization: 'Bearer ' + getToken() };
    const init = { method: options.method || 'GET', headers, cache: 'no-store', signal: options.signal };
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (err) {
      if (err && err.name === 'AbortError') throw err;
      throw new ApiError(0, 'network', 'Could not reach the console: ' + (err && err.message ? err.message : err));
    }
    if (res.status === 401) {
      const err = await errorOf(res);
      unauthorized(err.message);
      throw err;
    }
    if (!res.ok) throw await errorOf(res);
    const text = await res.text();
    return text ? JSON.parse(text) : null;
  }

  /** Shows an API error in `id`, unless it was a 401 (the token form says it) or an abort. */
  function showError(id, err) {
    const box = $(id);
    if (!box) return;
    if (err && (err.status === 401 || err.name === 'AbortError')) return;
    box.textContent = err && err.message ? err.message : String(err);
    if (err && err.code) box.dataset.code = err.code;
  }

  function clearError(id) {
    const box = $(id);
    if (!box) return;
    box.textContent = '';
    delete box.dataset.code;
  }

  // -------------------------------------------------------------- token & app

  const app = { config: null, view: null };

  function showOnly(which) {
    $('status').hidden = which !== 'status';
    $('token-view').hidden = which !== 'token';
    $('app').hidden = which !== 'app';
  }

  function showTokenForm(message) {
    $('token-input').value = '';
    $('token-error').textContent = message || '';
    showOnly('token');
    document.title = 'Storefront console';
    $('token-input').focus();
  }

  /** A 401 from any call: forget the token and ask again, saying why. */
  function unauthorized(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    stopEverything();
    const reason = String(message || 'unauthorized');
    // The console's own message may already say so: "the token was refused: ...".
    showTokenForm(/^the token was refused/i.test(reason)
      ? reason.charAt(0).toUpperCase() + reason.slice(1)
      : 'The token was refused: ' + reason);
  }

  function stopEverything() {
    app.config = null;
    app.view = null;
    stopStream();
    stopHealth();
    stopReplayPolling();
    req.started = false;
  }

  async function connect() {
    showOnly('status');
    try {
      const config = await api('api/config');
      app.config = config || {};
    } catch (err) {
      if (err.status === 401) return; // the form is shown, with the reason
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenForm(err.message);
      return;
    }
    const ns = app.config.namespace;
    setText('namespace', ns ? ns : '(no prefix)');
    $('namespace').title = 'bootstrap servers: ' + (app.config.bootstrap_servers || '?');
    showOnly('app');
    if (app.config.replay_opens_logins === false) {
      setText('replay-note', 'This console has no user-svc key: a range that holds logins cannot be replayed.');
    }
    // The live stream runs while the console is open, whatever the view.
    enterRequests();
    route();
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) {
      $('token-error').textContent = 'Enter the operator token.';
      $('token-input').focus();
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token-error').textContent = '';
    connect();
  });

  $('token-forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    stopEverything();
    showTokenForm('');
  });

  // ------------------------------------------------------------------ routing

  const VIEWS = ['requests', 'timeline', 'topics', 'health', 'replay'];
  const TITLES = { requests: 'Requests', timeline: 'Request', topics: 'Topics', health: 'Health', replay: 'Replay' };

  /** The rest of the hash after `prefix`, decoded. */
  function hashArg(hash, prefix) {
    const raw = hash.slice(prefix.length);
    try {
      return decodeURIComponent(raw);
    } catch (_) {
      return raw;
    }
  }

  function route() {
    if (!app.config) return;
    const hash = location.hash.replace(/^#/, '');
    let view = null;
    let arg = null;
    if (hash.startsWith('request/')) {
      view = 'timeline';
      arg = hashArg(hash, 'request/');
    } else if (hash === 'topics' || hash.startsWith('topics/')) {
      view = 'topics';
      arg = hash.startsWith('topics/') ? hashArg(hash, 'topics/') || null : null;
    } else if (hash === 'requests' || hash === 'health' || hash === 'replay') {
      view = hash;
    } else {
      history.replaceState(null, '', '#requests');
      view = 'requests';
    }
    showView(view, arg);
  }

  function showView(view, arg) {
    const previous = app.view;
    app.view = view;
    for (const v of VIEWS) $('view-' + v).hidden = v !== view;
    for (const button of document.querySelectorAll('#topbar nav button')) {
      const current = button.dataset.view === view || (view === 'timeline' && button.dataset.view === 'requests');
      if (current) button.setAttribute('aria-current', 'page');
      else button.removeAttribute('aria-current');
    }
    document.title = `${TITLES[view]}${arg ? ' ' + (view === 'topics' ? arg : shortId(arg)) : ''} · Storefront console`;
    if (previous === 'health' && view !== 'health') stopHealth();
    if (view === 'requests') enterRequests();
    else if (view === 'timeline') loadTimeline(arg);
    else if (view === 'topics') enterTopics(arg, previous !== 'topics');
    else if (view === 'health') startHealth();
    else if (view === 'replay') enterReplay();
  }

  window.addEventListener('hashchange', route);
  for (const button of document.querySelectorAll('#topbar nav button')) {
    button.addEventListener('click', () => {
      const target = '#' + button.dataset.view;
      if (location.hash === target) route();
      else location.hash = target;
    });
  }

  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => {
      if (app.view === 'health' && health.stats) {
        drawRateChart($('chart-rate'), health.stats);
        drawLatencyChart($('chart-latency'), health.stats);
      }
      if (app.view === 'timeline' && tl.data && $('timeline-chart')) drawTimelineChart($('timeline-chart'), tl.data);
    }, 150);
  });

  // ------------------------------------------------------------ live requests

  const req = {
    started: false,
    rows: [],          // summaries shown, newest first
    ids: new Set(),
    query: '',
    loadSeq: 0,
    buffering: false,  // while the list loads, live events wait here
    buffered: [],
    pending: [],       // live events not drawn yet (drawn once per frame)
    frame: 0,
    streamGen: 0,
    controller: null,
    retryTimer: 0,
    missedTimer: 0,
  };

  function enterRequests() {
    if (!req.started) {
      req.started = true;
      applyFilters();
    }
  }

  function filterQuery() {
    const params = new URLSearchParams();
    const status = $('filter-status').value;
    if (status && status !== 'all') params.set('status', status);
    for (const [id, name] of [['filter-user', 'user'], ['filter-session', 'session'], ['filter-since', 'since'], ['filter-until', 'until']]) {
      const value = $(id).value.trim();
      if (value) params.set(name, value);
    }
    const q = params.toString();
    return q ? '?' + q : '';
  }

  $('filters').addEventListener('submit', (ev) => {
    ev.preventDefault();
    applyFilters();
  });

  /** Reloads the list and reopens the live stream with the form's filters. */
  function applyFilters() {
    req.query = filterQuery();
    clearError('requests-error');
    // The stream first, its events held until the list is in: none is lost between.
    req.buffering = true;
    req.buffered = [];
    openStream();
    loadRequests(true);
  }

  async function loadRequests(replace) {
    const seq = ++req.loadSeq;
    const button = $('filter-apply');
    button.disabled = true;
    try {
      const data = await api('api/requests' + req.query);
      if (seq !== req.loadSeq) return;
      const list = (data && Array.isArray(data.requests)) ? data.requests : [];
      if (replace) {
        req.rows = [];
        req.ids = new Set();
      }
      clearError('requests-error');
      mergeRows(list);
      for (const s of req.buffered) addLive(s);
      req.buffered = [];
      req.buffering = false;
      renderRows();
    } catch (err) {
      if (seq !== req.loadSeq) return;
      req.buffering = false;
      req.buffered = [];
      if (replace) {
        req.rows = [];
        req.ids = new Set();
        renderRows();
      }
      showError('requests-error', err);
      // Filters the API refuses would be refused by the stream too.
      if (err.status === 400) stopStream('stopped');
    } finally {
      if (seq === req.loadSeq) button.disabled = false;
    }
  }

  /** Adds summaries not shown yet, keeping newest first and at most MAX_ROWS. */
  function mergeRows(list) {
    for (const s of list) {
      if (!s || !s.request_id || req.ids.has(s.request_id)) continue;
      req.ids.add(s.request_id);
      req.rows.push(s);
    }
    req.rows.sort((a, b) => (Number(b.completed_at_ms) || 0) - (Number(a.completed_at_ms) || 0));
    while (req.rows.length > MAX_ROWS) req.ids.delete(req.rows.pop().request_id);
  }

  function addLive(s) {
    if (!s || !s.request_id || req.ids.has(s.request_id)) return false;
    req.ids.add(s.request_id);
    req.rows.unshift(s);
    while (req.rows.length > MAX_ROWS) req.ids.delete(req.rows.pop().request_id);
    return true;
  }

  function requestRow(s, fresh) {
    const user = s.user || null;
    const id = String(s.request_id);
    const tr = el('tr', {
      class: fresh ? 'fresh' : null,
      dataset: { requestId: id, status: String(s.status) },
      title: 'request ' + id,
    });
    const when = isTime(s.completed_at_ms) ? s.completed_at_ms : s.requested_at_ms;
    tr.append(
      el('td', { class: 'time' }, el('a', { href: '#request/' + encodeURIComponent(id), text: fmtTime(when) })),
      el('td', null, statusBadge(s.status)),
      el('td', { class: 'num', text: fmtMs(s.latency_ms) }),
      el('td', { title: user ? `${user.customer_id || ''}${user.city ? ', ' + user.city : ''}` : null },
        user ? (user.name || user.customer_id || '') : none()),
      el('td', { class: 'mono nowrap', title: s.session_id || '' }, shortId(s.session_id)),
      el('td', null, Array.isArray(s.missing) && s.missing.length
        ? s.missing.map((m) => el('span', { class: 'tag', text: m }))
        : none()),
      el('td', null, s.rejection ? String(s.rejection) : none()),
    );
    return tr;
  }

  function renderRows() {
    const tbody = $('requests').tBodies[0];
    tbody.replaceChildren(...req.rows.map((s) => requestRow(s, false)));
    updateRequestsCount();
  }

  function updateRequestsCount() {
    const n = req.rows.length;
    $('requests-empty').hidden = n > 0;
    $('requests-empty').textContent = req.query
      ? 'No page matches these filters (the console keeps the pages of the last 15 minutes).'
      : 'No pages in the last 15 minutes yet.';
    setText('requests-count', n ? `${plural(n, 'page')} shown, newest first${n >= MAX_ROWS ? ' (the latest ' + MAX_ROWS + ')' : ''}` : '');
  }

  /** Draws the live events received since the last frame. */
  function flushPending() {
    req.frame = 0;
    const pending = req.pending;
    req.pending = [];
    const tbody = $('requests').tBodies[0];
    let added = false;
    for (const s of pending) {
      if (!addLive(s)) continue;
      tbody.insertBefore(requestRow(s, true), tbody.firstChild);
      added = true;
    }
    while (tbody.rows.length > req.rows.length) tbody.lastElementChild.remove();
    if (added) updateRequestsCount();
  }

  function onLiveSummary(s) {
    if (req.buffering) {
      req.buffered.push(s);
      return;
    }
    req.pending.push(s);
    if (req.pending.length > MAX_ROWS) req.pending.splice(0, req.pending.length - MAX_ROWS);
    if (!req.frame) req.frame = requestAnimationFrame(flushPending);
  }

  $('requests').tBodies[0].addEventListener('click', (ev) => {
    if (ev.target.closest('a')) return; // the link navigates by itself
    const tr = ev.target.closest('tr[data-request-id]');
    if (tr) location.hash = '#request/' + encodeURIComponent(tr.dataset.requestId);
  });

  function setLive(state) {
    const pill = $('live-state');
    pill.dataset.state = state;
    pill.textContent = state;
  }

  function stopStream(state) {
    req.streamGen += 1;
    if (req.controller) req.controller.abort();
    req.controller = null;
    clearTimeout(req.retryTimer);
    req.retryTimer = 0;
    setLive(state || 'off');
  }

  /**
   * Follows GET /api/requests/live. EventSource cannot send the token, so
   * the stream is read with fetch and its events parsed here.
   */
  async function openStream() {
    stopStream('connecting');
    const gen = req.streamGen;
    const controller = new AbortController();
    req.controller = controller;
    let res;
    try {
      res = await fetch('api/requests/live' + req.query, {
        headers: { Accept: 'text/event-stream', Authorization: 'Bearer ' + getToken() },
        cache: 'no-store',
        signal: controller.signal,
      });
    } catch (_) {
      if (gen === req.streamGen) scheduleReconnect(gen);
      return;
    }
    if (gen !== req.streamGen) {
      controller.abort();
      return;
    }
    if (res.status === 401) {
      unauthorized((await errorOf(res)).message);
      return;
    }
    if (!res.ok || !res.body) {
      const err = await errorOf(res);
      if (gen !== req.streamGen) return;
      if (res.status >= 400 && res.status < 500) {
        showError('requests-error', err);
        stopStream('stopped');
      } else {
        scheduleReconnect(gen);
      }
      return;
    }
    setLive('live');
    try {
      await readEvents(res.body, (event, data) => {
        if (gen !== req.streamGen) return;
        if (event === ':missed') {
          // The console dropped pages for this slow reader: fetch the list again.
          clearTimeout(req.missedTimer);
          req.missedTimer = setTimeout(() => { if (gen === req.streamGen) loadRequests(false); }, 500);
          return;
        }
        if (event === 'request' || event === 'message') {
          let summary;
          try {
            summary = JSON.parse(data);
          } catch (_) {
            return;
          }
          if (summary && summary.request_id) onLiveSummary(summary);
        }
      });
    } catch (_) { /* aborted, or the connection broke */ }
    if (gen === req.streamGen) scheduleReconnect(gen);
  }

  function scheduleReconnect(gen) {
    setLive('reconnecting');
    clearTimeout(req.retryTimer);
    req.retryTimer = setTimeout(() => {
      if (gen !== req.streamGen || !app.config) return;
      openStream();
      // Pages that completed while the stream was down.
      loadRequests(false);
    }, RECONNECT_MS);
  }

  /** Reads a text/event-stream body, calling onEvent(event, data) per event. */
  async function readEvents(body, onEvent) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        // CRLF and CR end lines too; a CR last in the chunk may be half of a CRLF.
        buffer = buffer.replace(/\r\n|\r(?!$)/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          dispatchBlock(block, onEvent);
        }
      }
    } finally {
      try { reader.releaseLock(); } catch (_) { /* already released */ }
    }
  }

  function dispatchBlock(block, onEvent) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '') continue;
      if (line[0] === ':') {
        // A comment: a keep-alive, or ": missed N pages" from a lagging stream.
        if (/^:\s*missed \d+/.test(line)) onEvent(':missed', line.slice(1).trim());
        continue;
      }
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value[0] === ' ') value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
    }
    if (data.length) onEvent(event, data.join('\n'));
  }

  // ----------------------------------------------------------------- timeline

  const tl = { seq: 0, data: null };

  const SERVICE_COLORS = {
    gateway: '#2563eb',
    'user-svc': '#8250df',
    'history-svc': '#0e8a7a',
    'ads-svc': '#d97706',
    aggregator: '#1a7f37',
  };
  const EXTRA_COLORS = ['#0969da', '#bf3989', '#6e7781', '#953800', '#116329'];
  const DEAD_COLOR = '#cf222e';

  function serviceColor(service) {
    if (SERVICE_COLORS[service]) return SERVICE_COLORS[service];
    let h = 0;
    for (const c of String(service)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return EXTRA_COLORS[h % EXTRA_COLORS.length];
  }

  const isDead = (step) => step && Object.prototype.hasOwnProperty.call(step, 'dead_letter');

  async function loadTimeline(id) {
    const seq = ++tl.seq;
    tl.data = null;
    clearError('timeline-error');
    $('timeline').replaceChildren();
    $('timeline-loading').hidden = false;
    try {
      const data = await api('api/requests/' + encodeURIComponent(id || '') + '/timeline');
      if (seq !== tl.seq || app.view !== 'timeline') return;
      tl.data = data || {};
      renderTimeline(id, tl.data);
    } catch (err) {
      if (seq !== tl.seq) return;
      showError('timeline-error', err);
    } finally {
      if (seq === tl.seq) $('timeline-loading').hidden = true;
    }
  }

  function fact(label, ...value) {
    return el('div', null, el('dt', { text: label }), el('dd', null, ...value));
  }

  function renderTimeline(id, t) {
    const subject = t.subject || {};
    const requestId = subject.request_id || id;
    const steps = Array.isArray(t.steps) ? t.steps : [];
    const missing = Array.isArray(t.missing) ? t.missing : [];
    const start = isTime(t.requested_at_ms) ? Number(t.requested_at_ms) : null;

    let trace;
    const href = t.trace_url ? safeHref(t.trace_url) : null;
    if (href) {
      trace = el('a', { id: 'trace-link', href, target: '_blank', rel: 'noopener noreferrer', text: t.trace_id || t.trace_url });
    } else if (t.trace_id) {
      trace = el('code', { id: 'trace-id', text: t.trace_id });
    } else {
      trace = el('span', { id: 'trace-id', class: 'muted', text: 'none (no traceparent)' });
    }

    const completed = steps.find((s) => /page\.completed$/.test(s.topic || '') && !isDead(s));
    const deadlineText = isTime(t.deadline_ms)
      ? fmtTime(t.deadline_ms) + (start != null ? ` (+${fmtMs(t.deadline_ms - start)})` : '')
      : '—';

    const head = el('div', { class: 'card tl-head' },
      el('h1', null, 'Request ', el('code', { text: requestId }),
        // page.completed says "unavailable" where the list says "timed out".
        statusBadge(t.status === 'unavailable' ? 'timed_out' : t.status)),
      el('dl', { class: 'facts' },
        fact('Session', el('code', { text: subject.session_id || '—' })),
        fact('Outcome', t.status === 'unavailable' ? 'unavailable (timed out: the user was not resolved by the deadline)'
          : t.status ? String(t.status).replace(/_/g, ' ') : 'no page.completed found',
          completed && start != null && isTime(completed.timestamp_ms) ? ` at +${fmtMs(completed.timestamp_ms - start)}` : ''),
        fact('Missing', el('span', {
          id: 'timeline-missing',
          class: missing.length ? 'has-missing' : null,
          text: 'missing: ' + (missing.length ? missing.join(', ') : 'none'),
        })),
        fact('Requested', fmtTime(t.requested_at_ms)),
        fact('Deadline', el('span', { id: 'timeline-deadline', text: deadlineText })),
        fact('Trace', trace),
      ),
      t.lookup ? el('p', { class: 'lookup muted', text: t.lookup + '.' }) : null,
    );

    const chartCard = el('div', { class: 'card tl-chart' },
      el('h2', null, 'Records by service ', el('span', { class: 'muted', text: '(ms since the request; click a mark for its record)' })),
      svgEl('svg', { id: 'timeline-chart', role: 'img', 'aria-label': 'The request\'s records by service over time' }));

    const table = el('table', { id: 'timeline-steps', class: 'data' },
      el('thead', null, el('tr', null,
        ['Time', '+ms', 'Hop', 'Service', 'Topic', 'P:offset', 'Event', 'Record'].map((h, i) =>
          el('th', { scope: 'col', class: i === 1 || i === 2 ? 'num' : null, text: h })))),
      el('tbody', null, steps.map((s, i) => stepRow(s, i, start))));
    const stepsCard = el('div', { class: 'card flush tl-steps' },
      el('h2', null, plural(steps.length, 'record'), el('span', { class: 'muted', text: ' on ' + countTopics(steps) })),
      el('div', { class: 'scroll-x' }, table),
      steps.length ? null : el('p', { class: 'empty', text: 'No records in the range read.' }));

    $('timeline').replaceChildren(head, chartCard, stepsCard);
    drawTimelineChart($('timeline-chart'), t);
  }

  function countTopics(steps) {
    const topics = new Set(steps.map((s) => s.topic));
    return plural(topics.size, 'topic');
  }

  function stepRow(s, index, start) {
    const dead = isDead(s);
    const sinceStart = s.since_start_ms != null ? s.since_start_ms
      : (start != null && isTime(s.timestamp_ms) ? s.timestamp_ms - start : null);
    const tr = el('tr', {
      id: 'step-' + index,
      class: dead ? 'dead' : null,
      dataset: { topic: String(s.topic), service: String(s.service || ''), offset: String(s.offset) },
    });
    tr.append(
      el('td', { class: 'time', title: fmtTime(s.timestamp_ms), text: isTime(s.timestamp_ms) ? fmtTime(s.timestamp_ms).slice(11) : '—' }),
      el('td', { class: 'num', text: sinceStart == null ? '—' : '+' + Math.round(sinceStart) }),
      el('td', { class: 'num', text: s.hop_ms == null ? '—' : Math.round(s.hop_ms) }),
      el('td', null, el('span', { class: 'svc' }, el('i', { class: 'dot' }), String(s.service || '?'))),
      el('td', { class: 'mono nowrap', text: s.topic }),
      el('td', { class: 'mono nowrap', text: `${s.partition}:${s.offset}` }),
      el('td', { class: 'nowrap' },
        dead ? [el('span', { class: 'badge dead', text: 'dead letter' }), ' '] : null,
        s.event_type ? String(s.event_type) : none()),
      el('td', { class: 'record' }, recordDetails(s)),
    );
    // The service's colour (CSSOM, which the console's CSP allows).
    tr.querySelector('.svc i').style.background = dead ? DEAD_COLOR : serviceColor(s.service);
    return tr;
  }

  /**
   * A step's headers and payload as an expandable tree, in a full-width row
   * under the step's, built when first opened.
   */
  function recordDetails(s) {
    const dead = isDead(s);
    const hasError = Object.prototype.hasOwnProperty.call(s, 'error');
    const payload = dead ? s.dead_letter : hasError ? s.error : s.value;
    const kind = dead ? 'dead letter' : hasError ? 'not decoded' : 'value';
    const reason = dead && s.headers ? s.headers['dlq-reason'] : null;
    // A timeline's step names its service; a topic's record only has the dead letter's header.
    const refuser = s.service || (s.headers && s.headers['dlq-service']) || '?';
    const details = el('details', { class: 'record' },
      el('summary', null, el('span', { class: 'kind', text: kind }),
        reason ? el('span', { class: 'reason', text: `${refuser} refused it: ${reason}` }) : preview(payload, 140)));
    let detailRow = null;
    details.addEventListener('toggle', () => {
      const row = details.closest('tr');
      if (!row) return;
      row.classList.toggle('open', details.open);
      if (detailRow) {
        detailRow.hidden = !details.open;
        return;
      }
      if (!details.open) return;
      const main = el('div', { class: 'tree' });
      if (hasError) {
        main.append(el('h4', { text: 'Why it was not decoded' }), el('div', { class: 'j-error', text: String(s.error) }));
      } else {
        main.append(el('h4', { text: dead ? 'The refused record' : 'Value' }), topTree(payload));
      }
      const meta = { key: s.key, request_id: s.request_id, trace_id: s.trace_id, timestamp_ms: s.timestamp_ms };
      const side = el('div', { class: 'tree' },
        el('h4', { text: 'Headers' }), topTree(s.headers || {}),
        el('h4', { text: 'Record' }), topTree(meta));
      detailRow = el('tr', { class: 'step-detail' + (dead ? ' dead' : '') },
        el('td', { colspan: row.cells.length }, el('div', { class: 'tree-grid' }, main, side)));
      row.after(detailRow);
    });
    return details;
  }

  // ---------------------------------------------------------------- JSON tree

  const TREE_CHUNK = 200;   // children drawn at a time
  const STRING_MAX = 600;   // characters of a string shown before "show all"
  const OPEN_DEPTH = 2;     // nested objects drawn open up to this depth...
  const OPEN_SIZE = 30;     // ...when they are this small

  function sizeOf(v) {
    return Array.isArray(v) ? v.length : Object.keys(v).length;
  }

  function topTree(value) {
    if (value !== null && typeof value === 'object') {
      const list = el('ul', { class: 'j-list' });
      addEntries(list, value, 0, 0);
      if (!sizeOf(value)) list.append(el('li', { class: 'muted', text: Array.isArray(value) ? '(empty list)' : '(none)' }));
      return list;
    }
    return el('div', null, leaf(value, null));
  }

  /** Children from..from+TREE_CHUNK of an object or array, then a "show more". */
  function addEntries(list, value, from, depth) {
    const isArray = Array.isArray(value);
    const keys = isArray ? null : Object.keys(value);
    const n = isArray ? value.length : keys.length;
    const to = Math.min(n, from + TREE_CHUNK);
    for (let i = from; i < to; i++) {
      const key = isArray ? i : keys[i];
      const child = value[key];
      if (child !== null && typeof child === 'object') {
        list.append(el('li', null, branch(child, depth + 1, key)));
      } else {
        list.append(el('li', null, el('span', { class: 'j-key', text: String(key) }), ': ', leaf(child, key)));
      }
    }
    if (to < n) {
      const more = el('li', { class: 'j-more' });
      more.append(el('button', {
        type: 'button',
        text: `show ${Math.min(TREE_CHUNK, n - to)} more of ${n - to}`,
        onclick: () => {
          more.remove();
          addEntries(list, value, to, depth);
        },
      }));
      list.append(more);
    }
  }

  function branch(value, depth, key) {
    const n = sizeOf(value);
    const isArray = Array.isArray(value);
    const name = el('span', { class: 'j-key', text: String(key) });
    if (!n) return el('span', null, name, ': ', el('span', { class: 'j-null', text: isArray ? '[]' : '{}' }));
    const details = el('details', { class: 'j-node' },
      el('summary', null, name, ': ', el('span', { class: 'j-size', text: isArray ? `[${plural(n, 'item')}]` : `{${plural(n, 'field')}}` }),
        el('span', { class: 'j-preview', text: previewText(value, 80) })));
    let built = false;
    const build = () => {
      if (built) return;
      built = true;
      const list = el('ul', { class: 'j-list' });
      addEntries(list, value, 0, depth);
      details.append(list);
    };
    details.addEventListener('toggle', () => { if (details.open) build(); });
    if (depth <= OPEN_DEPTH && n <= OPEN_SIZE) {
      build();
      details.open = true;
    }
    return details;
  }

  function leaf(value, key) {
    if (value === null || value === undefined) return el('span', { class: 'j-null', text: 'null' });
    if (typeof value === 'boolean') return el('span', { class: 'j-bool', text: String(value) });
    if (typeof value === 'number') {
      const span = el('span', { class: 'j-num', text: String(value) });
      // Times in ms (requested_at_ms, deadline_ms...) read better as dates too.
      if (typeof key === 'string' && /_ms$/.test(key) && value > 1e12 && value < 1e14) {
        return el('span', null, span, el('span', { class: 'j-hint', text: fmtTime(value) }));
      }
      return span;
    }
    const text = String(value);
    if (text === '[redacted]') return el('span', { class: 'j-redacted', text });
    if (text.length <= STRING_MAX) return el('span', { class: 'j-str', text: JSON.stringify(text) });
    const span = el('span', { class: 'j-str', text: JSON.stringify(text.slice(0, STRING_MAX)).slice(0, -1) + '…' });
    const button = el('button', {
      type: 'button',
      class: 'link',
      text: `show all ${fmtInt(text.length)} characters`,
      onclick: () => {
        span.textContent = JSON.stringify(text);
        button.remove();
      },
    });
    return el('span', null, span, ' ', button);
  }

  /** A one-line preview of any value, at most `max` characters, without walking all of it. */
  function previewText(value, max) {
    let out = '';
    const walk = (v) => {
      if (out.length > max) return;
      if (v === null || v === undefined) out += 'null';
      else if (typeof v === 'string') out += JSON.stringify(v.length > max ? v.slice(0, max) : v);
      else if (typeof v !== 'object') out += String(v);
      else if (Array.isArray(v)) {
        out += '[';
        for (let i = 0; i < v.length && out.length <= max; i++) {
          if (i) out += ', ';
          walk(v[i]);
        }
        out += ']';
      } else {
        out += '{';
        let first = true;
        for (const k in v) {
          if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
          if (out.length > max) break;
          if (!first) out += ', ';
          first = false;
          out += k + ': ';
          walk(v[k]);
        }
        out += '}';
      }
    };
    walk(value);
    return out.length > max ? out.slice(0, max) + '…' : out;
  }

  function preview(value, max) {
    return el('span', { class: 'j-preview', text: previewText(value, max) });
  }

  // -------------------------------------------------------------- chart kit

  /** About `count` round tick values covering [min, max]. */
  function niceTicks(min, max, count) {
    if (!(max > min)) max = min + 1;
    const raw = (max - min) / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
    const lo = Math.floor(min / step) * step;
    const hi = Math.ceil(max / step) * step;
    const ticks = [];
    for (let v = lo; v <= hi + step / 2; v += step) ticks.push(Math.round(v / step) * step);
    return { ticks, lo, hi, step };
  }

  function chartWidth(svg, fallback) {
    const box = svg.parentNode;
    let w = box ? box.clientWidth : 0;
    if (box) {
      const cs = getComputedStyle(box);
      w -= (parseFloat(cs.paddingLeft) || 0) + (parseFloat(cs.paddingRight) || 0);
    }
    return Math.max(320, Math.floor(w || fallback));
  }

  function sizeSvg(svg, width, height) {
    svg.replaceChildren();
    svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
    svg.setAttribute('width', width);
    svg.setAttribute('height', height);
  }

  /** A legend of coloured swatches, right-aligned at the top. */
  function legend(svg, items, right, y) {
    const g = svgEl('g', { class: 'legend' });
    let x = right;
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i];
      const w = 22 + item.label.length * 6.4;
      x -= w;
      const swatch = item.line
        ? svgEl('line', { x1: x, y1: y - 4, x2: x + 14, y2: y - 4, stroke: item.color, 'stroke-width': 2.5, 'stroke-dasharray': item.dash || null })
        : svgEl('rect', { x, y: y - 9, width: 10, height: 10, rx: 2, fill: item.color });
      g.append(swatch, svgEl('text', { x: x + (item.line ? 18 : 14), y, class: 'tick', text: null }, item.label));
      x -= 6;
    }
    svg.append(g);
  }

  function yAxis(svg, m, plotH, width, ticks, scaleY, label) {
    for (const v of ticks) {
      const y = scaleY(v);
      svg.append(svgEl('line', { x1: m.l, x2: width - m.r, y1: y, y2: y, class: 'grid' }));
      svg.append(svgEl('text', { x: m.l - 6, y: y + 4, 'text-anchor': 'end', class: 'tick' }, fmtInt(v)));
    }
    svg.append(svgEl('line', { x1: m.l, x2: m.l, y1: m.t, y2: m.t + plotH, class: 'axis' }));
    const cy = m.t + plotH / 2;
    svg.append(svgEl('text', { x: 12, y: cy, transform: `rotate(-90 12 ${cy})`, 'text-anchor': 'middle', class: 'axis-label' }, label));
  }

  /** Time labels under the buckets, on round times far enough apart. */
  function timeAxis(svg, m, plotH, buckets, xOf, slot, bucketMs) {
    const y = m.t + plotH;
    svg.append(svgEl('line', { x1: m.l, x2: m.l + slot * buckets.length, y1: y, y2: y, class: 'axis' }));
    const need = Math.ceil(60 / slot) * bucketMs;
    const interval = [10e3, 20e3, 30e3, 60e3, 120e3, 180e3, 300e3, 600e3, 900e3, 1800e3].find((ms) => ms >= need) || 3600e3;
    buckets.forEach((b, i) => {
      if (Number(b.at_ms) % interval !== 0) return;
      const x = xOf(i);
      svg.append(svgEl('line', { x1: x, x2: x, y1: y, y2: y + 4, class: 'axis' }));
      svg.append(svgEl('text', { x, y: y + 16, 'text-anchor': 'middle', class: 'tick' }, fmtClock(b.at_ms, interval < 60e3)));
    });
  }

  function emptyNote(svg, width, height, text) {
    svg.append(svgEl('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'axis-label' }, text));
  }

  const RATE_SERIES = [
    { key: 'complete', label: 'complete', color: '#2da44e' },
    { key: 'partial', label: 'partial', color: '#d4a72c' },
    { key: 'rejected', label: 'rejected', color: '#8250df' },
    { key: 'timed_out', label: 'timed out', color: '#cf222e' },
  ];

  function drawRateChart(svg, stats) {
    const width = chartWidth(svg, 560);
    const height = 220;
    const m = { l: 48, r: 10, t: 26, b: 34 };
    sizeSvg(svg, width, height);
    const buckets = Array.isArray(stats.buckets) ? stats.buckets : [];
    const plotW = width - m.l - m.r;
    const plotH = height - m.t - m.b;
    const total = (b) => RATE_SERIES.reduce((sum, s) => sum + (Number(b[s.key]) || 0), 0);
    const max = Math.max(1, ...buckets.map((b) => Math.max(total(b), Number(b.pages) || 0)));
    const { ticks, hi } = niceTicks(0, max, 4);
    const scaleY = (v) => m.t + plotH - (v / hi) * plotH;
    yAxis(svg, m, plotH, width, ticks, scaleY, `pages / ${Math.round((stats.bucket_ms || 10000) / 1000)} s`);
    legend(svg, RATE_SERIES, width - m.r, 14);
    if (!buckets.length) {
      emptyNote(svg, width, height, 'No data');
      return;
    }
    const slot = plotW / buckets.length;
    const barW = Math.max(1, slot * 0.8);
    const xOf = (i) => m.l + slot * i + slot / 2;
    const bars = svgEl('g');
    buckets.forEach((b, i) => {
      let y0 = scaleY(0);
      for (const s of RATE_SERIES) {
        const v = Number(b[s.key]) || 0;
        if (!v) continue;
        const y1 = y0 - (v / hi) * plotH;
        bars.append(svgTitle(svgEl('rect', { x: xOf(i) - barW / 2, y: y1, width: barW, height: Math.max(0.5, y0 - y1), fill: s.color }),
          `${fmtClock(b.at_ms, true)}: ${v} ${s.label} of ${total(b)}`));
        y0 = y1;
      }
    });
    svg.append(bars);
    if (!buckets.some((b) => total(b) > 0)) emptyNote(svg, width, height, 'No pages in the last 15 minutes');
    timeAxis(svg, m, plotH, buckets, xOf, slot, Number(stats.bucket_ms) || 10000);
  }

  const LATENCY_SERIES = [
    { key: 'p50_ms', label: 'p50', color: '#2563eb', line: true },
    { key: 'p95_ms', label: 'p95', color: '#d97706', line: true },
  ];

  function drawLatencyChart(svg, stats) {
    const width = chartWidth(svg, 560);
    const height = 220;
    const m = { l: 48, r: 10, t: 26, b: 34 };
    sizeSvg(svg, width, height);
    const buckets = Array.isArray(stats.buckets) ? stats.buckets : [];
    const plotW = width - m.l - m.r;
    const plotH = height - m.t - m.b;
    const values = [];
    for (const b of buckets) for (const s of LATENCY_SERIES) if (b[s.key] != null) values.push(Number(b[s.key]));
    let max = Math.max(1, ...values);
    const deadline = app.config && Number(app.config.page_deadline_ms);
    const showDeadline = deadline > 0 && max >= deadline * 0.4;
    if (showDeadline) max = Math.max(max, deadline);
    const { ticks, hi } = niceTicks(0, max, 4);
    const scaleY = (v) => m.t + plotH - (v / hi) * plotH;
    yAxis(svg, m, plotH, width, ticks, scaleY, 'latency (ms)');
    const items = LATENCY_SERIES.slice();
    if (deadline > 0) items.push({ label: `deadline ${fmtInt(deadline)} ms`, color: '#cf222e', line: true, dash: '4 3' });
    legend(svg, items, width - m.r, 14);
    if (!buckets.length) {
      emptyNote(svg, width, height, 'No data');
      return;
    }
    const slot = plotW / buckets.length;
    const xOf = (i) => m.l + slot * i + slot / 2;
    if (showDeadline) {
      const y = scaleY(deadline);
      svg.append(svgEl('line', { x1: m.l, x2: width - m.r, y1: y, y2: y, stroke: '#cf222e', 'stroke-dasharray': '4 3', 'stroke-width': 1 }));
    }
    for (const s of LATENCY_SERIES) {
      let d = '';
      let pen = false;
      const dots = svgEl('g');
      buckets.forEach((b, i) => {
        const v = b[s.key];
        if (v == null) {
          pen = false;
          return;
        }
        const x = xOf(i);
        const y = scaleY(Number(v));
        d += `${pen ? 'L' : 'M'}${x.toFixed(1)},${y.toFixed(1)}`;
        pen = true;
        dots.append(svgTitle(svgEl('circle', { cx: x, cy: y, r: 2.2, fill: s.color }), `${fmtClock(b.at_ms, true)}: ${s.label} ${fmtMs(v)} (${fmtInt(b.pages)} pages)`));
      });
      if (d) svg.append(svgEl('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 2, 'stroke-linejoin': 'round' }));
      svg.append(dots);
    }
    if (!values.length) emptyNote(svg, width, height, 'No pages in the last 15 minutes');
    timeAxis(svg, m, plotH, buckets, xOf, slot, Number(stats.bucket_ms) || 10000);
  }

  // ----------------------------------------------------------- timeline chart

  function drawTimelineChart(svg, t) {
    const steps = Array.isArray(t.steps) ? t.steps : [];
    const lanes = (Array.isArray(t.services) ? t.services : []).map(String);
    for (const s of steps) {
      if (!isDead(s) && s.service && !lanes.includes(String(s.service))) lanes.push(String(s.service));
    }
    const anyDead = steps.some(isDead);
    if (anyDead) lanes.push('dead letters');
    const laneOf = (s) => lanes.indexOf(isDead(s) ? 'dead letters' : String(s.service));

    const timed = steps.map((s, i) => ({ s, i })).filter(({ s }) => isTime(s.timestamp_ms));
    const start = isTime(t.requested_at_ms) ? Number(t.requested_at_ms)
      : (timed.length ? Number(timed[0].s.timestamp_ms) : 0);
    const xs = timed.map(({ s }) => Number(s.timestamp_ms) - start);
    const deadlineX = isTime(t.deadline_ms) ? Number(t.deadline_ms) - start : null;

    const width = chartWidth(svg, 960);
    const laneH = 30;
    const m = { l: 104, r: 24, t: 22, b: 38 };
    const height = m.t + Math.max(1, lanes.length) * laneH + m.b;
    sizeSvg(svg, width, height);
    const plotW = width - m.l - m.r;
    const plotH = lanes.length * laneH;
    const axis = timeScale(xs, deadlineX, m.l, plotW);
    const scaleX = axis.scale;
    const laneY = (i) => m.t + i * laneH + laneH / 2;

    lanes.forEach((name, i) => {
      if (i % 2 === 0) svg.append(svgEl('rect', { x: m.l, y: m.t + i * laneH, width: plotW, height: laneH, fill: '#f6f8fa' }));
      const label = svgEl('text', { x: m.l - 10, y: laneY(i) + 4, 'text-anchor': 'end', 'font-size': 12 }, name);
      label.setAttribute('fill', name === 'dead letters' ? DEAD_COLOR : '#1f2328');
      svg.append(label);
    });
    for (const part of axis.parts) {
      for (const v of part.ticks) {
        const x = scaleX(v);
        svg.append(svgEl('line', { x1: x, x2: x, y1: m.t, y2: m.t + plotH, class: 'grid' }));
        svg.append(svgEl('text', { x, y: m.t + plotH + 15, 'text-anchor': 'middle', class: 'tick' }, fmtInt(v)));
      }
      svg.append(svgEl('line', { x1: part.x0, x2: part.x0 + part.w, y1: m.t + plotH, y2: m.t + plotH, class: 'axis' }));
    }
    // A long empty stretch is squeezed into a break, marked as such.
    for (const gap of axis.breaks) {
      const band = svgEl('rect', { x: gap.x, y: m.t - 2, width: gap.w, height: plotH + 4, fill: '#ffffff', class: 'axis-break' });
      svg.append(svgTitle(band, `${fmtDuration(gap.ms)} without records`));
      for (const dx of [gap.w * 0.3, gap.w * 0.7]) {
        svg.append(svgEl('line', { x1: gap.x + dx - 3, x2: gap.x + dx + 3, y1: m.t + plotH + 5, y2: m.t + plotH - 5, class: 'axis' }));
      }
      svg.append(svgEl('text', { x: gap.x + gap.w / 2, y: m.t - 9, 'text-anchor': 'middle', class: 'tick' }, '+' + fmtDuration(gap.ms)));
    }
    svg.append(svgEl('text', { x: m.l + plotW / 2, y: height - 6, 'text-anchor': 'middle', class: 'axis-label' },
      `ms since the request (${fmtTime(start)})`));

    if (deadlineX != null) {
      const x = scaleX(deadlineX);
      svg.append(svgEl('line', { x1: x, x2: x, y1: m.t - 6, y2: m.t + plotH, stroke: DEAD_COLOR, 'stroke-width': 1.5, 'stroke-dasharray': '5 4', class: 'deadline' }));
      // Left of the line, clear of a break's label on its right.
      const left = x - m.l > 110;
      svg.append(svgEl('text', { x: left ? x - 4 : x + 4, y: m.t - 9, 'text-anchor': left ? 'end' : 'start', 'font-size': 11, fill: DEAD_COLOR, class: 'deadline-label' },
        `deadline +${fmtInt(deadlineX)} ms`));
    }
    if (!timed.length) {
      emptyNote(svg, width, m.t + plotH + 8, 'No timed records');
      return;
    }

    // The request's path, record to record.
    let path = '';
    timed.forEach(({ s }, k) => {
      path += `${k ? 'L' : 'M'}${scaleX(xs[k]).toFixed(1)},${laneY(laneOf(s)).toFixed(1)}`;
    });
    svg.append(svgEl('path', { d: path, fill: 'none', stroke: '#afb8c1', 'stroke-width': 1, 'stroke-dasharray': '2 2' }));

    const marks = svgEl('g');
    const labels = svgEl('g');
    svg.append(marks, labels);
    // Marks close together in a lane share one label, after the last of them.
    const groups = new Map();
    timed.forEach(({ s, i }, k) => {
      const x = scaleX(xs[k]);
      const lane = laneOf(s);
      const y = laneY(lane);
      const dead = isDead(s);
      const color = dead ? DEAD_COLOR : serviceColor(s.service);
      const mark = dead
        ? svgEl('rect', { x: x - 5, y: y - 5, width: 10, height: 10, fill: color, class: 'mark dead-letter', 'data-topic': s.topic })
        : svgEl('circle', { cx: x, cy: y, r: 5, fill: color, stroke: '#fff', 'stroke-width': 1, class: 'mark', 'data-topic': s.topic });
      svgTitle(mark, `${s.event_type || s.topic} · ${s.topic} ${s.partition}:${s.offset} · +${fmtInt(xs[k])} ms${dead ? ' · dead letter: ' + ((s.headers || {})['dlq-reason'] || '') : ''}`);
      mark.addEventListener('click', () => focusStep(i));
      marks.append(mark);
      const label = String(s.event_type || String(s.topic).split('.').slice(-2).join('.'));
      const list = groups.get(lane) || [];
      const last = list[list.length - 1];
      if (last && x - last.x1 < 14) {
        last.x1 = Math.max(last.x1, x);
        last.labels.push(label);
      } else {
        list.push({ x0: x, x1: x, labels: [label], y, dead });
      }
      groups.set(lane, list);
    });
    for (const [lane, raw] of groups) {
      // Groups nearly touching are one for their label.
      const list = [];
      for (const g of raw) {
        const last = list[list.length - 1];
        if (last && g.x0 - last.x1 < 40) {
          last.x1 = g.x1;
          last.labels.push(...g.labels);
        } else list.push(g);
      }
      groups.set(lane, list);
      list.forEach((g, k) => {
        const same = g.labels.every((l) => l === g.labels[0]);
        const n = g.labels.length;
        const text = n === 1 ? g.labels[0]
          : g.dead ? `${n} dead letters`
            : same ? `${n} × ${g.labels[0]}` : plural(n, 'record');
        const w = text.length * 6 + 6;
        const next = list[k + 1];
        const prev = list[k - 1];
        let lx = g.x1 + 8;
        let anchor = 'start';
        if (lx + w > width || (next && lx + w > next.x0 - 6)) {
          // No room on the right: on the left, if there is room there.
          lx = g.x0 - 8;
          anchor = 'end';
          const part = axis.parts.filter((p) => p.x0 <= g.x0 + 0.5).pop() || axis.parts[0];
          if (lx - w < part.x0 || (prev && lx - w < prev.x1 + 6 + (prev.labelled ? 200 : 0))) return;
        }
        g.labelled = anchor === 'start';
        const t = svgEl('text', { x: lx, y: g.y + 4, 'font-size': 10.5, class: 'tick', 'text-anchor': anchor }, text);
        if (g.dead) t.setAttribute('fill', DEAD_COLOR);
        labels.append(t);
      });
    }
  }

  function fmtDuration(ms) {
    const n = Number(ms);
    if (n < 1000) return `${Math.round(n)} ms`;
    if (n < 60000) return `${(n / 1000).toFixed(1)} s`;
    if (n < 3600000) return `${(n / 60000).toFixed(1)} min`;
    return `${(n / 3600000).toFixed(1)} h`;
  }

  /**
   * The timeline's x scale (ms since the request → px). Linear from the
   * request to its deadline; a long empty stretch after it (a webhook's
   * report, a dead letter seconds later) is squeezed into a narrow break,
   * so the records around the deadline stay readable.
   */
  function timeScale(xs, deadlineX, x0, width) {
    const BREAK_W = 30;
    const keys = Array.from(new Set(xs.concat(deadlineX == null ? [] : [deadlineX]))).sort((a, b) => a - b);
    const lo = Math.min(0, ...keys);
    const hi = Math.max(1, ...keys);
    const range = hi - lo;
    const core = deadlineX == null ? lo : Math.max(lo, deadlineX);
    const clusters = [[lo, Math.max(lo, core)]];
    for (const v of keys) {
      const last = clusters[clusters.length - 1];
      if (v <= last[1]) continue;
      const gap = v - last[1];
      const span = Math.max(1, last[1] - last[0]);
      if (gap > range * 0.3 && gap > span * 2) clusters.push([v, v]);
      else last[1] = v;
    }
    const maxSpan = Math.max(1, ...clusters.map(([a, b]) => b - a));
    const parts = clusters.map(([a, b], i) => {
      let span = b - a;
      const min = maxSpan * 0.2;
      if (span < min) {
        const grow = (min - span) / 2;
        a = i === 0 ? a : a - grow;
        b = i === 0 ? b + 2 * grow : b + grow;
        span = min;
      }
      const pad = span * 0.04;
      return { a: i === 0 ? a : a - pad, b: b + pad };
    });
    const room = width - BREAK_W * (parts.length - 1);
    const total = parts.reduce((sum, p) => sum + (p.b - p.a), 0);
    let x = x0;
    const breaks = [];
    parts.forEach((p, i) => {
      p.x0 = x;
      p.w = room * ((p.b - p.a) / total);
      const { ticks } = niceTicks(p.a, p.b, Math.max(1, Math.floor(p.w / 80)));
      p.ticks = ticks.filter((v) => v >= p.a && v <= p.b);
      x += p.w;
      if (i < parts.length - 1) {
        breaks.push({ x, w: BREAK_W, ms: clusters[i + 1][0] - clusters[i][1] });
        x += BREAK_W;
      }
    });
    const scale = (v) => {
      let p = parts[0];
      for (const q of parts) if (v >= q.a) p = q;
      return p.x0 + ((v - p.a) / Math.max(1e-9, p.b - p.a)) * p.w;
    };
    return { scale, parts, breaks };
  }

  function focusStep(index) {
    const row = $('step-' + index);
    if (!row) return;
    for (const r of document.querySelectorAll('#timeline-steps tr.focus')) r.classList.remove('focus');
    row.classList.add('focus');
    const details = row.querySelector('details.record');
    if (details) details.open = true;
    row.scrollIntoView({ behavior: 'smooth', block: 'center' });
  }

  // ------------------------------------------------------------------- topics

  const topics = { list: null, listSeq: 0, name: null, seq: 0 };

  /** #topics or #topics/<name>: the namespace's topics, and the latest records of one. */
  function enterTopics(name, entering) {
    if (entering || !topics.list) loadTopics();
    if (name !== topics.name) {
      // Another topic's records are not left under this one's name while it loads.
      $('topic-records').tBodies[0].replaceChildren();
      $('topic-records-card').hidden = true;
      clearError('topic-error');
    }
    topics.name = name;
    markTopic();
    $('topic-none').hidden = name != null;
    $('topic-browser').hidden = name == null;
    if (name == null) {
      topics.seq += 1; // a load under way is for a topic no longer shown
      $('topic-loading').hidden = true;
      $('topic-load').disabled = false;
      return;
    }
    const listed = (topics.list || []).find((t) => t.name === name);
    setText('topic-name', name);
    $('topic-name').title = listed && listed.topic ? String(listed.topic) : '';
    loadTopicRecords();
  }

  async function loadTopics() {
    const seq = ++topics.listSeq;
    try {
      const data = await api('api/topics');
      if (seq !== topics.listSeq) return;
      topics.list = data && Array.isArray(data.topics) ? data.topics : [];
      clearError('topics-error');
      renderTopics();
    } catch (err) {
      if (seq !== topics.listSeq) return;
      showError('topics-error', err);
    }
  }

  function renderTopics() {
    const list = topics.list || [];
    $('topics').tBodies[0].replaceChildren(...list.map((t) => {
      const name = String(t.name);
      return el('tr', { dataset: { topicName: name }, title: t.topic ? String(t.topic) : null },
        el('td', { class: 'mono nowrap' }, el('a', { href: '#topics/' + encodeURIComponent(name), text: name })),
        el('td', { class: 'num', text: fmtInt(t.partitions) }),
        el('td', { class: 'num', text: fmtInt(t.records) }));
    }));
    $('topics-empty').hidden = list.length > 0;
    const held = list.reduce((sum, t) => sum + (Number(t.records) || 0), 0);
    setText('topics-count', list.length ? `${plural(list.length, 'topic')}, ${plural(held, 'record')} held` : '');
    markTopic();
    if (topics.name != null) {
      const listed = list.find((t) => t.name === topics.name);
      $('topic-name').title = listed && listed.topic ? String(listed.topic) : '';
    }
  }

  function markTopic() {
    for (const tr of $('topics').tBodies[0].rows) {
      if (tr.dataset.topicName === topics.name) tr.setAttribute('aria-current', 'true');
      else tr.removeAttribute('aria-current');
    }
  }

  $('topics').tBodies[0].addEventListener('click', (ev) => {
    const tr = ev.target.closest('tr[data-topic-name]');
    if (!tr) return;
    // A modified click on the name opens it elsewhere, as a link does.
    if (ev.target.closest('a') && (ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.altKey)) return;
    ev.preventDefault();
    const target = '#topics/' + encodeURIComponent(tr.dataset.topicName);
    // The topic shown already: read it again.
    if (location.hash === target) loadTopicRecords();
    else location.hash = target;
  });

  $('topic-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    loadTopicRecords();
    loadTopics(); // and the counts, which have grown
  });

  function topicQuery() {
    const params = new URLSearchParams();
    for (const [id, name] of [['topic-since', 'since'], ['topic-until', 'until'], ['topic-limit', 'limit']]) {
      const value = $(id).value.trim();
      if (value) params.set(name, value);
    }
    const q = params.toString();
    return q ? '?' + q : '';
  }

  async function loadTopicRecords() {
    const name = topics.name;
    if (name == null) return;
    const seq = ++topics.seq;
    clearError('topic-error');
    $('topic-loading').hidden = false;
    $('topic-load').disabled = true;
    try {
      const data = await api('api/topics/' + encodeURIComponent(name) + '/records' + topicQuery());
      if (seq !== topics.seq || app.view !== 'topics') return;
      renderTopicRecords(data || {});
    } catch (err) {
      if (seq !== topics.seq) return;
      $('topic-records').tBodies[0].replaceChildren();
      $('topic-records-card').hidden = true;
      showError('topic-error', err);
    } finally {
      if (seq === topics.seq) {
        $('topic-loading').hidden = true;
        $('topic-load').disabled = false;
      }
    }
  }

  function renderTopicRecords(data) {
    // The API answers oldest first; the newest is shown first, as in the requests.
    const records = (Array.isArray(data.records) ? data.records : []).slice().reverse();
    const n = records.length;
    const limit = Number($('topic-limit').value) || 50;
    $('topic-records').tBodies[0].replaceChildren(...records.map(topicRecordRow));
    $('topic-records-empty').hidden = n > 0;
    setText('topic-count', n === 0 ? 'No records'
      : `${n >= limit ? 'The latest ' : ''}${plural(n, 'record')}, newest first`);
    setText('topic-range', `(from ${fmtTime(data.since_ms)} to ${isTime(data.until_ms) ? fmtTime(data.until_ms) : 'now'})`);
    $('topic-records-card').hidden = false;
  }

  /** A key as it is, but a UUID (a session ID) by its last characters. */
  function shortKey(key) {
    const s = String(key);
    return /^[0-9a-f]{8}-[0-9a-f]{4}-/i.test(s) ? shortId(s) : s;
  }

  function topicRecordRow(r) {
    const dead = isDead(r);
    let time = '—';
    if (isTime(r.timestamp_ms)) {
      // Today's by the time of day, as in a timeline; older ones with their date.
      time = fmtTime(r.timestamp_ms);
      if (time.slice(0, 10) === fmtTime(Date.now()).slice(0, 10)) time = time.slice(11);
    }
    const hasKey = r.key != null && r.key !== '';
    return el('tr', { class: dead ? 'dead' : null, dataset: { partition: String(r.partition), offset: String(r.offset) } },
      el('td', { class: 'time', title: isTime(r.timestamp_ms) ? fmtTime(r.timestamp_ms) : null, text: time }),
      el('td', { class: 'mono nowrap', text: `${r.partition}:${r.offset}` }),
      el('td', { class: 'mono key', title: hasKey ? String(r.key) : null }, hasKey ? shortKey(r.key) : none()),
      el('td', { class: 'nowrap' },
        dead ? [el('span', { class: 'badge dead', text: 'dead letter' }), ' '] : null,
        r.event_type ? String(r.event_type) : none()),
      el('td', { class: 'nowrap' }, r.request_id
        ? el('a', { class: 'mono', href: '#request/' + encodeURIComponent(r.request_id), text: shortId(r.request_id), title: 'request ' + r.request_id })
        : none()),
      el('td', { class: 'record' }, recordDetails(r)));
  }

  // ------------------------------------------------------------------- health

  const health = { timer: 0, busy: false, stats: null, letters: [], selected: new Set() };

  function startHealth() {
    stopHealth();
    refreshHealth();
    health.timer = setInterval(refreshHealth, HEALTH_MS);
  }

  function stopHealth() {
    clearInterval(health.timer);
    health.timer = 0;
  }

  async function refreshHealth() {
    if (health.busy || app.view !== 'health') return;
    health.busy = true;
    try {
      const [groups, letters, stats] = await Promise.allSettled([
        api('api/groups'), api('api/dead-letters'), api('api/stats'),
      ]);
      if (app.view !== 'health') return;
      const errors = [];
      if (stats.status === 'fulfilled') {
        health.stats = stats.value || {};
        drawRateChart($('chart-rate'), health.stats);
        drawLatencyChart($('chart-latency'), health.stats);
      } else errors.push(['stats', stats.reason]);
      if (letters.status === 'fulfilled') renderDeadLetters(letters.value || {});
      else errors.push(['dead letters', letters.reason]);
      if (groups.status === 'fulfilled') renderGroups(groups.value || {});
      else errors.push(['consumer groups', groups.reason]);
      if (errors.some(([, e]) => e && e.status === 401)) return;
      const box = $('health-error');
      if (errors.length) {
        box.textContent = errors.map(([what, e]) => `${what}: ${e && e.message ? e.message : e}`).join('\n');
      } else clearError('health-error');
      setText('health-updated', `; last at ${fmtClock(Date.now(), true)}`);
    } finally {
      health.busy = false;
    }
  }

  function renderGroups(data) {
    const groups = Array.isArray(data.groups) ? data.groups : [];
    const rows = [];
    for (const g of groups) {
      const partitions = Array.isArray(g.partitions) ? g.partitions : [];
      const about = [plural(partitions.length, 'partition')];
      if (g.state) about.push(String(g.state));
      if (g.members != null) about.push(plural(g.members, 'member'));
      rows.push(el('tr', { class: 'group', dataset: { group: String(g.group) } },
        el('td', { colspan: 5 }, String(g.group), el('span', { class: 'muted', text: '  ·  ' + about.join(' · ') })),
        el('td', { class: 'num' + (g.lag > 0 ? ' lagging' : ''), text: fmtInt(g.lag), title: 'total lag' })));
      for (const p of partitions) {
        rows.push(el('tr', { class: 'part', dataset: { group: String(g.group), topic: String(p.topic), partition: String(p.partition) } },
          el('td'),
          el('td', { class: 'mono', text: p.topic }),
          el('td', { class: 'num', text: p.partition }),
          el('td', { class: 'num', text: fmtInt(p.committed) }),
          el('td', { class: 'num', text: fmtInt(p.end) }),
          el('td', { class: 'num' + (p.lag > 0 ? ' lagging' : ''), text: fmtInt(p.lag) })));
      }
    }
    $('groups').tBodies[0].replaceChildren(...rows);
    $('groups-none').hidden = groups.length > 0;
  }

  function renderDeadLetters(data) {
    const byReason = Array.isArray(data.by_reason) ? data.by_reason : [];
    const letters = Array.isArray(data.letters) ? data.letters : [];
    health.letters = letters;
    const total = Number(data.total) || 0;
    setText('dead-letters-total', total ? `(${fmtInt(total)}${letters.length < total ? ', the latest ' + letters.length + ' listed' : ''})` : '(none)');
    $('dead-letters-by-reason').tBodies[0].replaceChildren(...byReason.map((r) =>
      el('tr', { dataset: { service: String(r.service), sourceTopic: String(r.source_topic) } },
        el('td', { text: r.service }),
        el('td', { class: 'mono', text: r.source_topic }),
        el('td', { text: r.reason }),
        el('td', { class: 'num', text: fmtInt(r.count) }))));
    $('dead-letters-by-reason').hidden = byReason.length === 0;
    $('dead-letters-none').hidden = byReason.length > 0 || letters.length > 0;

    const present = new Set(letters.map((l) => String(l.position)));
    for (const p of Array.from(health.selected)) if (!present.has(p)) health.selected.delete(p);
    $('dead-letters').replaceChildren(...letters.map((l) => {
      const position = String(l.position);
      const box = el('input', { type: 'checkbox', value: position, 'aria-label': 'dead letter ' + position });
      box.checked = health.selected.has(position);
      box.addEventListener('change', () => {
        if (box.checked) health.selected.add(position);
        else health.selected.delete(position);
        updateRepublish();
      });
      return el('li', { dataset: { position } },
        el('label', null,
          box,
          el('span', { class: 'time', text: fmtTime(l.timestamp_ms) }),
          el('span', { text: l.service }),
          el('span', null, el('span', { class: 'mono', text: l.source_topic }), el('span', { class: 'pos', text: ` ${l.source_partition}:${l.source_offset}` })),
          el('span', { class: 'reason', text: l.reason }),
          l.request_id
            ? el('a', { href: '#request/' + encodeURIComponent(l.request_id), class: 'mono', text: shortId(l.request_id), title: 'request ' + l.request_id })
            : el('span', { class: 'pos', text: position })));
    }));
    $('dead-letters-all').parentNode.hidden = letters.length === 0;
    updateRepublish();
  }

  function updateRepublish() {
    const n = health.selected.size;
    const button = $('republish');
    button.disabled = n === 0;
    button.textContent = n ? `Republish ${plural(n, 'selected letter')}` : 'Republish selected';
    const all = $('dead-letters-all');
    all.checked = n > 0 && n === health.letters.length;
    all.indeterminate = n > 0 && n < health.letters.length;
  }

  $('dead-letters-all').addEventListener('change', (ev) => {
    health.selected = new Set(ev.target.checked ? health.letters.map((l) => String(l.position)) : []);
    for (const box of $('dead-letters').querySelectorAll('input[type=checkbox]')) box.checked = health.selected.has(box.value);
    updateRepublish();
  });

  $('republish').addEventListener('click', async () => {
    const positions = Array.from(health.selected);
    if (!positions.length) return;
    const where = new Map();
    for (const l of health.letters) {
      if (!health.selected.has(String(l.position))) continue;
      where.set(l.source_topic, (where.get(l.source_topic) || 0) + 1);
    }
    const lines = Array.from(where, ([topic, n]) => `  ${n} → ${topic}`).join('\n');
    const dest = positions.length === 1 ? 'its source topic' : where.size === 1 ? 'their source topic' : 'their source topics';
    const question = `Republish ${plural(positions.length, 'dead letter')} to ${dest}?\n\n${lines}\n\n` +
      `${positions.length === 1 ? 'The service that refused it' : 'The services that refused them'} will read ${positions.length === 1 ? 'it' : 'them'} again.`;
    if (!window.confirm(question)) return;
    const result = $('republish-result');
    const button = $('republish');
    button.disabled = true;
    result.className = '';
    result.textContent = 'Republishing…';
    try {
      const answer = await api('api/dead-letters/republish', { method: 'POST', body: { positions, confirm: true } });
      const n = answer && answer.republished != null ? Number(answer.republished) : positions.length;
      result.className = 'ok';
      result.textContent = `Republished ${plural(n, 'dead letter')} to ${dest}.`;
      health.selected.clear();
      for (const box of $('dead-letters').querySelectorAll('input[type=checkbox]')) box.checked = false;
      updateRepublish();
      refreshHealth();
    } catch (err) {
      if (err.status === 401) return;
      result.className = 'fail';
      result.textContent = 'Not republished: ' + err.message;
      updateRepublish();
    }
  });

  // ------------------------------------------------------------------- replay

  const replay = { planned: null, plan: null, pollTimer: 0, pollId: null, busy: false };

  function replayForm() {
    return {
      from: $('replay-from').value.trim(),
      to: $('replay-to').value.trim(),
      into: $('replay-into').value.trim(),
      max_requests: $('replay-max').value.trim(),
      rate: $('replay-rate').value.trim(),
      budget_scale: $('replay-budget-scale').value.trim(),
      with_logins: $('replay-with-logins').checked,
    };
  }

  function replayBody(form) {
    const body = { from: form.from, to: form.to || 'now', into: form.into };
    if (form.max_requests !== '') body.max_requests = Number(form.max_requests);
    if (form.rate !== '') body.rate = Number(form.rate);
    if (form.budget_scale !== '') body.budget_scale = Number(form.budget_scale);
    if (form.with_logins) body.with_logins = true;
    return body;
  }

  function updateRunButton() {
    const ok = replay.planned !== null && replay.planned === JSON.stringify(replayForm()) && !replay.busy && !replay.pollId;
    const run = $('replay-run');
    run.disabled = !ok;
    run.title = ok ? 'Run the replay planned above' : 'Do a dry run of these values first';
  }

  $('replay-form').addEventListener('input', updateRunButton);
  $('replay-form').addEventListener('change', updateRunButton);

  $('replay-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const form = replayForm();
    const snapshot = JSON.stringify(form);
    clearError('replay-error');
    replay.planned = null;
    replay.plan = null;
    updateRunButton();
    const pre = $('replay-plan-result');
    const button = $('replay-plan');
    button.disabled = true;
    pre.hidden = false;
    pre.textContent = 'Planning (reading the range; nothing is written)…';
    try {
      const answer = await api('api/replays/plan', { method: 'POST', body: replayBody(form) });
      pre.textContent = (answer && answer.description) || '(no description)';
      replay.plan = (answer && answer.plan) || null;
      replay.planned = snapshot;
    } catch (err) {
      pre.hidden = true;
      pre.textContent = '';
      showError('replay-error', err);
    } finally {
      button.disabled = false;
      updateRunButton();
    }
  });

  $('replay-run').addEventListener('click', async () => {
    const form = replayForm();
    if (replay.planned !== JSON.stringify(form)) {
      updateRunButton();
      return;
    }
    const plan = replay.plan || {};
    const body = replayBody(form);
    // The range the dry run resolved ("15m", "now"), so the run replays what was shown.
    if (Number.isFinite(plan.from_ms)) body.from = plan.from_ms;
    if (Number.isFinite(plan.to_ms)) body.to = plan.to_ms;
    const count = plan.requests != null ? plan.requests : (plan.found != null ? Math.min(plan.found, body.max_requests || plan.found) : null);
    const question = `Run this replay?\n\n` +
      `${count != null ? plural(count, 'request') : 'The requests'} recorded from ${fmtTime(plan.from_ms)} to ${fmtTime(plan.to_ms)} ` +
      `will be sent into namespace "${form.into}" at ${body.rate || 20} per second, each with ${body.budget_scale || 1} times its recorded budget, with its own copy of the services. ` +
      `Nothing is written to the live namespace.`;
    if (!window.confirm(question)) return;
    clearError('replay-error');
    replay.busy = true;
    updateRunButton();
    try {
      body.confirm = true;
      const answer = await api('api/replays', { method: 'POST', body });
      // A namespace replayed into holds records: the next run needs a new dry run.
      replay.planned = null;
      sessionStorage.setItem(REPLAY_KEY, String(answer.id));
      $('replay-report').hidden = true;
      setReplayState('running', `running (replay ${answer.id})`);
      pollReplay(String(answer.id));
    } catch (err) {
      showError('replay-error', err);
    } finally {
      replay.busy = false;
      updateRunButton();
    }
  });

  function setReplayState(state, text) {
    const e = $('replay-state');
    e.dataset.state = state;
    e.textContent = text;
  }

  function enterReplay() {
    updateRunButton();
    const id = sessionStorage.getItem(REPLAY_KEY);
    if (id && !replay.pollId) pollReplay(id);
  }

  function stopReplayPolling() {
    clearTimeout(replay.pollTimer);
    replay.pollTimer = 0;
    replay.pollId = null;
  }

  function pollReplay(id) {
    stopReplayPolling();
    replay.pollId = id;
    updateRunButton();
    const tick = async () => {
      if (replay.pollId !== id) return;
      let job;
      try {
        job = await api('api/replays/' + encodeURIComponent(id));
      } catch (err) {
        if (replay.pollId !== id) return;
        if (err.status === 404) {
          // The console restarted, or forgot it: nothing to follow.
          sessionStorage.removeItem(REPLAY_KEY);
          stopReplayPolling();
          setReplayState('idle', 'no replay started');
          updateRunButton();
          return;
        }
        if (err.status === 401) return;
        showError('replay-error', err);
        replay.pollTimer = setTimeout(tick, REPLAY_POLL_MS * 3);
        return;
      }
      if (replay.pollId !== id) return;
      showJob(job || {});
      if (job && job.state === 'running') {
        replay.pollTimer = setTimeout(tick, REPLAY_POLL_MS);
      } else {
        sessionStorage.removeItem(REPLAY_KEY);
        stopReplayPolling();
        updateRunButton();
      }
    };
    tick();
  }

  function showJob(job) {
    const state = String(job.state || 'running');
    const started = isTime(job.started_at_ms) ? Number(job.started_at_ms) : null;
    const ended = isTime(job.finished_at_ms) ? Number(job.finished_at_ms) : null;
    const seconds = started != null ? Math.max(0, Math.round(((ended != null ? ended : Date.now()) - started) / 1000)) : null;
    const took = seconds != null ? ` (${seconds} s)` : '';
    if (state === 'running') setReplayState('running', `running — replay ${job.id}${took}`);
    else if (state === 'done') setReplayState('done', `done — replay ${job.id}${took}`);
    else setReplayState(state, `${state} — replay ${job.id}${took}`);
    const pre = $('replay-plan-result');
    if (job.description && !pre.textContent) {
      pre.hidden = false;
      pre.textContent = job.description;
    }
    if (state === 'failed') showError('replay-error', new ApiError(0, 'replay_failed', 'The replay failed: ' + (job.error || 'no reason given')));
    if (state === 'done' && job.report) renderReport(job.report);
  }

  function renderReport(report) {
    const counts = [
      ['replay-same', 'same', report.same, false],
      ['replay-timing', 'timing', report.timing, true],
      ['replay-different', 'different', report.different, true],
      ['replay-no-recorded', 'no recorded page', report.no_recorded_page, true],
      ['replay-no-replayed', 'no replayed page', report.no_replayed_page, true],
    ];
    $('replay-counts').replaceChildren(...counts.map(([id, label, n, warn]) =>
      el('div', { class: 'stat' + (warn && n > 0 ? ' warn' : ''), id, 'data-testid': id, dataset: { count: String(n == null ? '' : n) } },
        el('span', { class: 'n', text: fmtInt(n) }), el('span', { class: 'l', text: label }))));
    const requests = Array.isArray(report.requests) ? report.requests : [];
    const list = (v) => (Array.isArray(v) ? v.map(String) : []);
    const rows = [];
    for (const r of requests) {
      const verdict = String(r.verdict || 'different');
      let lines;
      if (verdict === 'no_recorded_page') lines = ['no recorded page to compare with'];
      else if (verdict === 'no_replayed_page') lines = ['no page came back from the replay'];
      else if (verdict === 'timing') lines = list(r.timing).map((t) => 'timing: ' + t);
      else if (verdict === 'different') lines = list(r.differences);
      else lines = [];
      if (!lines.length) continue;
      lines = lines.concat(list(r.notes));
      rows.push(el('tr', { dataset: { requestId: String(r.request_id), outcome: verdict } },
        el('td', null, el('a', { class: 'mono', href: '#request/' + encodeURIComponent(r.request_id), text: r.request_id, title: 'the recorded request\'s timeline' })),
        el('td', { text: r.kind }),
        el('td', { class: 'mono', title: r.session_id || '', text: shortId(r.session_id) }),
        el('td', { text: verdict.replace(/_/g, ' ') }),
        el('td', null, el('ul', null, lines.map((line) => el('li', { text: line }))))));
    }
    $('replay-diff').tBodies[0].replaceChildren(...rows);
    $('replay-diff-none').hidden = rows.length > 0;
    const plan = report.plan || {};
    const ready = Number.isFinite(report.copy_ready_ms) ? `The copy was ready in ${fmtInt(report.copy_ready_ms)} ms` : 'The copy started';
    setText('replay-copy', `${ready}; each request had ${plan.budget_scale || 1} times its recorded time budget.` +
      (report.timing > 0 ? ' Timing differences: the copy answered later than the recording and nothing else differs; a larger budget scale gives it more time.' : ''));
    $('replay-report').hidden = false;
  }

  // -------------------------------------------------------------------- start

  if (getToken()) connect();
  else showTokenForm('');
})();
