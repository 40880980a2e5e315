// Studio, for admins: add, test and remove webhooks; create and revoke API
// tokens, through /api/webhooks and /api/tokens. Secrets shown once are put in
// the page as text (never as HTML); every change carries the CSRF token.
(function () {
  'use strict';

  var T = JSON.parse(document.getElementById('i18n').textContent);
  var section = document.getElementById('integrations');
  if (!section) return;
  var alertBox = document.getElementById('integrations-alert');
  var statusBox = document.getElementById('integrations-status');

  var fmt = Stampede.fmt;

  // The server's message names the field or rule that was not met.
  var api = Stampede.apiCaller(T, ['invalid']);

  function fail(e) { statusBox.textContent = ''; alertBox.textContent = e.message; }
  function done(text) { alertBox.textContent = ''; statusBox.textContent = text; }

  // A value shown once: plain text the admin can select and copy.
  function showOnce(text) {
    alertBox.textContent = '';
    statusBox.textContent = '';
    var p = document.createElement('span');
    p.className = 'once';
    p.textContent = text;
    statusBox.appendChild(p);
  }

  var hookForm = document.getElementById('new-webhook');
  hookForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var body = { url: hookForm.elements.url.value.trim() };
    var events = hookForm.elements.events.value.trim();
    if (events) body.events = events.split(',').map(function (s) { return s.trim(); }).filter(Boolean);
    api('POST', '/api/webhooks', body).then(function (data) {
      hookForm.reset();
      showOnce(fmt(T.ig_secret_once, { id: data.id, secret: data.secret }));
    }, fail);
  });

  var tokenForm = document.getElementById('new-token');
  tokenForm.addEventListener('submit', function (e) {
    e.preventDefault();
    var scopes = Array.prototype.filter.call(tokenForm.querySelectorAll('input[name="scope"]'), function (c) {
      return c.checked;
    }).map(function (c) { return c.value; });
    var body = { username: tokenForm.elements.username.value.trim(), scopes: scopes };
    var label = tokenForm.elements.name.value.trim();
    if (label) body.name = label;
    api('POST', '/api/tokens', body).then(function (data) {
      tokenForm.reset();
      showOnce(fmt(T.ig_token_once, { id: data.id, token: data.token }));
    }, fail);
  });

  section.addEventListener('click', function (e) {
    var button = e.target.closest('button[data-action]');
    if (!button) return;
    var hook = button.closest('[data-webhook-id]');
    var action = button.getAttribute('data-action');
    if (action === 'test-webhook' && hook) {
      var result = hook.querySelector('[data-role="result"]');
      result.textContent = T.loading;
      button.disabled = true;
      api('POST', '/api/webhooks/' + hook.getAttribute('data-webhook-id') + '/test').then(function (a) {
        button.disabled = false;
        if (a.ok) result.textContent = fmt(T.ig_test_ok, { status: a.status_code, ms: a.latency_ms });
        else if (a.status_code) result.textContent = fmt(T.ig_test_status, { status: a.status_code });
        else result.textContent = fmt(T.ig_test_failed, { error: a.error || '' });
      }, function (err) { button.disabled = false; result.textContent = ''; fail(err); });
    } else if (action === 'remove-webhook' && hook) {
      api('DELETE', '/api/webhooks/' + hook.getAttribute('data-webhook-id')).then(function () {
        hook.remove();
        done(T.ig_removed);
      }, fail);
    } else if (action === 'revoke-token') {
      var row = button.closest('[data-token-id]');
      api('DELETE', '/api/tokens/' + row.getAttribute('data-token-id')).then(function () {
        row.querySelector('[data-role="state"]').textContent = 'revoked';
        button.remove();
        done(T.ig_revoked);
      }, fail);
    }
  });
})();
