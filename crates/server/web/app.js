// ucbridge admin page.
//
// Plain modern JavaScript, no build step, no third-party code. The server's CSP allows
// only this file and app.css (no inline script or style), so every element is built
// with createElement/textContent: API data never goes through innerHTML.
//
// API conventions (crates/server/src/api): JSON everywhere; errors are
// {"error": {"code", "message"}}; a session cookie (HttpOnly) authenticates the page and
// every POST/PUT/DELETE must echo the session's CSRF token in X-CSRF-Token.

'use strict';

const STATUS_EVERY_MS = 2000;
// While a run is requested or running, refresh faster so its progress moves visibly.
const STATUS_BUSY_EVERY_MS = 700;
const USERS_PAGE = 50;
const PLAN_CHANGES_SHOWN = 200;
const AUDIT_LIMIT = 500;
const AUDIT_SHOWN = 50;

// Each kind's options (the server types them per kind and refuses unknown keys: see
// crates/server/src/connections/options.rs). Field types: `text`, `choice` (a drop-down;
// a '' choice means "not set"), `check` (sent only when on), `list` (comma-separated),
// `count` (a whole number of at least 1). `fallback` is what an unset choice shows.
const SCHEMA_VERSIONS = ['11.0', '11.5', '12.0', '12.5', '14.0', '15.0'];
const CONNECTION_INFO = {
  cucm: {
    title: 'Cisco Unified CM (AXL)',
    url: 'https://cucm.example.com:8443/axl/',
    sso: true,
    fields: [{
      key: 'schema_version', label: 'AXL schema version', type: 'choice',
      choices: [['', 'automatic (getCCMVersion)'], ...SCHEMA_VERSIONS.map((v) => [v, v])],
    }],
  },
  cuc: {
    title: 'Unity Connection (CUMI / CUPI)',
    url: 'https://cuc.example.com',
    sso: true,
    fields: [],
  },
  ids: {
    title: 'Identity service (IdS) and SSO status',
    url: 'https://ids.example.com:8553/ids/v1/oauth/token',
    sso: false,
    fields: [
      { key: 'client_id', label: 'OAuth client id', type: 'text', placeholder: 'optional' },
      { key: 'status_url', label: 'SSO status server', type: 'text', placeholder: 'default: the IdS URL\'s server' },
      { key: 'status_username', label: 'SSO status username', type: 'text', placeholder: 'default: the username above' },
      { key: 'introspect_url', label: 'Token introspection URL', type: 'text', placeholder: 'default: …/oauth/introspect beside the token URL' },
      { key: 'introspect_username', label: 'Introspection username', type: 'text', placeholder: 'default: the username above' },
    ],
  },
  imap: {
    title: 'IMAP (voicemail mailboxes)',
    url: 'imaps://mail.example.com:993',
    usernameLabel: 'Master user',
    sso: false,
    fields: [
      {
        key: 'security', label: 'Security', type: 'choice',
        choices: [
          ['', 'from the URL (imaps://: TLS, imap://: STARTTLS)'],
          ['tls', 'TLS (imaps://)'],
          ['starttls', 'STARTTLS (imap://)'],
          ['plain', 'plain (imap://, loopback only unless allowed)'],
        ],
      },
      {
        key: 'login', label: 'Master-user login', type: 'choice',
        choices: [
          ['', 'default: Dovecot master user'],
          ['master_user', 'Dovecot master user (user*master)'],
          ['sasl_authzid', 'SASL PLAIN with authorization identity'],
        ],
      },
      { key: 'master_separator', label: 'Master user separator', type: 'text', placeholder: 'default: *' },
      { key: 'allow_plaintext', label: 'Allow plain IMAP to a host that is not loopback (passwords cross the network in clear)', type: 'check' },
    ],
  },
  ldap: {
    title: 'LDAP (directory export)',
    url: 'ldaps://ldap.example.com',
    usernameLabel: 'Bind DN',
    sso: false,
    fields: [
      { key: 'base_dn', label: 'Base DN', type: 'text', placeholder: 'ou=people,dc=example,dc=com' },
      {
        key: 'uid_from', label: 'Export uid from', type: 'choice', fallback: 'username', group: 'export',
        choices: [
          ['primary_alias', 'Primary alias'],
          ['primary_email', 'Primary e-mail'],
          ['username', 'Username'],
          ['internal_id', 'Internal UID'],
          ['phone', 'Phone'],
          ['numeric_phone', 'Numeric phone'],
        ],
      },
      {
        key: 'phone_from', label: 'Export phone from', type: 'choice', fallback: 'phone', group: 'export',
        choices: [['empty', 'Empty'], ['numeric_phone', 'Numeric'], ['phone', 'Phone']],
      },
      {
        key: 'naming_attribute', label: 'Naming attribute (RDN)', type: 'choice', fallback: 'uid',
        choices: [['uid', 'uid'], ['cn', 'cn']],
      },
      {
        key: 'removal', label: 'Removed or disabled users', type: 'choice', fallback: 'delete_created',
        choices: [
          ['delete_created', 'delete entries ucbridge created'],
          ['delete', 'delete the entry'],
          ['leave', 'leave the entry'],
        ],
      },
      { key: 'object_classes', label: 'Object classes', type: 'list', placeholder: 'default: inetOrgPerson' },
      { key: 'timeout_secs', label: 'Timeout (seconds)', type: 'count', placeholder: 'default: 30' },
      { key: 'starttls', label: 'StartTLS on an ldap:// URL', type: 'check' },
    ],
    // "Re-Synchronize" beside the export drop-downs: the full LDAP re-sync job.
    resync: 'ldap_resync',
  },
  xmpp: {
    title: 'IM and Presence (XMPP chat)',
    url: 'xmpp://cup.example.com:5222',
    usernameLabel: 'Test account (optional; users log in with their own)',
    sso: false,
    fields: [
      { key: 'domain', label: 'XMPP domain', type: 'text', placeholder: 'cup.example.com' },
      {
        key: 'tls', label: 'Security', type: 'choice',
        choices: [['', 'default: STARTTLS (certificate verified)'], ['starttls', 'STARTTLS'], ['plain', 'plain (no TLS: passwords cross the network in clear)']],
      },
      { key: 'idle_timeout', label: 'Close a user\'s session after idle', type: 'text', placeholder: 'default: 30m' },
    ],
  },
};

// The voicemail sync options (GET/PUT /api/v1/voicemail: the `[voicemail]` table). Only
// the fields the admin fills in are saved; an empty one keeps the server's default
// (`fallback`, shown as the placeholder). `folders.*` are the three keys of `folders`.
const VOICEMAIL_GROUPS = [
  {
    title: 'Account matching',
    fields: [
      {
        key: 'cuc_id', label: 'Unity Connection ID', kind: 'choice', fallback: 'alias',
        hint: 'Which CUC value identifies an account.',
        choices: [
          ['alias', 'alias (User ID)'],
          ['alias_local_part', 'alias_local_part (alias before @)'],
          ['smtp_address', 'smtp_address (CUC\'s SMTP address)'],
          ['smtp_local_part', 'smtp_local_part (SMTP address before @)'],
          ['extension', 'extension (primary extension)'],
        ],
      },
      {
        key: 'local_id', label: 'Local ID', kind: 'choice', fallback: 'username',
        hint: 'The local value it must equal.',
        choices: [
          ['username', 'username'],
          ['any_alias', 'any_alias (any of the user\'s aliases)'],
          ['any_email', 'any_email (any of the user\'s e-mail addresses)'],
          ['alias_or_email', 'alias_or_email (e-mail if it has @, else alias)'],
        ],
      },
      {
        key: 'imap_user', label: 'IMAP login name', kind: 'choice', fallback: 'username',
        hint: 'Which local value logs in to the user\'s mailbox.',
        choices: [['username', 'username'], ['email', 'email']],
      },
    ],
  },
  {
    title: 'IMAP folders',
    hint: '"/" separates levels. Used to create a folder only: once created, it is found wherever the user moves it. '
      + 'Setting one folder saves all three (an empty one gets its default).',
    fields: [
      { key: 'folders.inbox', label: 'Inbox', kind: 'text', fallback: 'Voicemail' },
      { key: 'folders.sent', label: 'Sent', kind: 'text', fallback: 'Voicemail/Sent' },
      { key: 'folders.deleted', label: 'Deleted', kind: 'text', fallback: 'Voicemail/Deleted' },
    ],
  },
  {
    title: 'Timing',
    hint: 'Durations such as 30s, 15m or 1h 30m.',
    fields: [
      { key: 'debounce', label: 'Debounce', kind: 'text', fallback: '5s', hint: 'After an IMAP change, wait this long, so several actions make one sync.' },
      { key: 'imap_poll_every', label: 'IMAP poll interval', kind: 'text', fallback: '30s', hint: 'How often the IMAP folders are checked for changes.' },
      { key: 'reconcile_every', label: 'Full reconcile every', kind: 'text', fallback: '15m', hint: 'Catches anything push and polling missed.' },
      { key: 'push_silence_limit', label: 'Push silence limit', kind: 'text', fallback: '10m', hint: 'Re-subscribe when CUC has sent nothing this long; 0s turns it off.' },
      { key: 'concurrency', label: 'Concurrency', kind: 'count', fallback: '8', hint: 'Accounts synced at once (at least 1).' },
      { key: 'full_read_every', label: 'Full read every', kind: 'text', fallback: '6h', hint: 'A reconcile reads an unchanged account in full at least this often; 0s = never skip.' },
      { key: 'push_trust_window', label: 'Trust IMAP push for', kind: 'text', fallback: '1h', hint: 'How long a reconcile may rely on Dovecot\'s push instead of logging in.' },
      {
        key: 'imap_idle', label: 'IMAP IDLE', kind: 'choice', fallback: 'auto',
        hint: 'Watch voicemail inboxes with IMAP IDLE; auto: only when no push token is set.',
        choices: [['auto', 'auto'], ['on', 'on'], ['off', 'off']],
      },
      { key: 'imap_idle_connections', label: 'IDLE connections', kind: 'count', fallback: '100', hint: 'At most this many accounts watched by IDLE; the rest are polled (IMAP IDLE off: none).' },
      { key: 'imap_idle_renew', label: 'Renew IDLE every', kind: 'text', fallback: '10m', hint: 'Between 10s and 29m (RFC 2177).' },
    ],
  },
  {
    title: 'Mail',
    fields: [
      {
        key: 'attachment_format', label: 'Attachment', kind: 'choice', fallback: 'mp3',
        hint: 'What each voicemail mail carries (per-user exceptions: attachment_format_by_user).',
        choices: [['mp3', 'mp3 (plays everywhere)'], ['wav', 'wav (as CUC stores it)'], ['both', 'both']],
      },
      {
        key: 'trust_imap_push', label: 'Trust IMAP push', kind: 'boolean',
        unset: 'not set: true (with a push token)',
        choices: [['true', 'true: no IMAP login for unchanged accounts'], ['false', 'false: every reconcile logs in']],
      },
    ],
  },
  {
    title: 'Unity Connection',
    fields: [
      {
        key: 'hard_delete', label: 'Deleting on IMAP', kind: 'boolean',
        unset: 'not set: CUC\'s class of service decides',
        choices: [['true', 'true: deletes on CUC for good'], ['false', 'false: moves to CUC\'s Deleted Items']],
      },
      { key: 'callback_url', label: 'Callback URL', kind: 'text', fallback: '[server] public_url + /callbacks/cuc', hint: 'Where CUC\'s Notifier posts its events (HTTP only before CUC 12.5(1)SU3).' },
      { key: 'sender_domain', label: 'Sender domain', kind: 'text', fallback: 'voicemail.invalid', hint: 'Domain of the synthetic sender addresses (callers have numbers).' },
    ],
  },
];
const VOICEMAIL_FIELDS = VOICEMAIL_GROUPS.flatMap((g) => g.fields);

// The snapshot fields a source may supply when user sync merges several sources
// (`[directory_sync] source_fields`): ucbridge_sync::merged::MERGED_FIELDS, in its order
// (a server test, crates/server/tests/it/rules_sources.rs, checks that the two agree).
const MERGED_FIELDS = [
  'first_name', 'middle_name', 'last_name', 'display_name', 'mailid', 'telephone_number',
  'primary_extension', 'department', 'manager', 'title', 'mobile_number', 'home_number',
  'pager_number', 'directory_uri', 'associated_devices',
];

