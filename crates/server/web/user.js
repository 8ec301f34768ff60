// The user page: what an end user (a synced CUCM user, role `user`) sees after signing in
// on the same web app — their profile, their WebPhone (device, state, SIP digest user, the
// password on demand, a provisioning problem if any) and their voicemail state. Nothing
// of the admin views: the server refuses an end-user session every admin route anyway.
//
// Loaded before app.js; uses app.js's helpers (h, $, show, say, setBadge, fmtTime, api,
// state) only when called, after both scripts have run. app.js calls ucbUser.enter(session)
// for a `user` session and ucbUser.leave() when any session ends; the sign-in form's
// "User" choice posts to /api/v1/me/session (app.js login()).

'use strict';

window.ucbUser = (() => {
  /** Polls while the WebPhone is being set up: at most this many, 2 s apart. */
  const MAX_POLLS = 30;
  let page = null;
  let pollTimer = null;
  let polls = 0;

  const testid = (id) => ({ testid: id });

  function row(label, id) {
    return h('tr', {}, h('th', { text: label }), h('td', { id, dataset: testid(id), text: '–' }));
  }

  /** The page's elements, built once. */
  function build() {
    const password = h('input', {
      id: 'me-sip-password', type: 'password', readOnly: true, value: '', autocomplete: 'off',
      class: 'code', dataset: testid('me-sip-password'), attrs: { 'aria-label': 'SIP password' },
    });
    const reveal = h('button', {
      type: 'button', id: 'me-show-password', class: 'button-quiet', text: 'Show password',
      dataset: testid('me-show-password'), on: { click: togglePassword },
    });
    const retry = h('button', {
      type: 'button', id: 'me-device-retry', class: 'button-quiet', text: 'Try again',
      dataset: testid('me-device-retry'), hidden: true, on: { click: retryDevice },
    });
    const section = h('section', { id: 'view-me', class: 'view', hidden: true, dataset: testid('me-page') },
      h('div', { class: 'view-head' }, h('h1', { text: 'My phone, voicemail and chat' })),
      h('p', { id: 'me-error', class: 'alert alert-error', hidden: true, attrs: { role: 'alert' }, dataset: testid('me-error') }),
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', { text: 'WebPhone' }),
          h('span', { id: 'me-device-status', class: 'badge', dataset: testid('me-device-status'), text: '–' })),
        h('p', { id: 'me-device-problem', class: 'alert alert-warning', hidden: true, attrs: { role: 'status' }, dataset: testid('me-device-problem') }),
        h('table', { class: 'kv' }, h('tbody', {},
          row('Device', 'me-device-name'),
          row('Directory number', 'me-device-dn'),
          row('SIP digest user', 'me-digest-user'),
          h('tr', {}, h('th', { text: 'SIP password' }), h('td', {}, password, ' ', reveal)),
          row('Last checked', 'me-device-checked'))),
        retry),
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', { text: 'Profile' })),
        h('table', { class: 'kv' }, h('tbody', {},
          row('Name', 'me-display-name'),
          row('Username', 'me-username'),
          row('CUCM user ID', 'me-cucm-userid'),
          row('E-mail', 'me-email'),
          row('Extension', 'me-extension'),
          row('Department', 'me-department'),
          row('Signed in with', 'me-method')))),
      h('div', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', { text: 'Voicemail' })),
        h('table', { class: 'kv' }, h('tbody', {},
          row('Mailbox', 'me-vm-mailbox'),
          row('Messages', 'me-vm-messages'),
          row('Last synced', 'me-vm-synced'),
          row('Last problem', 'me-vm-error')))));
    $('main').append(section);
    return { section, password, reveal, retry };
  }

  function put(id, value) {
    $(id).textContent = value === null || value === undefined || value === '' ? '–' : String(value);
  }

  function hidePassword() {
    if (!page) return;
    page.password.value = '';
    page.password.type = 'password';
    page.reveal.textContent = 'Show password';
  }

  async function togglePassword() {
    if (page.password.value) {
      hidePassword();
      return;
    }
    await guarded($('me-error'), async () => {
      const creds = await api('GET', '/api/v1/me/device/sip-credentials');
      page.password.value = creds.password;
      page.password.type = 'text';
      page.reveal.textContent = 'Hide password';
    }, page.reveal);
  }

  function showDevice(device) {
    const labels = { ready: 'ready', pending: 'pending', setting_up: 'being set up', none: 'no device' };
    setBadge($('me-device-status'), { ready: 'succeeded', none: 'error' }[device.status] || 'running',
      labels[device.status] || device.status);
    put('me-device-name', device.device_name);
    put('me-device-dn', device.directory_number && device.partition
      ? `${device.directory_number} (${device.partition})` : device.directory_number);
    put('me-digest-user', device.digest_user);
    put('me-device-checked', device.checked_at ? fmtTime(device.checked_at) : null);
    say($('me-device-problem'), 'warning', device.problem
      ? `Your WebPhone could not be set up: ${device.problem}` : '');
    page.reveal.disabled = device.status !== 'ready';
    show(page.retry, device.status !== 'setting_up' && (Boolean(device.problem) || device.status !== 'ready'));
    clearTimeout(pollTimer);
    if (device.status === 'setting_up' && polls < MAX_POLLS) {
      polls += 1;
      pollTimer = setTimeout(loadDevice, 2000);
    }
  }

  async function loadDevice() {
    const device = await guarded($('me-error'), () => api('GET', '/api/v1/me/device'));
    if (device && page) showDevice(device);
  }

  async function retryDevice() {
    polls = 0;
    const device = await guarded($('me-error'), () => api('POST', '/api/v1/me/device/ensure'), page.retry);
    if (device && page) showDevice(device);
  }

  function showProfile(me) {
    put('me-display-name', me.display_name || [me.first_name, me.last_name].filter(Boolean).join(' '));
    put('me-username', me.username);
    put('me-cucm-userid', me.cucm_userid);
    put('me-email', me.email);
    put('me-extension', me.extension);
    put('me-department', me.department);
    put('me-method', me.signed_in_with === 'sso' ? 'single sign-on' : 'CUCM password');
  }

  function showVoicemail(vm) {
    put('me-vm-mailbox', vm.matched ? vm.cuc_alias : 'no mailbox is synced for you');
    put('me-vm-messages', vm.matched ? vm.messages : null);
    put('me-vm-synced', vm.last_success_at ? fmtTime(vm.last_success_at) : null);
    put('me-vm-error', vm.last_error);
  }

  /** Show the user page for an end user's session (from app.js enterSession). */
  function enter(session) {
    state.csrf = session.csrf_token || null;
    state.username = session.username;
    state.role = 'user';
    if (!page) page = build();
    hidePassword();
    polls = 0;
    say($('me-error'), 'error', '');
    $('whoami').textContent = session.username;
    setBadge($('role'), 'user', 'user');
    document.querySelector('.brand-sub').textContent = 'my phone';
    show($('view-login'), false);
    show($('nav'), false);
    show($('readonly-banner'), false);
    show($('session'), true);
    for (const view of document.querySelectorAll('.view')) show(view, view === page.section);
    guarded($('me-error'), async () => showProfile(await api('GET', '/api/v1/me')));
    guarded($('me-error'), async () => showVoicemail(await api('GET', '/api/v1/me/voicemail')));
    loadDevice();
    window.ucbChat.enter(page.section);
  }

  /** Forget everything shown (from app.js leaveSession): the next session may be another's. */
  function leave() {
    clearTimeout(pollTimer);
    window.ucbChat.leave();
    document.querySelector('.brand-sub').textContent = 'admin';
    if (!page) return;
    page.section.remove();
    page = null;
  }

  /** The sign-in form's "who signs in" choice; `#me` in the address preselects the user. */
  function wireLoginChoice() {
    const user = $('login-kind-user');
    if (!user) return;
    const apply = () => {
      const username = $('login-username');
      if (user.checked && username.value === 'admin') username.value = '';
      username.placeholder = user.checked ? 'CUCM user ID' : '';
    };
    if (window.location.hash === '#me') user.checked = true;
    for (const radio of document.querySelectorAll('input[name="login-kind"]')) radio.addEventListener('change', apply);
    apply();
  }

  document.addEventListener('DOMContentLoaded', wireLoginChoice);
  return { enter, leave };
})();

