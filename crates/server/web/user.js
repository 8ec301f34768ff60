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
      h('div', { class: 'view-head' }, h('h1', { text: 'My phone and voicemail' })),
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
  }

  /** Forget everything shown (from app.js leaveSession): the next session may be another's. */
  function leave() {
    clearTimeout(pollTimer);
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