const state = {
  csrf: null,
  username: null,
  role: null,
  view: null,
  statusTimer: null,
  statusBusy: false,
  // When the charts' data was last read (ms), so the 2 s status refresh reads it seldom.
  statsAt: 0,
  jobRows: new Map(),
  // The status view's directory sources, by name (kept like the job rows).
  sourceRows: new Map(),
  // The directory sources as the rules view last read them (GET /api/v1/sources).
  ruleSources: [],
  connections: new Map(),
  users: { q: '', offset: 0, total: 0 },
  // The voicemail options form: its inputs, stored keys it has no field for, unsaved edits.
  voicemail: null,
  selectedRun: null,
};

// --- small helpers -------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/**
 * Build an element. `attrs`: `class`, `text`, `dataset`, `on` (event handlers),
 * `attrs` (plain attributes); anything else is set as a property. Children: nodes,
 * strings (as text), arrays; null/undefined/false are skipped.
 */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'on') for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === 'attrs') for (const [a, v] of Object.entries(value)) { if (v !== null && v !== undefined) el.setAttribute(a, v); }
    else el[key] = value;
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children (skipping null/false, which replaceChildren would print). */
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function show(el, visible = true) {
  el.hidden = !visible;
}

/** Show `text` in an alert element (`kind`: ok, error, info, warning); empty text hides it. */
function say(el, kind, text) {
  el.classList.remove('alert-ok', 'alert-error', 'alert-info', 'alert-warning');
  if (!text) {
    el.textContent = '';
    show(el, false);
    return;
  }
  el.classList.add('alert', `alert-${kind}`);
  el.textContent = text;
  show(el, true);
}

function pad(n) {
  return String(n).padStart(2, '0');
}

/** Epoch milliseconds as local `YYYY-MM-DD HH:MM:SS`. */
function fmtTime(ms) {
  if (ms === null || ms === undefined) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtDuration(ms) {
  if (ms === null || ms === undefined || ms < 0) return '–';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${Number.isInteger(s) || s >= 10 ? Math.round(s) : s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function fmtRelative(ms) {
  if (ms === null || ms === undefined) return '';
  const delta = ms - Date.now();
  if (Math.abs(delta) < 1000) return 'just now';
  // Whole seconds: a relative time is a rough guide, the absolute one is next to it.
  const words = fmtDuration(Math.round(Math.abs(delta) / 1000) * 1000);
  return delta < 0 ? `${words} ago` : `in ${words}`;
}

/** A <time> element with the local time and, in its tooltip, the UTC instant. */
function timeEl(ms, { relative = false, testid } = {}) {
  if (ms === null || ms === undefined) return h('span', { class: 'muted', text: 'never', dataset: testid ? { testid } : undefined });
  const d = new Date(ms);
  return h('time', {
    attrs: { datetime: d.toISOString() },
    title: d.toISOString(),
    dataset: testid ? { testid } : undefined,
    text: relative ? `${fmtTime(ms)} (${fmtRelative(ms)})` : fmtTime(ms),
  });
}

function fmtNumber(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : String(n ?? '–');
}

const BADGES = {
  ok: ['succeeded', 'applied', 'idle', 'admin', 'sso', 'state_in_service', 'completed', 'in_service', 'enabled', 'configured'],
  busy: ['running', 'refreshing', 'requested', 'planned', 'in_progress', 'continuous'],
  warn: ['refused', 'blocked', 'read_only', 'non_sso', 'not_started', 'disabled'],
  bad: ['failed', 'abandoned', 'error', 'not_configured'],
};

function badgeClass(value) {
  const key = String(value ?? '').toLowerCase();
  for (const [kind, words] of Object.entries(BADGES)) {
    if (words.includes(key)) return `badge badge-${kind}`;
  }
  if (/fail|error/.test(key)) return 'badge badge-bad';
  return 'badge';
}

function setBadge(el, value, label) {
  el.className = badgeClass(value);
  el.textContent = label ?? String(value ?? '–').replaceAll('_', ' ');
}

function badge(value, label) {
  const el = h('span');
  setBadge(el, value, label);
  return el;
}

/** Render any JSON value readably: objects as key/value tables, arrays as lists. */
function renderValue(value, key = '') {
  if (value === null || value === undefined) return h('span', { class: 'muted', text: '–' });
  if (typeof value === 'number' && /(_at|_time)$/.test(key) && value > 1e11) return timeEl(value);
  if (typeof value === 'boolean') return document.createTextNode(value ? 'yes' : 'no');
  if (typeof value !== 'object') return document.createTextNode(String(value));
  if (Array.isArray(value)) {
    if (value.length === 0) return h('span', { class: 'muted', text: 'none' });
    if (value.every((v) => v === null || typeof v !== 'object')) return document.createTextNode(value.join(', '));
    return h('ol', { class: 'plain-list' }, value.map((v) => h('li', {}, renderValue(v))));
  }
  return kvTable(value);
}

function kvTable(object, testidPrefix) {
  const rows = Object.entries(object).map(([k, v]) => h('tr', {},
    h('th', { text: k.replaceAll('_', ' ') }),
    h('td', { dataset: testidPrefix ? { testid: `${testidPrefix}-${k}` } : undefined }, renderValue(v, k))));
  return h('table', { class: 'kv' }, h('tbody', {}, rows));
}

// --- API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && state.csrf) headers['X-CSRF-Token'] = state.csrf;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', `The server cannot be reached (${e.message}).`);
  }
  const text = response.status === 204 ? '' : await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const detail = data && data.error;
    // Body-parsing rejections come as plain text rather than the JSON error shape.
    const message = (detail && detail.message) || text.trim() || `HTTP ${response.status} ${response.statusText}`;
    const error = new ApiError(response.status, (detail && detail.code) || `http_${response.status}`, message);
    if (response.status === 401 && path !== '/api/v1/session') sessionLost(message);
    throw error;
  }
  return data;
}

/** Run `fn`, showing its error message in `el` (and disabling `button` meanwhile). */
async function guarded(el, fn, button) {
  if (button) button.disabled = true;
  try {
    return await fn();
  } catch (e) {
    if (el) say(el, 'error', e.message);
    else console.warn(e);
    return undefined;
  } finally {
    if (button && !button.dataset.keepDisabled) button.disabled = false;
  }
}

// --- session ---------------------------------------------------------------------------

function isAdmin() {
  return state.role === 'admin';
}

function enterSession(session) {
  // An end user gets the user page (user.js), nothing of the admin views.
  if (session.role === 'user') return window.ucbUser.enter(session);
  state.csrf = session.csrf_token || null;
  state.username = session.username;
  state.role = session.role;
  $('whoami').textContent = session.username;
  setBadge($('role'), session.role, session.role === 'read_only' ? 'read-only' : session.role);
  document.body.classList.toggle('read-only', !isAdmin());
  show($('readonly-banner'), !isAdmin());
  show($('view-login'), false);
  show($('nav'), true);
  show($('session'), true);
  for (const el of document.querySelectorAll('.admin-only')) show(el, isAdmin());
  applyRole(document);
  route();
}

/** Disable write controls for read-only callers (the server refuses them anyway). */
function applyRole(root) {
  const readOnly = !isAdmin();
  for (const el of root.querySelectorAll('.write, .write-field')) el.disabled = readOnly;
  for (const el of root.querySelectorAll('textarea.code')) el.readOnly = readOnly;
}

function leaveSession(message) {
  window.ucbUser?.leave();
  state.csrf = null;
  state.username = null;
  state.role = null;
  stopStatusPolling();
  state.jobRows.clear();
  $('jobs-table').tBodies[0].replaceChildren();
  state.sourceRows.clear();
  $('sources-table').tBodies[0].replaceChildren();
  state.ruleSources = [];
  // Nothing of the previous account's view survives (the next one may have another role).
  state.connections.clear();
  $('connections').replaceChildren();
  state.voicemail = null;
  $('voicemail-form').replaceChildren();
  say($('voicemail-error'), 'error', '');
  $('token-value').value = '';
  show($('token-created'), false);
  closeUser();
  show($('run-detail'), false);
  state.selectedRun = null;
  state.view = null;
  document.body.classList.remove('read-only');
  for (const view of document.querySelectorAll('.view')) show(view, false);
  show($('readonly-banner'), false);
  show($('nav'), false);
  show($('session'), false);
  show($('view-login'), true);
  say($('login-error'), 'error', message || '');
  $('login-password').value = '';
  $('login-password').focus();
}

function sessionLost(message) {
  if (state.username) leaveSession(message || 'Your session ended; sign in again.');
}

async function boot() {
  try {
    const session = await api('GET', '/api/v1/session');
    enterSession(session);
  } catch (e) {
    leaveSession(e.status === 401 ? '' : e.message);
  } finally {
    document.body.classList.remove('booting');
  }
}

async function login(event) {
  event.preventDefault();
  const button = $('login-submit');
  say($('login-error'), 'error', '');
  button.disabled = true;
  try {
    const endUser = $('login-kind-user')?.checked;
    const session = await api('POST', endUser ? '/api/v1/me/session' : '/api/v1/session', {
      username: $('login-username').value.trim(),
      password: $('login-password').value,
    });
    $('login-password').value = '';
    enterSession(session);
  } catch (e) {
    say($('login-error'), 'error', e.status === 401 ? `Sign-in failed: ${e.message}.` : e.message);
    $('login-password').select();
  } finally {
    button.disabled = false;
  }
}

async function logout() {
  try {
    await api('DELETE', '/api/v1/session');
  } catch (e) {
    // The session may already be gone; the page forgets it either way.
    console.warn(e);
  }
  leaveSession('');
  window.location.hash = '';
}

// --- routing -------------------------------------------------------------------------

const VIEWS = {
  status: { enter: enterStatus, leave: stopStatusPolling },
  connections: { enter: loadConnections },
  rules: { enter: loadRulesView },
  runs: { enter: loadRuns },
  users: { enter: enterUsers },
  sso: { enter: loadSso },
  tokens: { enter: loadTokens, adminOnly: true },
};