// The chat panel of the user page (issue #13): the user's contacts with their presence,
// their own presence and status text, adding and removing contacts, answering requests
// to see their presence, and 1:1 conversations — live through the server-sent events of
// /api/v1/me/chat/events (the first event is a snapshot; `resync` is a fresh one after
// events were missed). Text from IM and Presence is only ever set as textContent.
window.ucbChat = (() => {
  const STATES = {
    offline: ['badge', 'offline'], connecting: ['badge badge-busy', 'connecting'],
    online: ['badge badge-ok', 'online'], reconnecting: ['badge badge-warn', 'reconnecting'],
    failed: ['badge badge-bad', 'failed'], closed: ['badge badge-bad', 'closed'],
  };
  const AVAILABILITY = {
    available: 'Available', chat: 'Free to chat', away: 'Away', extended_away: 'Extended away',
    do_not_disturb: 'Do not disturb', unavailable: 'Offline',
  };
  const CHOOSABLE = ['available', 'away', 'extended_away', 'do_not_disturb'];
  /** Messages shown per conversation (the server keeps the last 100). */
  const SHOWN = 200;
  /** After the stream fails for good (401, 409), look again this long later. */
  const RETRY_MS = 10000;
  const testid = (id) => ({ testid: id });

  let ui = null;
  let source = null;
  let retryTimer = null;
  const chat = { contacts: new Map(), requests: new Set(), peers: new Set(), unread: new Map(), with: null, seen: new Set(), jid: null };

  const key = (m) => (m.id ? `${m.from}|${m.id}` : `${m.from}|${m.at_ms}|${m.body}`);

  function build() {
    const presence = h('select', { id: 'chat-presence', dataset: testid('chat-presence'), attrs: { 'aria-label': 'My presence' } },
      CHOOSABLE.map((a) => h('option', { value: a, text: AVAILABILITY[a] })));
    const status = h('input', { id: 'chat-status', placeholder: 'Status text (optional)', maxLength: 500, dataset: testid('chat-status'), attrs: { 'aria-label': 'Status text' } });
    const presenceSave = h('button', { type: 'submit', text: 'Set', dataset: testid('chat-presence-save') });
    const addJid = h('input', { id: 'chat-add-jid', placeholder: 'user@domain', required: true, dataset: testid('chat-add-jid'), attrs: { 'aria-label': 'Contact address' } });
    const addName = h('input', { id: 'chat-add-name', placeholder: 'Name (optional)', maxLength: 256, dataset: testid('chat-add-name'), attrs: { 'aria-label': 'Contact name' } });
    const addButton = h('button', { type: 'submit', text: 'Add contact', dataset: testid('chat-add') });
    const input = h('textarea', { id: 'chat-input', rows: 2, placeholder: 'Write a message', maxLength: 4096, dataset: testid('chat-input'), attrs: { 'aria-label': 'Message' } });
    const send = h('button', { type: 'submit', class: 'button-primary', text: 'Send', dataset: testid('chat-send') });
    const el = {
      presence, status, presenceSave, addJid, addName, addButton, input, send,
      state: h('span', { id: 'chat-state', class: 'badge', dataset: testid('chat-state'), text: '–' }),
      error: h('p', { id: 'chat-error', class: 'alert alert-error', hidden: true, attrs: { role: 'alert' }, dataset: testid('chat-error') }),
      requests: h('ul', { class: 'chat-requests', dataset: testid('chat-requests') }),
      contacts: h('ul', { class: 'chat-contacts', dataset: testid('chat-contacts') }),
      withTitle: h('h3', { class: 'chat-with', dataset: testid('chat-with'), text: 'Choose a contact' }),
      messages: h('div', { class: 'chat-messages', dataset: testid('chat-messages'), attrs: { role: 'log', 'aria-live': 'polite' } }),
    };
    const presenceForm = h('form', { class: 'toolbar', on: { submit: setPresence } }, presence, status, presenceSave);
    const addForm = h('form', { class: 'toolbar', on: { submit: addContact } }, addJid, addName, addButton);
    el.sendForm = h('form', { class: 'chat-send', hidden: true, on: { submit: sendMessage } }, input, send);
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey) {
        event.preventDefault();
        el.sendForm.requestSubmit();
      }
    });
    el.card = h('div', { id: 'me-chat', class: 'card chat', dataset: testid('chat') },
      h('div', { class: 'card-head' }, h('h2', { text: 'Chat' }), el.state,
        h('span', { id: 'chat-jid', class: 'muted small', dataset: testid('chat-jid') })),
      el.error, presenceForm,
      h('div', { class: 'chat-body' },
        h('div', { class: 'chat-side' }, el.requests, el.contacts, addForm),
        h('div', { class: 'chat-main' }, el.withTitle, el.messages, el.sendForm)));
    return el;
  }

  function fail(e) {
    say(ui.error, 'error', e.message);
  }

  async function call(method, path, body, button) {
    if (button) button.disabled = true;
    try {
      const answer = await api(method, path, body);
      return { ok: true, answer };
    } catch (e) {
      fail(e);
      return { ok: false, error: e };
    } finally {
      if (button) button.disabled = false;
    }
  }

  function showState(s) {
    const [cls, label] = STATES[s.state] || ['badge', s.state];
    ui.state.className = cls;
    ui.state.textContent = s.state === 'reconnecting' ? `${label} (attempt ${s.attempt})` : label;
    if (s.state === 'failed') say(ui.error, 'error', s.message);
    else if (s.state === 'reconnecting') say(ui.error, 'warning', `IM and Presence is unreachable (${s.reason}); reconnecting…`);
    else if (s.state === 'closed') say(ui.error, 'error', `Chat session closed: ${s.reason}`);
    else say(ui.error, 'error', '');
  }

  function showOwn(p) {
    if (!p) return;
    if (CHOOSABLE.includes(p.availability)) ui.presence.value = p.availability;
    if (document.activeElement !== ui.status) ui.status.value = p.status || '';
  }

  function contactItem(c) {
    const dot = h('span', { class: `chat-dot chat-dot-${c.availability}`, attrs: { 'aria-hidden': 'true' } });
    const label = h('span', { class: 'chat-presence-label', dataset: testid('chat-contact-presence'), text: AVAILABILITY[c.availability] || c.availability });
    const unread = chat.unread.get(c.jid) || 0;
    const subscription = c.pending_out ? 'waiting for approval' : ({ none: 'no presence shared', from: 'they do not share presence' }[c.subscription] || '');
    const open = h('button', { type: 'button', class: 'chat-open button-quiet', on: { click: () => openConversation(c.jid) } },
      dot, ' ', h('strong', { text: c.name || c.jid }), unread ? h('span', { class: 'badge badge-busy', text: String(unread) }) : null,
      h('br'), label, c.status ? h('span', { class: 'muted', text: ` — ${c.status}` }) : null,
      subscription ? h('span', { class: 'muted small', text: ` (${subscription})` }) : null);
    const remove = h('button', { type: 'button', class: 'button-quiet button-danger small', text: 'Remove', dataset: testid('chat-remove'), attrs: { 'aria-label': `Remove ${c.jid}` } });
    remove.addEventListener('click', () => call('DELETE', `/api/v1/me/chat/contacts/${encodeURIComponent(c.jid)}`, undefined, remove));
    return h('li', { class: c.jid === chat.with ? 'chat-contact active' : 'chat-contact', dataset: { testid: 'chat-contact', jid: c.jid, availability: c.availability } }, open, c.roster === false ? null : remove);
  }

  function renderContacts() {
    const items = [...chat.contacts.values()].sort((a, b) => (a.name || a.jid).localeCompare(b.name || b.jid));
    for (const peer of chat.peers) {
      if (!chat.contacts.has(peer)) items.push({ jid: peer, name: `${peer} (not a contact)`, availability: 'unavailable', subscription: 'none', roster: false });
    }
    fill(ui.contacts, items.length ? items.map(contactItem) : h('li', { class: 'muted', text: 'No contacts yet.' }));
  }

  function renderRequests() {
    fill(ui.requests, [...chat.requests].map((jid) => {
      const answer = (accept) => async () => {
        const done = await call('POST', `/api/v1/me/chat/subscriptions/${encodeURIComponent(jid)}`, { accept });
        if (done.ok) {
          chat.requests.delete(jid);
          renderRequests();
        }
      };
      return h('li', { class: 'chat-request', dataset: { testid: 'chat-request', jid } },
        h('span', { text: `${jid} wants to see your presence ` }),
        h('button', { type: 'button', class: 'button-primary small', text: 'Accept', dataset: testid('chat-accept'), on: { click: answer(true) } }),
        ' ',
        h('button', { type: 'button', class: 'small', text: 'Decline', dataset: testid('chat-decline'), on: { click: answer(false) } }));
    }));
  }

  function messageItem(m) {
    const mine = m.direction === 'outgoing';
    return h('div', { class: mine ? 'chat-message chat-out' : 'chat-message chat-in', dataset: { testid: 'chat-message', direction: m.direction } },
      h('div', { class: 'chat-text', text: m.body }),
      h('div', { class: 'chat-meta muted small', text: `${mine ? 'me' : m.from} · ${fmtTime(m.at_ms)}${m.delayed ? ' · delivered while you were away' : ''}` }));
  }

  function appendMessage(m) {
    if (chat.seen.has(key(m))) return;
    chat.seen.add(key(m));
    ui.messages.append(messageItem(m));
    while (ui.messages.childElementCount > SHOWN) ui.messages.firstElementChild.remove();
    ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  async function openConversation(jid) {
    chat.with = jid;
    chat.unread.delete(jid);
    chat.seen.clear();
    ui.withTitle.textContent = `Conversation with ${(chat.contacts.get(jid) || {}).name || jid}`;
    ui.messages.replaceChildren();
    show(ui.sendForm, true);
    renderContacts();
    const got = await call('GET', `/api/v1/me/chat/messages?with=${encodeURIComponent(jid)}`);
    if (got.ok && chat.with === jid) got.answer.messages.forEach(appendMessage);
    ui.input.focus();
  }

  function onMessage(m) {
    const peer = m.direction === 'outgoing' ? m.to : m.from;
    if (peer === chat.with) {
      appendMessage(m);
      return;
    }
    chat.unread.set(peer, (chat.unread.get(peer) || 0) + 1);
    if (!chat.contacts.has(peer)) chat.peers.add(peer);
    renderContacts();
  }

  function applySnapshot(view) {
    chat.jid = view.jid;
    ui.state.dataset.jid = view.jid || '';
    $('chat-jid').textContent = view.jid || '';
    showState(view.state);
    showOwn(view.presence);
    chat.contacts = new Map(view.contacts.map((c) => [c.jid, c]));
    chat.requests = new Set(view.requests);
    renderContacts();
    renderRequests();
    if (chat.with) openConversation(chat.with);
  }

  function onEvent(event) {
    let e;
    try {
      e = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (e.type) {
      case 'snapshot':
      case 'resync': applySnapshot(e.chat); break;
      case 'state': showState(e.state); break;
      case 'own_presence': showOwn(e.presence); break;
      case 'roster': chat.contacts = new Map(e.contacts.map((c) => [c.jid, c])); renderContacts(); break;
      case 'contact': chat.contacts.set(e.contact.jid, e.contact); renderContacts(); break;
      case 'contact_removed': chat.contacts.delete(e.jid); renderContacts(); break;
      case 'presence': {
        const c = chat.contacts.get(e.jid);
        if (c) Object.assign(c, { availability: e.availability, status: e.status });
        renderContacts();
        break;
      }
      case 'subscription_request': chat.requests.add(e.from); renderRequests(); break;
      case 'message': onMessage(e.message); break;
      default: load(); // an event this page does not know: read everything again
    }
  }

  function connect() {
    if (source) source.close();
    source = new EventSource('/api/v1/me/chat/events');
    source.onmessage = onEvent;
    source.onerror = () => {
      // The browser reconnects by itself unless the server refused the stream (401, 409).
      if (source && source.readyState === EventSource.CLOSED) {
        source = null;
        clearTimeout(retryTimer);
        retryTimer = setTimeout(load, RETRY_MS);
      }
    };
  }

  /** Read the chat; start the live stream unless chat is not available to this session. */
  async function load() {
    if (!ui) return;
    try {
      applySnapshot(await api('GET', '/api/v1/me/chat'));
    } catch (e) {
      if (e.code === 'chat_not_configured') {
        show(ui.card, false);
        return;
      }
      show(ui.card, true);
      if (['chat_needs_password', 'chat_on_other_node'].includes(e.code)) {
        setState('unavailable');
        say(ui.error, 'info', e.message);
        return;
      }
      if (e.status === 401) return;
      fail(e);
    }
    show(ui.card, true);
    if (!source) connect();
  }

  function setState(label) {
    ui.state.className = 'badge';
    ui.state.textContent = label;
  }

  async function setPresence(event) {
    event.preventDefault();
    const done = await call('PUT', '/api/v1/me/chat/presence', { availability: ui.presence.value, status: ui.status.value }, ui.presenceSave);
    if (done.ok) showOwn(done.answer);
  }

  async function addContact(event) {
    event.preventDefault();
    const body = { jid: ui.addJid.value.trim() };
    if (ui.addName.value.trim()) body.name = ui.addName.value.trim();
    const done = await call('POST', '/api/v1/me/chat/contacts', body, ui.addButton);
    if (done.ok) {
      ui.addJid.value = '';
      ui.addName.value = '';
      say(ui.error, 'error', '');
    }
  }

  async function sendMessage(event) {
    event.preventDefault();
    const body = ui.input.value;
    if (!body.trim() || !chat.with) return;
    const to = chat.with;
    const done = await call('POST', '/api/v1/me/chat/messages', { to, body }, ui.send);
    if (!done.ok) return;
    ui.input.value = '';
    if (chat.with === to) {
      appendMessage({ id: done.answer.id, from: chat.jid, to, body, at_ms: Date.now(), direction: 'outgoing', delayed: false });
    }
  }

  /** Show the panel in the user page's section (from ucbUser.enter). */
  function enter(section) {
    leave();
    ui = build();
    show(ui.card, false);
    section.append(ui.card);
    load();
  }

  /** Stop the stream and forget everything (the next session may be another user's). */
  function leave() {
    clearTimeout(retryTimer);
    if (source) source.close();
    source = null;
    if (ui) ui.card.remove();
    ui = null;
    Object.assign(chat, { contacts: new Map(), requests: new Set(), peers: new Set(), unread: new Map(), with: null, seen: new Set(), jid: null });
  }

  return { enter, leave };
})();