function route() {
  if (!state.username || state.role === 'user') return;
  let name = window.location.hash.replace(/^#/, '') || 'status';
  if (!VIEWS[name] || (VIEWS[name].adminOnly && !isAdmin())) name = 'status';
  if (state.view && state.view !== name && VIEWS[state.view].leave) VIEWS[state.view].leave();
  state.view = name;
  for (const [key] of Object.entries(VIEWS)) show($(`view-${key}`), key === name);
  for (const link of document.querySelectorAll('#nav a')) {
    link.classList.toggle('active', link.dataset.view === name);
    if (link.dataset.view === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  VIEWS[name].enter();
}

// --- status ------------------------------------------------------------------------------

function enterStatus() {
  stopStatusPolling();
  state.statsAt = 0;
  refreshStatus();
}

function stopStatusPolling() {
  clearTimeout(state.statusTimer);
  state.statusTimer = null;
}

function scheduleStatus() {
  stopStatusPolling();
  if (state.view !== 'status' || !state.username) return;
  state.statusTimer = setTimeout(refreshStatus, state.statusBusy ? STATUS_BUSY_EVERY_MS : STATUS_EVERY_MS);
}

async function refreshStatus() {
  try {
    const status = await api('GET', '/api/v1/status');
    if (state.view !== 'status') return;
    renderStatus(status);
    renderSources(await api('GET', '/api/v1/sources'), status.jobs);
    say($('status-error'), 'error', '');
    $('status-refreshed').textContent = `Updated ${fmtTime(Date.now())}`;
  } catch (e) {
    if (e.status !== 401) say($('status-error'), 'error', `Cannot read the status: ${e.message}`);
  } finally {
    scheduleStatus();
  }
}

function renderStatus(status) {
  const snap = status.snapshot || {};
  $('data-source-type').textContent = status.data_source_type;
  setBadge($('snapshot-state'), snap.state);
  $('snapshot-reason').textContent = snap.reason ? `Last refresh failed: ${snap.reason}` : '';
  $('source-updated-at').replaceChildren(timeEl(snap.source_updated_at));
  $('last-full-refresh').textContent = [
    snap.source_updated_at ? fmtRelative(snap.source_updated_at) : null,
    snap.last_full_refresh_at ? `last full refresh ${fmtTime(snap.last_full_refresh_at)}` : 'no full refresh yet',
  ].filter(Boolean).join(' · ');
  $('snapshot-users').textContent = fmtNumber(snap.users_count);
  $('status-node').textContent = `Answered by node ${status.node}`;
  say($('snapshot-warning'), 'warning', status.warning || '');

  const run = status.last_user_sync;
  show($('last-sync-none'), !run);
  show($('last-sync'), Boolean(run));
  if (run) {
    setBadge($('last-sync-status'), run.status, run.dry_run ? `${run.status} (dry run)` : run.status);
    $('last-sync-when').textContent = run.finished_at
      ? `finished ${fmtTime(run.finished_at)} (${fmtRelative(run.finished_at)}), took ${fmtDuration(run.finished_at - run.started_at)}`
      : `started ${fmtTime(run.started_at)}`;
    for (const key of ['creates', 'updates', 'disables', 'deletes', 'errors']) {
      $(`last-sync-${key}`).textContent = fmtNumber(run.summary ? run.summary[key] : 0);
    }
    say($('last-sync-message'), run.status === 'failed' ? 'error' : 'info', run.message || '');
  }

  const jobs = status.jobs || [];
  renderJobs(jobs);
  const wasBusy = state.statusBusy;
  state.statusBusy = jobs.some((j) => j.run_requested_at || (j.last_run && j.last_run.status === 'running'));
  // A run just finished: its bar belongs on the charts now.
  refreshStats(wasBusy && !state.statusBusy);
}

/**
 * The directory sources: state (with the failure's reason), users, updated at, problems
 * and Run now (a full refresh). Rows are kept and updated in place, like the jobs', so a
 * button and its message survive the 2 s refresh. `jobs`: the status's jobs, which say
 * whether a source's refresh is requested or running.
 */
function renderSources(sources, jobs) {
  const tbody = $('sources-table').tBodies[0];
  const seen = new Set();
  for (const source of sources || []) {
    seen.add(source.name);
    let row = state.sourceRows.get(source.name);
    if (!row) {
      row = createSourceRow(source.name);
      state.sourceRows.set(source.name, row);
      tbody.append(row.tr);
      applyRole(row.tr);
    }
    updateSourceRow(row, source, (jobs || []).find((j) => j.job === source.job));
  }
  for (const [name, row] of state.sourceRows) {
    if (!seen.has(name)) {
      row.tr.remove();
      state.sourceRows.delete(name);
    }
  }
}

function createSourceRow(name) {
  const row = {
    name: h('div', { text: name }),
    job: h('code', { class: 'muted small' }),
    kind: h('td'),
    state: h('span', { dataset: { testid: `source-state-${name}` } }),
    reason: h('div', { class: 'small text-error', dataset: { testid: `source-reason-${name}` } }),
    users: h('td', { dataset: { testid: `source-users-${name}` } }),
    updated: h('td'),
    problems: h('td', { class: 'col-wide small' }),
    msg: h('div', { class: 'small', dataset: { testid: `source-run-msg-${name}` }, attrs: { role: 'status' } }),
    button: h('button', { type: 'button', class: 'write', text: 'Run now', dataset: { testid: `source-run-${name}` } }),
  };
  row.button.addEventListener('click', () => refreshSource(name, row));
  row.tr = h('tr', { dataset: { testid: `source-${name}` } },
    h('td', {}, row.name, row.job),
    row.kind,
    h('td', {}, row.state, row.reason),
    row.users,
    row.updated,
    row.problems,
    h('td', { class: 'actions-cell' }, row.button, row.msg));
  return row;
}

function updateSourceRow(row, s, job) {
  row.job.textContent = s.job || '';
  row.kind.textContent = s.cluster && s.cluster !== s.name ? `${s.kind} (cluster ${s.cluster})` : s.kind;
  setBadge(row.state, s.state);
  row.reason.textContent = s.reason || '';
  row.users.textContent = fmtNumber(s.users_count);
  row.updated.replaceChildren(s.source_updated_at ? timeEl(s.source_updated_at) : h('span', { class: 'muted', text: '–' }));
  fill(row.problems, s.problem_count
    ? [`${fmtNumber(s.problem_count)}: `, (s.problems || []).map((p) => `${p.entry}: ${p.message}`).join('; ')]
    : h('span', { class: 'muted', text: 'none' }));
  const requested = Boolean(job && job.run_requested_at);
  const running = Boolean(job && job.last_run && job.last_run.status === 'running');
  if (!requested && !running && row.msg.textContent === 'Requested') row.msg.textContent = '';
  row.button.disabled = !isAdmin() || !s.job || requested || running || s.state === 'refreshing';
  row.button.title = !s.job
    ? `Not in this server's configuration: refresh it with \`ucbridge sync refresh --source ${s.name}\``
    : (s.state === 'refreshing' ? 'A full refresh is running' : `Full refresh now (job ${s.job})`);
}

async function refreshSource(name, row) {
  row.msg.textContent = '';
  row.msg.className = 'small';
  row.button.disabled = true;
  try {
    await api('POST', `/api/v1/sources/${encodeURIComponent(name)}/refresh`);
    row.msg.textContent = 'Requested';
    state.statusBusy = true;
  } catch (e) {
    row.msg.textContent = e.message;
    row.msg.className = 'small text-error';
  }
  await refreshStatus();
}

/** Job rows are kept and updated in place so that buttons survive the 2 s refresh. */
function renderJobs(jobs) {
  const tbody = $('jobs-table').tBodies[0];
  const seen = new Set();
  for (const job of jobs) {
    seen.add(job.job);
    let row = state.jobRows.get(job.job);
    if (!row) {
      row = createJobRow(job.job);
      state.jobRows.set(job.job, row);
      tbody.append(row.tr);
      applyRole(row.tr);
    }
    updateJobRow(row, job);
  }
  for (const [name, row] of state.jobRows) {
    if (!seen.has(name)) {
      row.tr.remove();
      state.jobRows.delete(name);
    }
  }
}

function createJobRow(name) {
  const row = {
    title: h('div', { class: 'job-title' }),
    name: h('code', { class: 'muted small', text: name }),
    mode: h('span'),
    schedule: h('span'),
    next: h('span'),
    holder: h('span'),
    status: h('span', { dataset: { testid: `job-status-${name}` } }),
    when: h('span', { class: 'muted small' }),
    progress: h('progress', { hidden: true, dataset: { testid: `progress-${name}` } }),
    progressText: h('span', { class: 'small', dataset: { testid: `progress-text-${name}` } }),
    result: h('div', { class: 'small', dataset: { testid: `result-${name}` } }),
    error: h('div', { class: 'small text-error', dataset: { testid: `error-${name}` } }),
    blocked: h('div', { class: 'small text-warning', dataset: { testid: `blocked-${name}` } }),
    msg: h('div', { class: 'small', dataset: { testid: `run-msg-${name}` }, attrs: { role: 'status' } }),
    button: h('button', { type: 'button', class: 'write', text: 'Run now', dataset: { testid: `run-${name}` } }),
  };
  row.button.addEventListener('click', () => runJob(name, row));
  row.tr = h('tr', { dataset: { job: name, testid: `job-${name}` } },
    h('td', {}, row.title, row.name),
    h('td', {}, row.mode),
    h('td', {}, row.schedule),
    h('td', {}, row.next),
    h('td', {}, row.holder),
    h('td', { class: 'col-wide' },
      h('div', { class: 'run-line' }, row.status, row.when),
      h('div', { class: 'progress-line' }, row.progress, row.progressText),
      row.result, row.error, row.blocked),
    h('td', { class: 'actions-cell' }, row.button, row.msg));
  return row;
}

function updateJobRow(row, job) {
  row.title.textContent = job.title;
  setBadge(row.mode, job.mode);
  row.schedule.textContent = job.mode === 'continuous'
    ? 'always running'
    : (job.schedule ? `${job.schedule}${job.enabled ? '' : ' (disabled)'}` : 'on request only');
  row.next.replaceChildren(job.next_run_at ? timeEl(job.next_run_at) : h('span', { class: 'muted', text: '–' }));
  row.holder.replaceChildren(job.holder
    ? h('span', { text: job.holder, title: job.lease_expires_at ? `lease until ${fmtTime(job.lease_expires_at)}` : '' })
    : h('span', { class: 'muted', text: 'none' }));

  const run = job.last_run;
  const requested = Boolean(job.run_requested_at);
  if (run) {
    setBadge(row.status, run.status);
    row.when.textContent = run.finished_at
      ? `${fmtTime(run.finished_at)} · ${fmtDuration(run.finished_at - run.started_at)} · ${run.trigger}${run.requested_by ? ` by ${run.requested_by}` : ''} · node ${run.node}`
      : `since ${fmtTime(run.started_at)} · node ${run.node}`;
  } else if (job.mode === 'continuous' && job.holder) {
    // A continuous job has runs only for "Run now"; otherwise it simply runs.
    setBadge(row.status, 'running', 'running continuously');
    row.when.textContent = '';
  } else {
    setBadge(row.status, 'none', 'never run');
    row.when.textContent = '';
  }
  if (requested && (!run || run.status !== 'running')) setBadge(row.status, 'requested', 'run requested');

  // The run keeps its last progress after it ends, so a fast run still shows how far it got.
  const progress = run && run.progress;
  const counted = progress && typeof progress.total === 'number' && progress.total > 0;
  if (counted) {
    row.progress.max = progress.total;
    row.progress.value = Math.min(progress.done || 0, progress.total);
    row.progressText.textContent = `${progress.phase}: ${fmtNumber(progress.done)} / ${fmtNumber(progress.total)}`;
  } else if (progress) {
    // Unknown total: an indeterminate bar, and only while running.
    row.progress.removeAttribute('value');
    row.progressText.textContent = `${progress.phase}: ${fmtNumber(progress.done)}`;
  } else {
    row.progressText.textContent = '';
  }
  show(row.progress, Boolean(counted || (progress && run.status === 'running')));

  fill(row.result, describeResult(job.job, run && run.result));
  row.error.textContent = (run && run.error) || (job.here && job.here.last_error ? `Last error: ${job.here.last_error}` : '');
  row.blocked.textContent = job.here && job.here.blocked ? `Blocked: ${job.here.blocked}` : '';
  const running = run && run.status === 'running';
  // "Requested" is only news until the run shows up in the row.
  if (!requested && !running && row.msg.textContent === 'Requested') row.msg.textContent = '';
  row.button.disabled = !isAdmin() || requested || running || Boolean(job.here && job.here.blocked);
  row.button.title = job.here && job.here.blocked ? job.here.blocked : '';
}

/** A short human description of a run's result, for the known job shapes. */
function describeResult(name, result) {
  if (!result || typeof result !== 'object') return [];
  if (result.summary && typeof result.summary === 'object' && 'creates' in result.summary) {
    const s = result.summary;
    return [
      h('span', { text: `User sync ${result.status || ''}: ` }),
      h('strong', { dataset: { testid: `result-${name}-creates` }, text: `created ${fmtNumber(s.creates)}` }),
      `, updated ${fmtNumber(s.updates)}, disabled ${fmtNumber(s.disables)}, deleted ${fmtNumber(s.deletes)}, problems ${fmtNumber(s.errors)}`,
      result.sync_run_id ? h('a', { href: '#runs', class: 'link-quiet', text: ` (run #${result.sync_run_id})`, on: { click: () => { state.selectedRun = result.sync_run_id; } } }) : null,
    ];
  }
  if (result.swap && typeof result.swap === 'object') {
    const s = result.swap;
    return [
      h('span', { dataset: { testid: `result-${name}-total` }, text: `Snapshot of ${fmtNumber(s.total)} users` }),
      `: ${fmtNumber(s.added)} added, ${fmtNumber(s.updated)} updated, ${fmtNumber(s.removed)} removed`,
      result.pages !== undefined ? `, ${fmtNumber(result.pages)} ${result.pages === 1 ? 'page' : 'pages'}` : '',
      result.duration_ms !== undefined ? `, ${fmtDuration(result.duration_ms)}` : '',
    ];
  }
  if ('outcomes' in result && 'users' in result) {
    const parts = Object.entries(result.outcomes || {}).map(([k, v]) => `${k} ${fmtNumber(v)}`);
    return [`${fmtNumber(result.users)} users: ${parts.join(', ') || 'nothing to do'}`];
  }
  const scalars = Object.entries(result).filter(([, v]) => v === null || typeof v !== 'object');
  return [scalars.map(([k, v]) => `${k.replaceAll('_', ' ')}: ${v}`).join(', ')];
}

async function runJob(name, row) {
  row.msg.textContent = '';
  row.msg.className = 'small';
  row.button.disabled = true;
  try {
    await api('POST', `/api/v1/jobs/${encodeURIComponent(name)}/run`);
    row.msg.textContent = 'Requested';
    state.statusBusy = true;
  } catch (e) {
    row.msg.textContent = e.message;
    row.msg.className = 'small text-error';
  }
  await refreshStatus();
}

// --- charts (status view): small SVG bar charts of the last runs and of this node's minutes

const STATS_EVERY_MS = 30000;
const SVG_NS = 'http://www.w3.org/2000/svg';
const CHART_W = 320;
const CHART_H = 96;
const CHART_TOP = 14;
const CHART_BOTTOM = 14;
/** Stacked series of the "changes per run" chart: key, label, CSS class. */
const CHANGE_SERIES = [
  ['creates', 'created', 'series-1'],
  ['updates', 'updated', 'series-2'],
  ['disables', 'disabled', 'series-3'],
  ['deletes', 'deleted', 'series-4'],
];

function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === 'text') el.textContent = value;
    else if (value !== null && value !== undefined) el.setAttribute(key, value);
  }
  for (const child of children.flat()) if (child) el.append(child);
  return el;
}

/**
 * A bar chart: one bar per point, split into stacked `segments` ({value, cls}), with a
 * tooltip per bar, the largest value on the axis, `title` and a one-sentence text
 * alternative (`summary`) for screen readers and for those who would rather read.
 */
function barChart(id, title, points, summary, formatMax) {
  const n = Math.max(points.length, 1);
  const max = Math.max(0, ...points.map((p) => p.segments.reduce((s, x) => s + x.value, 0)));
  const plotH = CHART_H - CHART_TOP - CHART_BOTTOM;
  const step = CHART_W / n;
  const barW = Math.max(1, Math.min(24, step * 0.7));
  const bars = points.map((p, i) => {
    let y = CHART_H - CHART_BOTTOM;
    const rects = p.segments.map((s) => {
      const hgt = max > 0 ? (s.value / max) * plotH : 0;
      y -= hgt;
      return svg('rect', { x: (i * step + (step - barW) / 2).toFixed(1), y: y.toFixed(1), width: barW.toFixed(1), height: Math.max(hgt, s.value > 0 ? 1 : 0).toFixed(1), class: s.cls });
    });
    return svg('g', { class: 'bar', 'data-testid': 'chart-bar' }, svg('title', { text: p.tip }), rects);
  });
  const titleId = `${id}-title`;
  const descId = `${id}-desc`;
  const graphic = svg('svg', {
    viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: 'img', class: 'chart-svg',
    'aria-labelledby': `${titleId} ${descId}`,
  },
  svg('title', { id: titleId, text: title }),
  svg('desc', { id: descId, text: summary }),
  svg('line', { x1: 0, y1: CHART_H - CHART_BOTTOM, x2: CHART_W, y2: CHART_H - CHART_BOTTOM, class: 'chart-axis' }),
  svg('text', { x: 0, y: 10, class: 'chart-label', text: max > 0 ? `max ${formatMax(max)}` : '' }),
  svg('text', { x: CHART_W, y: CHART_H - 2, class: 'chart-label', 'text-anchor': 'end', text: points.length ? 'newest' : '' }),
  bars);
  const figure = $(id);
  fill(figure,
    h('figcaption', { text: title }),
    points.length ? graphic : null,
    h('p', { class: 'chart-summary small muted', dataset: { testid: `${id}-summary` }, text: summary }));
  figure.dataset.points = String(points.length);
}

function statusClass(status) {
  if (['succeeded', 'applied', 'planned'].includes(status)) return 'series-1';
  return status === 'refused' ? 'series-3' : 'series-bad';
}

function plural(n, word) {
  return `${fmtNumber(n)} ${word}${n === 1 ? '' : 's'}`;
}

function median(values) {
  if (!values.length) return 0;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function durationChart(id, title, runs, what) {
  const points = runs.map((r) => ({
    segments: [{ value: r.duration_ms, cls: statusClass(r.status) }],
    tip: `${what} #${r.id}, ${fmtTime(r.started_at)}: ${fmtDuration(r.duration_ms)}, ${r.status}${r.dry_run ? ' (dry run)' : ''}`,
  }));
  const last = runs[runs.length - 1];
  const summary = runs.length
    ? `${plural(runs.length, what)}: latest ${fmtDuration(last.duration_ms)} (${last.status}), median ${fmtDuration(median(runs.map((r) => r.duration_ms)))}, longest ${fmtDuration(Math.max(...runs.map((r) => r.duration_ms)))}.`
    : `No finished ${what} in the window yet.`;
  barChart(id, title, points, summary, fmtDuration);
}

function changesChart(runs) {
  const total = (r) => CHANGE_SERIES.reduce((s, [key]) => s + r[key], 0);
  const points = runs.map((r) => ({
    segments: CHANGE_SERIES.map(([key, , cls]) => ({ value: r[key], cls })),
    tip: `sync run #${r.id}${r.dry_run ? ' (dry run)' : ''}: ${CHANGE_SERIES.map(([key, label]) => `${fmtNumber(r[key])} ${label}`).join(', ')}`,
  }));
  const last = runs[runs.length - 1];
  const summary = runs.length
    ? `${plural(runs.length, 'sync run')}, ${fmtNumber(runs.reduce((s, r) => s + total(r), 0))} changes in all; latest run: ${CHANGE_SERIES.map(([key, label]) => `${fmtNumber(last[key])} ${label}`).join(', ')}.`
    : 'No finished sync run in the window yet.';
  barChart('chart-sync-changes', 'Changes per sync run', points, summary, fmtNumber);
}

function minuteChart(id, title, minutes, key, what) {
  const points = minutes.map((m) => ({
    segments: [{ value: m[key], cls: key === 'axl_throttled' ? 'series-bad' : 'series-2' }],
    tip: `${m.partial ? 'this minute so far' : `minute to ${fmtTime(m.at)}`}: ${fmtNumber(m[key])} ${what}`,
  }));
  const sum = minutes.reduce((s, m) => s + m[key], 0);
  const summary = minutes.length
    ? `${fmtNumber(sum)} ${what} in the last ${plural(minutes.length, 'minute')} on this node, at most ${fmtNumber(Math.max(...minutes.map((m) => m[key])))} in one minute.`
    : 'No minutes sampled on this node yet.';
  barChart(id, title, points, summary, fmtNumber);
}

function lagChart(minutes) {
  const measured = minutes.filter((m) => m.voicemail_lag_ms !== null && m.voicemail_lag_ms !== undefined);
  const points = measured.map((m) => ({
    segments: [{ value: m.voicemail_lag_ms, cls: 'series-2' }],
    tip: `${m.partial ? 'this minute so far' : `minute to ${fmtTime(m.at)}`}: ${fmtNumber(m.voicemail_events)} voicemails, mean lag ${fmtDuration(m.voicemail_lag_ms)}`,
  }));
  const summary = measured.length
    ? `Mean CUC → IMAP lag per minute on this node: latest ${fmtDuration(measured[measured.length - 1].voicemail_lag_ms)}, highest ${fmtDuration(Math.max(...measured.map((m) => m.voicemail_lag_ms)))}.`
    : 'No voicemail delivered to IMAP on this node since its start.';
  barChart('chart-voicemail-lag', 'Voicemail push latency (mean per minute)', points, summary, fmtDuration);
}

function renderStats(stats) {
  durationChart('chart-sync-duration', 'User sync duration', stats.sync_runs, 'sync run');
  changesChart(stats.sync_runs);
  durationChart('chart-snapshot', 'Snapshot full refresh time', stats.snapshot_runs, 'snapshot run');
  durationChart('chart-voicemail-runs', 'Voicemail sync (Run now) duration', stats.voicemail_runs, 'voicemail run');
  lagChart(stats.minutes.points);
  minuteChart('chart-axl-calls', 'AXL calls per minute', stats.minutes.points, 'axl_calls', 'AXL calls');
  minuteChart('chart-axl-throttled', 'AXL throttles per minute', stats.minutes.points, 'axl_throttled', 'AXL throttles');
  $('charts-note').textContent = `Runs since ${fmtTime(stats.since)} (at most ${stats.runs_limit} per chart); per-minute charts from node ${stats.minutes.node} only.`;
}

/** Read the chart data when due (every 30 s, and as soon as a run has finished). */
async function refreshStats(force) {
  if (!force && state.statsAt && Date.now() - state.statsAt < STATS_EVERY_MS) return;
  state.statsAt = Date.now();
  try {
    const stats = await api('GET', '/api/v1/stats');
    if (state.view !== 'status') return;
    renderStats(stats);
    say($('charts-error'), 'error', '');
  } catch (e) {
    if (e.status !== 401) say($('charts-error'), 'error', `Cannot read the chart data: ${e.message}`);
  }
}

// --- connections ---------------------------------------------------------------------

async function loadConnections() {
  say($('connections-error'), 'error', '');
  const views = await guarded($('connections-error'), () => api('GET', '/api/v1/connections'));
  if (!views) return;
  const container = $('connections');
  // Keep cards the user is editing; (re)build the others.
  for (const view of views) {
    const existing = state.connections.get(view.kind);
    if (existing && existing.dirty) continue;
    const card = buildConnectionCard(view);
    if (existing) existing.el.replaceWith(card.el);
    else container.append(card.el);
    state.connections.set(view.kind, card);
  }
}

function field(id, label, input, hint) {
  return h('div', { class: 'field' },
    h('label', { attrs: { for: id }, text: label }),
    input,
    hint ? h('div', { class: 'hint', text: hint }) : null);
}

function buildConnectionCard(view) {
  const kind = view.kind;
  const info = CONNECTION_INFO[kind] || { title: kind, url: '', sso: false, fields: [] };
  const s = view.settings || { url: '', username: '', auth: 'basic', ca_pem: null, insecure_skip_tls_verify: false, options: {} };
  const id = (name) => `conn-${kind}-${name}`;
  const card = { kind, dirty: false, inputs: {} };
  const markDirty = () => {
    card.dirty = true;
    card.el.classList.add('dirty');
  };

  const url = h('input', { id: id('url'), class: 'write-field', value: s.url || '', placeholder: info.url, type: 'text', spellcheck: false });
  const username = h('input', { id: id('username'), class: 'write-field', value: s.username || '', autocomplete: 'off', spellcheck: false });
  const password = h('input', {
    id: id('password'), class: 'write-field', type: 'password', autocomplete: 'new-password',
    placeholder: view.password_set ? 'unchanged (leave empty to keep)' : 'not set',
  });
  const passwordState = h('span', {
    id: id('password-state'),
    class: view.password_set ? 'badge badge-ok' : 'badge',
    text: view.password_set ? 'password set' : 'no password',
    dataset: { testid: id('password-state') },
  });
  const clearPassword = h('input', { id: id('clear-password'), type: 'checkbox', class: 'write-field' });
  const auth = info.sso ? h('select', { id: id('auth'), class: 'write-field' },
    h('option', { value: 'basic', text: 'Basic (username and password)' }),
    h('option', { value: 'sso', text: 'SSO Bearer token from the identity service' })) : null;
  if (auth) auth.value = s.auth || 'basic';
  const ca = h('textarea', {
    id: id('ca'), class: 'code write-field', rows: 4, spellcheck: false, value: s.ca_pem || '',
    placeholder: '-----BEGIN CERTIFICATE-----\n(optional: extra CA certificates to trust, PEM)',
  });
  const caFile = h('input', { id: id('ca-file'), type: 'file', class: 'write-field', accept: '.pem,.crt,.cer,text/plain' });
  caFile.addEventListener('change', async () => {
    const file = caFile.files && caFile.files[0];
    if (file) {
      ca.value = await file.text();
      markDirty();
    }
  });
  const insecure = h('input', { id: id('insecure'), type: 'checkbox', class: 'write-field', checked: Boolean(s.insecure_skip_tls_verify) });

  const optionInputs = {};
  const optionFields = { main: [], export: [] };
  for (const f of info.fields) {
    const { input, el } = optionField(f, (s.options || {})[f.key], id(`opt-${f.key}`));
    optionInputs[f.key] = { field: f, input };
    optionFields[f.group === 'export' ? 'export' : 'main'].push(el);
  }
  const resync = info.resync ? h('button', {
    type: 'button', id: id('resync'), class: 'write', text: 'Re-Synchronize', dataset: { testid: id('resync') }, hidden: !view.configured,
    title: 'Export every user again now, rewriting each entry (the LDAP re-sync job)',
  }) : null;
  const resyncStatus = info.resync ? h('span', { id: id('resync-status'), class: 'small muted', dataset: { testid: id('resync-status') } }) : null;

  const msg = h('p', { id: id('msg'), class: 'alert', hidden: true, attrs: { role: 'status' }, dataset: { testid: id('msg') } });
  const result = h('div', { id: id('result'), class: 'test-result', hidden: true, dataset: { testid: id('result') } });
  const save = h('button', { type: 'submit', id: id('save'), class: 'button-primary write', text: 'Save', dataset: { testid: id('save') } });
  const test = h('button', { type: 'button', id: id('test'), class: 'write', text: 'Test connection', dataset: { testid: id('test') } });
  const remove = h('button', { type: 'button', id: id('delete'), class: 'button-danger write', text: 'Remove', hidden: !view.configured });

  const form = h('form', { class: 'conn-form', autocomplete: 'off' },
    h('div', { class: 'form-grid' },
      field(id('url'), 'URL', url),
      field(id('username'), info.usernameLabel || 'Username', username),
      h('div', { class: 'field' },
        h('label', { attrs: { for: id('password') } }, 'Password ', passwordState),
        password,
        view.password_set ? h('label', { class: 'check small' }, clearPassword, ' remove the stored password') : null),
      auth ? field(id('auth'), 'Authentication', auth) : null,
      optionFields.main),
    optionFields.export.length
      ? h('div', { class: 'export-row', dataset: { testid: id('export-row') } }, optionFields.export, h('div', { class: 'field' }, resync, resyncStatus))
      : null,
    h('details', { class: 'tls', id: id('tls'), open: Boolean(s.ca_pem) || Boolean(s.insecure_skip_tls_verify) },
      h('summary', { text: 'TLS', dataset: { testid: id('tls') } }),
      field(id('ca'), 'CA certificates (PEM)', ca),
      h('div', { class: 'field' }, caFile),
      h('label', { class: 'check' }, insecure, ' Skip TLS verification (dangerous: only for throwaway labs)')),
    msg,
    h('div', { class: 'actions' }, save, test, remove),
    result);
  form.addEventListener('input', markDirty);
  form.addEventListener('change', markDirty);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    guarded(msg, () => saveConnection(card), save);
  });
  test.addEventListener('click', () => guarded(msg, () => testConnection(card), test));
  armConfirm(remove, 'Really remove?', () => guarded(msg, () => removeConnection(card), remove));
  if (resync) resync.addEventListener('click', () => guarded(msg, () => resynchronize(card, info.resync), resync));

  Object.assign(card.inputs, { url, username, password, clearPassword, auth, ca, insecure, optionInputs });
  Object.assign(card, { msg, result, test, save, resyncStatus });
  const updated = view.updated_at
    ? h('span', { class: 'muted small' }, 'saved ', timeEl(view.updated_at), view.updated_by ? ` by ${view.updated_by}` : '')
    : null;
  card.el = h('div', { class: 'card conn-card', id: id('card'), dataset: { testid: id('card'), kind } },
    h('div', { class: 'card-head' },
      h('h2', { text: info.title }),
      badge(view.configured ? 'configured' : 'not_configured', view.configured ? 'configured' : 'not configured'),
      updated),
    form);
  applyRole(card.el);
  // A stored connection the server cannot use as it is (e.g. an option key it does not
  // know): saving the form stores only the typed fields and fixes it.
  if (view.problem) say(msg, 'error', `${view.problem}. Saving this form replaces the stored options.`);
  return card;
}

/** One option's input, filled with its stored value, in its labelled field. */
function optionField(f, value, inputId) {
  const unset = value === undefined || value === null;
  let input;
  if (f.type === 'choice') {
    input = h('select', { id: inputId, class: 'write-field', dataset: { testid: inputId } },
      f.choices.map(([v, label]) => h('option', { value: v, text: label })));
    input.value = unset ? (f.fallback || '') : String(value);
  } else if (f.type === 'check') {
    input = h('input', { id: inputId, type: 'checkbox', class: 'write-field', checked: value === true, dataset: { testid: inputId } });
    return { input, el: h('label', { class: 'check field-check' }, input, ` ${f.label}`) };
  } else {
    const text = unset ? '' : (Array.isArray(value) ? value.join(', ') : String(value));
    input = h('input', {
      id: inputId, class: 'write-field', placeholder: f.placeholder || '', value: text, spellcheck: false,
      inputMode: f.type === 'count' ? 'numeric' : undefined, dataset: { testid: inputId },
    });
  }
  return { input, el: field(inputId, f.label, input, f.hint) };
}

/** The value an option input sends, or undefined for "not set". */
function optionValue(f, input) {
  if (f.type === 'check') return input.checked ? true : undefined;
  const text = input.value.trim();
  if (!text) return undefined;
  if (f.type === 'list') {
    const items = text.split(',').map((v) => v.trim()).filter(Boolean);
    return items.length ? items : undefined;
  }
  if (f.type === 'count') {
    if (!/^\d+$/.test(text) || Number(text) < 1) throw new Error(`${f.label} must be a whole number of at least 1.`);
    return Number(text);
  }
  return text;
}

/** A destructive button asks for a second click within a few seconds. */
function armConfirm(button, confirmText, action) {
  const original = button.textContent;
  let armed = null;
  button.addEventListener('click', () => {
    if (armed) {
      clearTimeout(armed);
      armed = null;
      button.textContent = original;
      action();
      return;
    }
    button.textContent = confirmText;
    armed = setTimeout(() => {
      armed = null;
      button.textContent = original;
    }, 4000);
  });
}

function connectionUpdate(card) {
  const i = card.inputs;
  const options = {};
  for (const [key, { field: f, input }] of Object.entries(i.optionInputs)) {
    const v = optionValue(f, input);
    if (v !== undefined) options[key] = v;
  }
  const update = {
    url: i.url.value.trim(),
    username: i.username.value.trim(),
    auth: i.auth ? i.auth.value : 'basic',
    ca_pem: i.ca.value.trim() ? i.ca.value.trim() + '\n' : null,
    insecure_skip_tls_verify: i.insecure.checked,
    options,
  };
  // Write-only password: absent keeps the stored one, "" removes it.
  if (i.clearPassword.checked) update.password = '';
  else if (i.password.value) update.password = i.password.value;
  return update;
}

async function saveConnection(card) {
  say(card.msg, 'info', '');
  const update = connectionUpdate(card);
  card.inputs.password.removeAttribute('aria-invalid');
  let views;
  try {
    views = await api('PUT', `/api/v1/connections/${card.kind}`, update);
  } catch (e) {
    // A stored password is only sent where it was saved for: a new host, port or scheme
    // needs it typed again. Point at the field; the message says why.
    if (e.code === 'password_required') {
      card.inputs.password.setAttribute('aria-invalid', 'true');
      card.inputs.password.focus();
    }
    throw e;
  }
  const view = views.find((v) => v.kind === card.kind);
  const fresh = buildConnectionCard(view);
  card.el.replaceWith(fresh.el);
  state.connections.set(card.kind, fresh);
  say(fresh.msg, 'ok', `Saved${view.password_set ? ' (password set)' : ''}. Jobs that use this connection pick it up within a few seconds.`);
  return fresh;
}

async function testConnection(card) {
  let current = card;
  if (card.dirty) current = await saveConnection(card);
  say(current.msg, 'info', 'Testing…');
  show(current.result, false);
  current.test.disabled = true;
  try {
    const report = await api('POST', `/api/v1/connections/${card.kind}/test`);
    say(current.msg, report.ok ? 'ok' : 'error', report.ok ? 'Connection OK.' : 'The test failed.');
    renderTestReport(current, report);
  } catch (e) {
    say(current.msg, 'error', `Test failed: ${e.message}`);
  } finally {
    current.test.disabled = false;
  }
}

function renderTestReport(card, report) {
  const id = (name) => `conn-${card.kind}-${name}`;
  const facts = [];
  if (report.account_count !== null && report.account_count !== undefined) {
    facts.push(h('span', {}, 'Accounts: ', h('strong', { dataset: { testid: id('account-count') }, text: fmtNumber(report.account_count) })));
  }
  if (report.message_count !== null && report.message_count !== undefined) {
    facts.push(h('span', {}, 'Messages: ', h('strong', { dataset: { testid: id('message-count') }, text: fmtNumber(report.message_count) })));
  }
  fill(card.result,
    h('p', { class: 'test-summary', dataset: { testid: id('summary') }, text: report.summary }),
    facts.length ? h('p', { class: 'facts' }, facts) : null,
    report.accounts && report.accounts.length
      ? h('div', {},
        h('div', { class: 'muted small', text: `First ${report.accounts.length} accounts:` }),
        h('ul', { class: 'accounts', dataset: { testid: id('accounts') } }, report.accounts.map((a) => h('li', { text: a }))))
      : null);
  show(card.result, true);
}

const RESYNC_POLL_MS = 700;
const RESYNC_POLLS = 200;

/**
 * "Re-Synchronize": save pending edits, request the job (POST /api/v1/jobs/{job}/run),
 * then follow its run on the card until it ends.
 */
async function resynchronize(card, job) {
  let current = card;
  if (card.dirty) current = await saveConnection(card);
  const before = await api('GET', `/api/v1/job-runs?job=${job}&limit=1`);
  const lastId = before.length ? before[0].id : 0;
  await api('POST', `/api/v1/jobs/${job}/run`);
  say(current.msg, 'info', 'Re-synchronization requested.');
  const status = current.resyncStatus;
  status.textContent = 'requested';
  for (let i = 0; i < RESYNC_POLLS; i += 1) {
    await new Promise((resolve) => setTimeout(resolve, RESYNC_POLL_MS));
    const [run] = await api('GET', `/api/v1/job-runs?job=${job}&limit=1`);
    if (!run || run.id === lastId) continue;
    status.textContent = run.status;
    if (run.finished_at === null || run.finished_at === undefined) continue;
    const counts = run.result && run.result.counts
      ? Object.entries(run.result.counts).filter(([, n]) => n).map(([k, n]) => `${n} ${k}`).join(', ')
      : '';
    if (run.status === 'succeeded') say(current.msg, 'ok', `Re-synchronized${counts ? `: ${counts}` : ''}.`);
    else say(current.msg, 'error', `Re-synchronization ${run.status}${run.error ? `: ${run.error}` : ''}`);
    return;
  }
  say(current.msg, 'warning', 'The re-synchronization has not finished yet; see Status.');
}

async function removeConnection(card) {
  await api('DELETE', `/api/v1/connections/${card.kind}`);
  card.dirty = false;
  await loadConnections();
  const fresh = state.connections.get(card.kind);
  if (fresh) say(fresh.msg, 'ok', 'Removed; jobs that need it stop.');
}

// --- rules, schedules, provisioning ----------------------------------------------------

function loadRulesView() {
  loadRules();
  loadSchedules();
  loadProvisioning();
}

async function loadRules() {
  say($('rules-msg'), 'info', '');
  say($('rules-sources-error'), 'error', '');
  const [rules, sources] = await Promise.all([
    guarded($('rules-msg'), () => api('GET', '/api/v1/rules')),
    guarded($('rules-sources-error'), async () => {
      try {
        return await api('GET', '/api/v1/sources');
      } catch (e) {
        throw new Error(`Cannot read the directory sources: ${e.message}`);
      }
    }),
  ]);
  if (sources) state.ruleSources = sources;
  renderRuleSourcesTable();
  if (rules) $('rules-editor').value = JSON.stringify(rules, null, 2);
  renderRulesSources();
}

// The rules' `sources` (precedence) and `source_fields` (what each may supply), edited
// beside the JSON: the text stays the whole truth; every control rewrites it, and every
// edit of the text redraws the controls. The server checks the result when it is saved.

/** The configured sources, as GET /api/v1/sources lists them. */
function renderRuleSourcesTable() {
  fill($('rules-sources-table').tBodies[0], state.ruleSources.map((s) => {
    const stateBadge = badge(s.state);
    stateBadge.dataset.testid = `rules-source-state-${s.name}`;
    if (s.reason) stateBadge.title = s.reason;
    return h('tr', { dataset: { testid: `rules-source-${s.name}` } },
      h('td', {}, h('code', { text: s.name })),
      h('td', { text: s.kind }),
      h('td', {}, s.cluster ? s.cluster : h('span', { class: 'muted', text: '–' })),
      h('td', {}, stateBadge, s.reason ? h('div', { class: 'small text-error', text: s.reason }) : null));
  }));
}

/** The editor's JSON as an object, or the reason it is not one. */
function rulesFromEditor() {
  let rules;
  try {
    rules = JSON.parse($('rules-editor').value);
  } catch (e) {
    return { problem: `The JSON is not valid (${e.message}): the source settings come back once it is.` };
  }
  if (!rules || typeof rules !== 'object' || Array.isArray(rules)) {
    return { problem: 'The rules must be a JSON object: the source settings come back once they are.' };
  }
  return { rules };
}

/** The rules' `sources` and `source_fields`, read leniently (the server judges them). */
function ruleSourceSettings(rules) {
  const sources = Array.isArray(rules.sources) ? rules.sources.map(String) : [];
  const fields = rules.source_fields && typeof rules.source_fields === 'object' && !Array.isArray(rules.source_fields)
    ? { ...rules.source_fields }
    : {};
  return { sources, fields };
}

/** Change `sources`/`source_fields` in the editor's JSON through `edit(sources, fields)`. */
function editRuleSources(edit) {
  const { rules, problem } = rulesFromEditor();
  if (!rules) {
    say($('rules-msg'), 'error', problem);
    return;
  }
  const { sources, fields } = ruleSourceSettings(rules);
  edit(sources, fields);
  rules.sources = sources;
  rules.source_fields = fields;
  $('rules-editor').value = JSON.stringify(rules, null, 2);
  say($('rules-msg'), 'info', 'Changed here: save the rules to use them.');
  renderRulesSources();
}

/** The fields `name` may supply, as the editor says (absent: every field). */
function suppliedFields(fields, name) {
  return Array.isArray(fields[name]) ? fields[name].map(String) : MERGED_FIELDS;
}

function toggleSourceField(name, field, on) {
  editRuleSources((sources, fields) => {
    const now = new Set(suppliedFields(fields, name));
    if (on) now.add(field);
    else now.delete(field);
    // Known fields in the server's order, then anything else the text had (kept: the
    // server names it if it is wrong).
    const list = [...MERGED_FIELDS.filter((f) => now.has(f)), ...[...now].filter((f) => !MERGED_FIELDS.includes(f))];
    // Every field is what a source not named supplies: say it the short way.
    if (list.length === MERGED_FIELDS.length && MERGED_FIELDS.every((f) => now.has(f))) delete fields[name];
    else fields[name] = list;
  });
}

function moveSource(name, by) {
  editRuleSources((sources) => {
    const i = sources.indexOf(name);
    const j = i + by;
    if (i < 0 || j < 0 || j >= sources.length) return;
    [sources[i], sources[j]] = [sources[j], sources[i]];
  });
}

function removeSource(name) {
  editRuleSources((sources, fields) => {
    const i = sources.indexOf(name);
    if (i >= 0) sources.splice(i, 1);
    delete fields[name];
  });
}

function addSource() {
  const name = $('rules-source-add').value;
  if (!name) return;
  editRuleSources((sources) => {
    if (!sources.includes(name)) sources.push(name);
  });
}

/** One source of the precedence list: where it stands, what it is, the fields it may supply. */
function precedenceItem(name, index, count, fields) {
  const known = state.ruleSources.find((s) => s.name === name);
  const supplied = new Set(suppliedFields(fields, name));
  const all = !Array.isArray(fields[name]);
  const checks = MERGED_FIELDS.map((f) => {
    const box = h('input', {
      type: 'checkbox', class: 'write-field', checked: supplied.has(f),
      dataset: { testid: `rules-field-${name}-${f}` },
      on: { change: (e) => toggleSourceField(name, f, e.target.checked) },
    });
    return h('label', { class: 'check small', title: f }, box, f.replaceAll('_', ' '));
  });
  const button = (text, label, testid, disabled, fn) => h('button', {
    type: 'button', class: 'write button-quiet small', text, disabled,
    attrs: { 'aria-label': label }, dataset: { testid }, on: { click: fn },
  });
  return h('li', { class: 'precedence-item', dataset: { testid: `precedence-${name}` } },
    h('div', { class: 'precedence-head' },
      h('strong', { text: name }),
      known
        ? h('span', { class: 'muted small', text: index === 0 ? `${known.kind} · primary` : known.kind })
        : h('span', { class: 'small text-error', text: 'not a configured source' }),
      known ? badge(known.state) : null,
      h('span', { class: 'spacer' }),
      button('↑', `Move ${name} up`, `precedence-up-${name}`, index === 0, () => moveSource(name, -1)),
      button('↓', `Move ${name} down`, `precedence-down-${name}`, index === count - 1, () => moveSource(name, 1)),
      button('Remove', `Remove ${name}`, `precedence-remove-${name}`, false, () => removeSource(name))),
    h('fieldset', { class: 'source-fields' },
      h('legend', { class: 'small' }, 'May supply: ',
        h('span', { dataset: { testid: `rules-fields-summary-${name}` }, text: all ? 'every field' : `${fields[name].length} of ${MERGED_FIELDS.length} fields` })),
      checks));
}

/**
 * What the server would refuse or what surprises, said before saving (saving still goes):
 * lines of text, a fields entry of a source not listed with a button that drops it.
 */
function ruleSourceWarnings(sources, fields) {
  const known = new Map(state.ruleSources.map((s) => [s.name, s]));
  const out = [];
  for (const name of sources.filter((n) => !known.has(n))) {
    out.push(`"${name}" is not a configured source: the server will refuse these rules.`);
  }
  for (const name of Object.keys(fields).filter((n) => !sources.includes(n))) {
    out.push([`source_fields names "${name}", which is not in the list. `, h('button', {
      type: 'button', class: 'write button-quiet small', text: 'Drop it',
      dataset: { testid: `rules-drop-fields-${name}` },
      on: { click: () => editRuleSources((_, f) => { delete f[name]; }) },
    })]);
  }
  for (const [name, list] of Object.entries(fields)) {
    const unknown = Array.isArray(list) ? list.filter((f) => !MERGED_FIELDS.includes(f)) : [];
    if (unknown.length) out.push(`source_fields.${name}: unknown field ${unknown.map((f) => `"${f}"`).join(', ')}.`);
  }
  const clusters = sources.filter((n) => known.get(n)?.kind === 'cucm');
  if (clusters.length > 1) {
    out.push(`Several CUCM clusters (${clusters.join(', ')}): a person found in more than one (by the sync key) is reported and skipped, since a user's device and voicemail live on one cluster.`);
  }
  return out;
}

/** Redraw the precedence list, the add choice and the warnings from the editor's JSON. */
function renderRulesSources() {
  const { rules, problem } = rulesFromEditor();
  say($('rules-json-note'), 'warning', problem || '');
  const { sources, fields } = rules ? ruleSourceSettings(rules) : { sources: [], fields: {} };
  fill($('rules-precedence'), sources.map((name, i) => precedenceItem(name, i, sources.length, fields)));
  show($('rules-precedence-empty'), Boolean(rules) && sources.length === 0);
  const addable = state.ruleSources.filter((s) => !sources.includes(s.name));
  fill($('rules-source-add'), addable.length
    ? addable.map((s) => h('option', { value: s.name, text: `${s.name} (${s.kind})` }))
    : h('option', { value: '', text: 'every source is listed' }));
  const warnings = rules ? ruleSourceWarnings(sources, fields) : [];
  fill($('rules-source-warnings'), warnings.map((w) => h('div', {}, w)));
  show($('rules-source-warnings'), warnings.length > 0);
  // Not applyRole: it would enable the first item's "up" and the last one's "down".
  const off = !rules || !isAdmin();
  if (off) for (const el of $('rules-sources').querySelectorAll('.write, .write-field')) el.disabled = true;
  $('rules-source-add').disabled = off || !addable.length;
  $('rules-source-add-button').disabled = off || !addable.length;
}

function parseEditor(textarea, what) {
  try {
    return JSON.parse(textarea.value);
  } catch (e) {
    throw new Error(`The ${what} are not valid JSON: ${e.message}`);
  }
}

async function saveRules() {
  const msg = $('rules-msg');
  say(msg, 'info', '');
  await guarded(msg, async () => {
    const saved = await api('PUT', '/api/v1/rules', parseEditor($('rules-editor'), 'rules'));
    $('rules-editor').value = JSON.stringify(saved, null, 2);
    renderRulesSources();
    say(msg, 'ok', 'Rules saved: the next user sync uses them.');
  }, $('rules-save'));
}

async function loadSchedules() {
  const jobs = await guarded($('schedules-error'), () => api('GET', '/api/v1/jobs'));
  if (!jobs) return;
  say($('schedules-error'), 'error', '');
  renderSchedules(jobs);
}

function renderSchedules(jobs) {
  const rows = jobs.map((job) => {
    if (job.mode === 'continuous') {
      return h('tr', { dataset: { job: job.job } },
        h('td', {}, h('div', { text: job.title }), h('code', { class: 'muted small', text: job.job })),
        h('td', { colSpan: 4, class: 'muted', text: 'Runs continuously on the node holding its lease; use Run now on the status page for an extra full refresh.' }));
    }
    const schedule = h('input', {
      id: `schedule-${job.job}`, class: 'write-field', value: job.schedule || '', placeholder: 'on request only',
      dataset: { testid: `schedule-${job.job}` }, spellcheck: false,
    });
    const enabled = h('input', { id: `enabled-${job.job}`, type: 'checkbox', class: 'write-field', checked: job.enabled, dataset: { testid: `enabled-${job.job}` } });
    const msg = h('div', { class: 'small', attrs: { role: 'status' }, dataset: { testid: `schedule-msg-${job.job}` } });
    const save = h('button', { type: 'button', class: 'write', text: 'Save', dataset: { testid: `schedule-save-${job.job}` } });
    save.addEventListener('click', async () => {
      msg.textContent = '';
      msg.className = 'small';
      save.disabled = true;
      try {
        const updated = await api('PUT', `/api/v1/jobs/${encodeURIComponent(job.job)}`, {
          schedule: schedule.value.trim() || null,
          enabled: enabled.checked,
        });
        renderSchedules(updated);
        const row = $('schedules-table').querySelector(`[data-testid="schedule-msg-${job.job}"]`);
        if (row) {
          row.textContent = 'Saved';
          row.className = 'small text-ok';
        }
      } catch (e) {
        msg.textContent = e.message;
        msg.className = 'small text-error';
        save.disabled = false;
      }
    });
    return h('tr', { dataset: { job: job.job } },
      h('td', {}, h('div', { text: job.title }), h('code', { class: 'muted small', text: job.job })),
      h('td', {}, schedule),
      h('td', {}, h('label', { class: 'check' }, enabled, ' enabled')),
      h('td', {}, job.next_run_at ? timeEl(job.next_run_at, { relative: true }) : h('span', { class: 'muted', text: '–' })),
      h('td', { class: 'actions-cell' }, save, msg));
  });
  const tbody = $('schedules-table').tBodies[0];
  tbody.replaceChildren(...rows);
  applyRole(tbody);
}

async function loadProvisioning() {
  const msg = $('provisioning-msg');
  say(msg, 'info', '');
  try {
    const settings = await api('GET', '/api/v1/provisioning');
    $('provisioning-editor').value = JSON.stringify(settings, null, 2);
  } catch (e) {
    if (e.status === 404) {
      // Not configured yet: start from the lab's defaults so there is something to edit.
      $('provisioning-editor').value = JSON.stringify({
        users: '%',
        provisioning: {
          device_pool: 'Default',
          sip_profile: 'Standard SIP Profile',
          css: 'Internal_CSS',
          security_profile: 'Third-party SIP Device Advanced - Standard SIP Secure Profile',
          partition: 'Internal_PT',
          dn_range: '80000-80999',
          name_prefix: 'UCB',
        },
      }, null, 2);
      say(msg, 'info', 'Device provisioning is not configured yet; the text above is a starting point.');
    } else {
      say(msg, 'error', e.message);
    }
  }
}

async function saveProvisioning() {
  const msg = $('provisioning-msg');
  say(msg, 'info', '');
  await guarded(msg, async () => {
    const saved = await api('PUT', '/api/v1/provisioning', parseEditor($('provisioning-editor'), 'provisioning settings'));
    $('provisioning-editor').value = JSON.stringify(saved, null, 2);
    say(msg, 'ok', 'Provisioning settings saved.');
  }, $('provisioning-save'));
}

// --- sync runs -----------------------------------------------------------------------

async function loadRuns() {
  say($('runs-error'), 'error', '');
  const runs = await guarded($('runs-error'), () => api('GET', '/api/v1/sync-runs?limit=50'));
  if (!runs) return;
  show($('runs-empty'), runs.length === 0);
  const rows = runs.map((run) => {
    const s = run.summary || {};
    const tr = h('tr', { tabIndex: 0, dataset: { runId: run.id, testid: `run-row-${run.id}` } },
      h('td', { text: `#${run.id}` }),
      h('td', {}, timeEl(run.started_at)),
      h('td', { text: run.finished_at ? fmtDuration(run.finished_at - run.started_at) : '–' }),
      h('td', {}, badge(run.status, run.dry_run ? `${run.status} (dry run)` : run.status)),
      h('td', { class: 'num', text: fmtNumber(s.creates) }),
      h('td', { class: 'num', text: fmtNumber(s.updates) }),
      h('td', { class: 'num', text: fmtNumber(s.disables) }),
      h('td', { class: 'num', text: fmtNumber(s.deletes) }),
      h('td', { class: 'num', text: fmtNumber(s.errors) }),
      h('td', { class: 'message-cell', text: run.message || '' }));
    const open = () => openRun(run.id);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
    return tr;
  });
  $('runs-table').tBodies[0].replaceChildren(...rows);
  if (state.selectedRun && runs.some((r) => r.id === state.selectedRun)) openRun(state.selectedRun);
  else if (!state.selectedRun) show($('run-detail'), false);
}

async function openRun(id) {
  state.selectedRun = id;
  for (const tr of $('runs-table').tBodies[0].rows) tr.classList.toggle('selected', Number(tr.dataset.runId) === id);
  const panel = $('run-detail');
  panel.replaceChildren(h('p', { class: 'muted', text: `Loading run #${id}…` }));
  show(panel, true);
  try {
    const [run, audit] = await Promise.all([
      api('GET', `/api/v1/sync-runs/${id}`),
      api('GET', `/api/v1/audit?run_id=${id}&limit=${AUDIT_LIMIT}`),
    ]);
    renderRunDetail(panel, run, audit);
  } catch (e) {
    panel.replaceChildren(h('p', { class: 'alert alert-error', text: e.message }));
  }
}

function parseJson(text) {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { value: text };
  }
}

function renderRunDetail(panel, run, audit) {
  const plan = run.plan_json || {};
  const changes = plan.changes || [];
  const problems = plan.problems || [];
  const s = run.summary || {};
  const parts = [
    h('div', { class: 'card-head' },
      h('h2', { text: `Run #${run.id}` }),
      badge(run.status, run.dry_run ? `${run.status} (dry run)` : run.status),
      h('span', { class: 'muted small' }, timeEl(run.started_at),
        run.finished_at ? ` · ${fmtDuration(run.finished_at - run.started_at)}` : '')),
    run.message ? h('p', { class: 'alert alert-info', text: run.message }) : null,
    h('p', {}, `Created ${fmtNumber(s.creates)}, updated ${fmtNumber(s.updates)}, disabled ${fmtNumber(s.disables)}, `
      + `deleted ${fmtNumber(s.deletes)}, problems ${fmtNumber(s.errors)}`
      + (plan.unchanged !== undefined ? `, unchanged ${fmtNumber(plan.unchanged)}` : '')
      + (plan.synced_users !== undefined ? ` (${fmtNumber(plan.synced_users)} users were linked to CUCM before)` : '')),
  ];
  if (problems.length) {
    parts.push(h('h3', { text: `Problems (${problems.length})` }),
      h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', { text: 'CUCM user' }), h('th', { text: 'Local user' }), h('th', { text: 'Problem' }))),
        h('tbody', {}, problems.map((p) => h('tr', {},
          h('td', { text: p.cucm_userid || '–' }), h('td', { text: p.local_username || '–' }), h('td', { text: p.message }))))));
  }
  parts.push(h('h3', { text: `Audit log (${audit.length}${audit.length === AUDIT_LIMIT ? '+' : ''} applied changes)` }));
  if (audit.length === 0) {
    parts.push(h('p', { class: 'muted', text: run.dry_run ? 'A dry run applies nothing.' : 'No changes were applied.' }));
  } else {
    const list = h('div', { class: 'audit', dataset: { testid: 'audit-list' } }, audit.slice(0, AUDIT_SHOWN).map(renderAuditEntry));
    parts.push(list);
    if (audit.length > AUDIT_SHOWN) {
      const more = h('button', { type: 'button', text: `Show all ${audit.length}` });
      more.addEventListener('click', () => {
        append(list, audit.slice(AUDIT_SHOWN).map(renderAuditEntry));
        more.remove();
      });
      parts.push(h('div', { class: 'actions' }, more));
    }
  }
  if (changes.length && audit.length === 0) {
    // A dry run (or refused run) keeps its plan: show what would have changed.
    const shown = changes.slice(0, PLAN_CHANGES_SHOWN);
    parts.push(h('h3', { text: `Planned changes (${changes.length > shown.length ? `first ${shown.length} of ` : ''}${changes.length})` }),
      h('div', { class: 'audit' }, shown.map((c) => renderChange(c.action, changeUsername(c), c.before || null, c.after || null, null))));
  }
  fill(panel, parts);
}

function changeUsername(change) {
  return (change.after && change.after.username) || (change.before && change.before.username) || '?';
}

function renderAuditEntry(entry) {
  return renderChange(entry.action, entry.username, parseJson(entry.before), parseJson(entry.after), entry.at);
}

/** One change as a collapsible before/after table; changed fields are highlighted. */
function renderChange(action, username, before, after, at) {
  const keys = [...new Set([...Object.keys(before || {}), ...Object.keys(after || {})])];
  const rows = [];
  for (const key of keys) {
    const b = before ? before[key] : undefined;
    const a = after ? after[key] : undefined;
    const changed = JSON.stringify(b) !== JSON.stringify(a);
    // A creation lists what it set; an update or removal what it changed.
    if (before && after && !changed) continue;
    if (!before && (a === null || a === undefined || (Array.isArray(a) && a.length === 0))) continue;
    rows.push(h('tr', { class: changed && before && after ? 'changed' : '' },
      h('th', { text: key.replaceAll('_', ' ') }),
      h('td', {}, before ? renderValue(b) : ''),
      h('td', {}, after ? renderValue(a) : '')));
  }
  return h('details', { class: 'change' },
    h('summary', {}, badge(action === 'create' ? 'applied' : action === 'update' ? 'running' : 'failed', action),
      ' ', h('strong', { text: username }), at ? h('span', { class: 'muted small' }, ' ', timeEl(at)) : null),
    h('table', { class: 'table diff' },
      h('thead', {}, h('tr', {}, h('th', { text: 'Field' }), h('th', { text: 'Before' }), h('th', { text: 'After' }))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colSpan: 3, class: 'muted', text: 'no field changes' })))));
}

// --- users ---------------------------------------------------------------------------

async function loadUsers(offset = state.users.offset) {
  say($('users-error'), 'error', '');
  const q = state.users.q;
  const params = new URLSearchParams({ offset: String(offset), limit: String(USERS_PAGE) });
  if (q) params.set('q', q);
  const list = await guarded($('users-error'), () => api('GET', `/api/v1/users?${params}`));
  if (!list) return;
  state.users.offset = offset;
  state.users.total = list.total;
  const rows = list.users.map((u) => {
    const tr = h('tr', { tabIndex: 0, dataset: { username: u.username, testid: `user-row-${u.username}` } },
      h('td', {}, h('strong', { text: u.username })),
      h('td', { text: u.display_name || [u.first_name, u.last_name].filter(Boolean).join(' ') }),
      h('td', { text: u.email || '' }),
      h('td', { text: u.extension || '' }),
      h('td', { text: u.department || '' }),
      h('td', { text: u.device_name || '' }),
      h('td', { text: u.source }),
      h('td', {}, u.disabled ? badge('disabled') : badge('enabled', 'active')));
    const open = () => openUser(u.username);
    tr.addEventListener('click', open);
    tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
    return tr;
  });
  $('users-table').tBodies[0].replaceChildren(...rows);
  if (rows.length === 0) {
    $('users-table').tBodies[0].append(h('tr', {}, h('td', { colSpan: 8, class: 'muted', text: q ? `No user matches “${q}”.` : 'No users yet: run the user sync.' })));
  }
  const first = list.total === 0 ? 0 : offset + 1;
  const last = offset + list.users.length;
  $('users-range').textContent = `${fmtNumber(first)}–${fmtNumber(last)} of ${fmtNumber(list.total)}`;
  $('users-prev').disabled = offset <= 0;
  $('users-next').disabled = last >= list.total;
}

// The server's JSON objects come with sorted keys; show a user the way people read one.
const USER_FIELD_ORDER = [
  'username', 'display_name', 'first_name', 'last_name', 'email', 'extension', 'aliases', 'department',
  'title', 'office', 'manager', 'mobile', 'pager', 'directory_uri', 'device_name', 'disabled', 'source',
  'source_key', 'has_password', 'id', 'created_at', 'updated_at',
];
const USER_SECTIONS = { user: 'User', device: 'Provisioned device', voicemail: 'Voicemail' };

function ordered(object, order) {
  const rank = (k) => (order.includes(k) ? order.indexOf(k) : order.length);
  return Object.fromEntries(Object.entries(object).sort(([a], [b]) => rank(a) - rank(b)));
}

function closeUser() {
  show($('user-detail'), false);
  for (const tr of $('users-table').tBodies[0].rows) tr.classList.remove('selected');
}

async function openUser(username) {
  const panel = $('user-detail');
  const body = $('user-detail-body');
  for (const tr of $('users-table').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.username === username);
  $('user-detail-title').textContent = username;
  body.replaceChildren(h('p', { class: 'muted', text: `Loading ${username}…` }));
  show(panel, true);
  try {
    const detail = await api('GET', `/api/v1/users/${encodeURIComponent(username)}`);
    const parts = [];
    // Known sections first; anything another engine adds (e.g. voicemail) after them.
    for (const [key, value] of Object.entries(ordered(detail, Object.keys(USER_SECTIONS)))) {
      const title = USER_SECTIONS[key] || key.replaceAll('_', ' ').replace(/^./, (c) => c.toUpperCase());
      let content;
      if (value === null || value === undefined) {
        content = h('p', { class: 'muted', text: key === 'device' ? 'No device provisioned by ucbridge.' : 'Nothing recorded.' });
      } else if (typeof value === 'object' && !Array.isArray(value)) {
        content = kvTable(key === 'user' ? ordered(value, USER_FIELD_ORDER) : value, `user-${key}`);
      } else {
        content = renderValue(value, key);
      }
      parts.push(h('section', { class: 'detail-section', dataset: { testid: `user-section-${key}` } }, h('h3', { text: title }), content));
    }
    if (detail.user && detail.user.disabled) parts.unshift(h('p', { class: 'alert alert-warning', text: 'This user is disabled.' }));
    fill(body, parts);
  } catch (e) {
    body.replaceChildren(h('p', { class: 'alert alert-error', text: e.message }));
  }
}

function enterUsers() {
  loadUsers();
  loadVoicemail();
}

// --- voicemail options ---------------------------------------------------------------

/** A field's stored value as the form shows it ('' when not set). */
function voicemailValue(options, key) {
  const [outer, inner] = key.split('.');
  let value = options[outer];
  if (inner) value = value && typeof value === 'object' ? value[inner] : undefined;
  return value === undefined || value === null ? '' : String(value);
}

async function loadVoicemail({ force = false } = {}) {
  // Unsaved edits survive a visit to another view; Reload drops them.
  if (state.voicemail && state.voicemail.dirty && !force) return;
  say($('voicemail-error'), 'error', '');
  const data = await guarded($('voicemail-error'), () => api('GET', '/api/v1/voicemail'));
  if (!data || !state.username) return;
  buildVoicemailForm(data.options || {});
}

function voicemailInput(f, value) {
  const id = `vm-${f.key.replace('.', '-')}`;
  const common = { id, class: 'write-field', dataset: { testid: id } };
  let input;
  if (f.kind === 'choice' || f.kind === 'boolean') {
    input = h('select', common,
      h('option', { value: '', text: f.kind === 'boolean' ? f.unset : `default: ${f.fallback}` }),
      f.choices.map(([v, label]) => h('option', { value: v, text: label })));
    // A value this page does not know yet is still shown (and saved back) as it is.
    if (value && !f.choices.some(([v]) => v === value)) input.append(h('option', { value, text: value }));
    input.value = value;
  } else if (f.kind === 'count') {
    input = h('input', { ...common, type: 'number', min: 1, step: 1, inputMode: 'numeric', placeholder: `default: ${f.fallback}`, value });
  } else {
    input = h('input', { ...common, type: 'text', spellcheck: false, placeholder: `default: ${f.fallback}`, value });
  }
  return { id, input };
}

/** (Re)build the form from the stored options (`{}` when never set). */
function buildVoicemailForm(options) {
  const known = new Set(VOICEMAIL_FIELDS.map((f) => f.key.split('.')[0]));
  const vm = {
    dirty: false,
    inputs: {},
    // Stored keys without a field here (a newer server's) are sent back unchanged.
    extra: Object.fromEntries(Object.entries(options).filter(([k]) => !known.has(k))),
  };
  const groups = VOICEMAIL_GROUPS.map((group) => h('section', { class: 'vm-group' },
    h('h3', { text: group.title }),
    group.hint ? h('p', { class: 'hint', text: group.hint }) : null,
    h('div', { class: 'form-grid' }, group.fields.map((f) => {
      const { id, input } = voicemailInput(f, voicemailValue(options, f.key));
      vm.inputs[f.key] = input;
      return field(id, f.label, input, f.hint);
    }))));
  const extraKeys = Object.keys(vm.extra);
  vm.msg = h('p', { id: 'voicemail-msg', class: 'alert', hidden: true, attrs: { role: 'status' }, dataset: { testid: 'voicemail-msg' } });
  vm.save = h('button', { type: 'submit', id: 'voicemail-save', class: 'button-primary write', text: 'Save voicemail options', dataset: { testid: 'voicemail-save' } });
  const reload = h('button', { type: 'button', id: 'voicemail-reload', text: 'Reload', dataset: { testid: 'voicemail-reload' } });
  reload.addEventListener('click', () => loadVoicemail({ force: true }));
  fill($('voicemail-form'),
    groups,
    extraKeys.length ? h('p', { class: 'hint', text: `Also stored, kept as they are: ${extraKeys.join(', ')}.` }) : null,
    vm.msg,
    h('div', { class: 'actions' }, vm.save, reload));
  state.voicemail = vm;
  applyRole($('voicemail-form'));
  return vm;
}

/** The object to PUT: only the fields that are filled in. */
function voicemailUpdate(vm) {
  const update = { ...vm.extra };
  const folders = {};
  for (const f of VOICEMAIL_FIELDS) {
    const input = vm.inputs[f.key];
    const raw = input.value.trim();
    const [outer, inner] = f.key.split('.');
    if (f.kind === 'count' && (input.validity.badInput || (raw && !/^\d+$/.test(raw)) || (raw && Number(raw) < 1))) {
      throw new Error(`${f.label} must be a whole number of at least 1.`);
    }
    if (!raw) continue;
    if (inner) folders[inner] = raw;
    else if (f.kind === 'boolean') update[outer] = raw === 'true';
    else if (f.kind === 'count') update[outer] = Number(raw);
    else update[outer] = raw;
  }
  // The server wants all three folders or none: an empty one takes its default.
  if (Object.keys(folders).length) {
    update.folders = Object.fromEntries(VOICEMAIL_FIELDS
      .filter((f) => f.key.startsWith('folders.'))
      .map((f) => {
        const name = f.key.split('.')[1];
        return [name, folders[name] || f.fallback];
      }));
  }
  return update;
}

async function saveVoicemail(event) {
  event.preventDefault();
  const vm = state.voicemail;
  if (!vm || !isAdmin()) return;
  say(vm.msg, 'info', '');
  await guarded(vm.msg, async () => {
    const saved = await api('PUT', '/api/v1/voicemail', voicemailUpdate(vm));
    const fresh = buildVoicemailForm(saved || {});
    say(fresh.msg, 'ok', 'Voicemail options saved. The voicemail sync restarts with them within a few seconds.');
  }, vm.save);
}

// --- SSO -----------------------------------------------------------------------------

async function loadSso() {
  say($('sso-error'), 'error', '');
  try {
    const status = await api('GET', '/api/v1/sso/status');
    renderSso(status);
  } catch (e) {
    show($('sso'), false);
    const hint = e.code === 'not_configured' ? ' Configure the ids connection on the Connections page.' : '';
    say($('sso-error'), 'error', `${e.message}.${hint}`.replace('..', '.'));
  }
}

function renderSso(status) {
  setBadge($('sso-global'), status.global_sso_state);
  setBadge($('sso-registration'), status.registration_state);
  setBadge($('sso-mode'), status.mode_state);
  setBadge($('sso-ids-state'), status.ids_configuration_state);
  $('sso-ids-url').textContent = [
    status.ids_base_url,
    status.has_ids_credentials === undefined ? null : (status.has_ids_credentials ? 'credentials set' : 'no credentials'),
  ].filter(Boolean).join(' · ');
  const components = status.components || [];
  const rows = components.map((c) => h('tr', { dataset: { testid: `sso-component-${c.name}` } },
    h('td', { text: c.name }),
    h('td', {}, badge(c.registration_state)),
    h('td', {}, badge(c.mode_state)),
    h('td', {}, h('code', { class: 'small', text: c.ref_url || '' }))));
  if (rows.length === 0) rows.push(h('tr', {}, h('td', { colSpan: 4, class: 'muted', text: 'No components.' })));
  $('sso-components').tBodies[0].replaceChildren(...rows);
  const known = new Set(['global_sso_state', 'registration_state', 'mode_state', 'ids_configuration_state',
    'ids_base_url', 'has_ids_credentials', 'components']);
  const extra = Object.fromEntries(Object.entries(status).filter(([k]) => !known.has(k)));
  $('sso-extra').replaceChildren(Object.keys(extra).length ? h('div', {}, h('h3', { text: 'More' }), kvTable(extra)) : '');
  show($('sso'), true);
}

// --- API tokens ----------------------------------------------------------------------

async function loadTokens() {
  say($('tokens-error'), 'error', '');
  const tokens = await guarded($('tokens-error'), () => api('GET', '/api/v1/tokens'));
  if (!tokens) return;
  show($('tokens-empty'), tokens.length === 0);
  $('tokens-table').tBodies[0].replaceChildren(...tokens.map((t) => {
    const msg = h('span', { class: 'small text-error' });
    const revoke = h('button', { type: 'button', class: 'button-danger write', text: 'Revoke', dataset: { testid: `token-revoke-${t.name}` } });
    armConfirm(revoke, 'Confirm revoke', async () => {
      revoke.disabled = true;
      try {
        await api('DELETE', `/api/v1/tokens/${encodeURIComponent(t.name)}`);
        say($('token-msg'), 'ok', `Token “${t.name}” revoked.`);
        await loadTokens();
      } catch (e) {
        msg.textContent = e.message;
        revoke.disabled = false;
      }
    });
    return h('tr', { dataset: { testid: `token-row-${t.name}` } },
      h('td', {}, h('strong', { text: t.name })),
      h('td', {}, badge(t.role, t.role === 'read_only' ? 'read-only' : t.role)),
      h('td', {}, timeEl(t.created_at)),
      h('td', {}, timeEl(t.last_used_at, { relative: true })),
      h('td', { class: 'actions-cell' }, revoke, msg));
  }));
}

async function createToken(event) {
  event.preventDefault();
  const msg = $('token-msg');
  say(msg, 'info', '');
  show($('token-created'), false);
  await guarded(msg, async () => {
    const created = await api('POST', '/api/v1/tokens', { name: $('token-name').value.trim(), role: $('token-role').value });
    $('token-value').value = created.token;
    show($('token-created'), true);
    $('token-value').select();
    $('token-name').value = '';
    say(msg, 'ok', `Token “${created.name}” (${created.role === 'read_only' ? 'read-only' : created.role}) created.`);
    await loadTokens();
  }, $('token-create'));
}

async function copyToken() {
  const input = $('token-value');
  input.select();
  try {
    await navigator.clipboard.writeText(input.value);
    say($('token-msg'), 'ok', 'Copied to the clipboard.');
  } catch {
    // The clipboard API needs a secure context; the text is selected for Ctrl-C instead.
    say($('token-msg'), 'info', 'Press Ctrl-C (or ⌘-C) to copy the selected token.');
  }
}

// --- wiring ----------------------------------------------------------------------------

function wire() {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  window.addEventListener('hashchange', route);

  $('rules-save').addEventListener('click', saveRules);
  $('rules-reload').addEventListener('click', loadRules);
  $('rules-format').addEventListener('click', () => {
    guarded($('rules-msg'), async () => {
      $('rules-editor').value = JSON.stringify(parseEditor($('rules-editor'), 'rules'), null, 2);
      say($('rules-msg'), 'info', '');
      renderRulesSources();
    });
  });
  $('rules-editor').addEventListener('input', renderRulesSources);
  $('rules-source-add-button').addEventListener('click', addSource);
  $('provisioning-save').addEventListener('click', saveProvisioning);
  $('provisioning-reload').addEventListener('click', loadProvisioning);

  $('runs-reload').addEventListener('click', loadRuns);

  $('users-search-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.users.q = $('users-search').value.trim();
    loadUsers(0);
  });
  let searchTimer = null;
  $('users-search').addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const q = $('users-search').value.trim();
      if (q !== state.users.q) {
        state.users.q = q;
        loadUsers(0);
      }
    }, 300);
  });
  $('user-detail-close').addEventListener('click', closeUser);
  document.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && !$('user-detail').hidden) closeUser();
  });
  $('users-prev').addEventListener('click', () => loadUsers(Math.max(0, state.users.offset - USERS_PAGE)));
  $('users-next').addEventListener('click', () => loadUsers(state.users.offset + USERS_PAGE));

  $('voicemail-form').addEventListener('submit', saveVoicemail);
  const voicemailEdited = () => {
    if (state.voicemail) state.voicemail.dirty = true;
  };
  $('voicemail-form').addEventListener('input', voicemailEdited);
  $('voicemail-form').addEventListener('change', voicemailEdited);

  $('sso-reload').addEventListener('click', loadSso);

  $('token-form').addEventListener('submit', createToken);
  $('token-copy').addEventListener('click', copyToken);
  $('token-dismiss').addEventListener('click', () => {
    $('token-value').value = '';
    show($('token-created'), false);
    say($('token-msg'), 'info', '');
  });

  // A hidden tab does not need a status refresh every two seconds.
  document.addEventListener('visibilitychange', () => {
    if (document.hidden) stopStatusPolling();
    else if (state.view === 'status' && state.username) refreshStatus();
  });
}

wire();
boot();
