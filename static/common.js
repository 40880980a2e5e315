// What the page scripts share, loaded before them (deferred scripts run in
// document order): translated strings with places, the JSON API with the
// session's CSRF token, chat message markup, and stamps floating over the
// video. Everything is in
// `window.Stampede`; nothing here runs before a page script asks.
window.Stampede = (function () {
  'use strict';

  // Fills the `{name}` places of a translated string.
  function fmt(s, vars) {
    return s.replace(/\{(\w+)\}/g, function (_, k) { return vars[k] === undefined ? '' : String(vars[k]); });
  }

  // A JSON API caller for a page with strings `T` and a CSRF token in
  // <meta name="csrf-token">: api(method, url, body) resolves with the JSON
  // body and rejects with a message for the user. An error shows the page's
  // string for its code, or the server's own message for the codes in
  // `ownMessage` (those that name the field or rule that was not met).
  function apiCaller(T, ownMessage) {
    var csrf = document.querySelector('meta[name="csrf-token"]').content;
    var own = ownMessage || [];
    return function api(method, url, body) {
      var opts = { method: method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
      if (body !== undefined) {
        opts.headers['Content-Type'] = 'application/json';
        opts.body = JSON.stringify(body);
      }
      if (method !== 'GET') opts.headers['X-CSRF-Token'] = csrf;
      return fetch(url, opts).then(function (res) {
        return res.text().then(function (text) {
          var data = null;
          try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
          if (res.ok && data) return data;
          var err = data && data.error;
          var message = err && (own.indexOf(err.code) >= 0 ? err.message : (T['err_' + err.code] || err.message));
          throw new Error(message || fmt(T.err_request, { status: res.status }));
        });
      }, function () {
        throw new Error(T.err_unavailable);
      });
    };
  }

  // The markup every chat message shares (the server renders the same, see
  // web::pages): <li class="msg kind-…" data-user> holding a meta line (the
  // user, then a <time> the page fills in) and the text, set as text only.
  // Returns the parts, for the page to add its own.
  function messageParts(m) {
    var li = document.createElement('li');
    li.className = 'msg kind-' + (m.message_type || 'message');
    li.dataset.user = m.username || '';
    var meta = document.createElement('span');
    meta.className = 'meta';
    var user = document.createElement('span');
    user.className = 'user role-' + (m.role || 'viewer');
    user.textContent = m.username || '';
    var time = document.createElement('time');
    meta.appendChild(user);
    meta.appendChild(document.createTextNode(' '));
    meta.appendChild(time);
    var text = document.createElement('span');
    text.className = 'text';
    text.textContent = m.message;
    li.appendChild(meta);
    li.appendChild(text);
    return { li: li, meta: meta, time: time, text: text };
  }

  // The page's stamps by id ({name, url}), from its stamp buttons.
  function pageStamps() {
    var stamps = {};
    Array.prototype.forEach.call(document.querySelectorAll('.stamp'), function (b) {
      stamps[b.dataset.stampId] = { name: b.getAttribute('aria-label'), url: b.dataset.image };
    });
    return stamps;
  }

  // Floats stamp images up over the element `floats`, at most `max` at once
  // (whatever the counts): returns spawn(url), which floats one.
  function stampFloater(floats, max) {
    var floating = 0;
    return function spawn(url) {
      if (floating >= max || !url) return;
      floating++;
      var img = document.createElement('img');
      img.className = 'floating-stamp';
      img.src = url;
      img.alt = '';
      var h = floats.clientHeight || 300;
      img.style.setProperty('--x', (5 + Math.random() * 85).toFixed(1) + '%');
      img.style.setProperty('--drift', Math.round(Math.random() * 80 - 40) + 'px');
      img.style.setProperty('--rise', Math.round(h * (0.7 + Math.random() * 0.35)) + 'px');
      img.style.setProperty('--dur', (2.6 + Math.random() * 0.8).toFixed(2) + 's');
      var done = false;
      function remove() {
        if (done) return;
        done = true;
        floating--;
        img.remove();
      }
      img.addEventListener('animationend', remove);
      setTimeout(remove, 4000); // in case the animation never runs
      floats.appendChild(img);
    };
  }

  return {
    fmt: fmt,
    apiCaller: apiCaller,
    messageParts: messageParts,
    pageStamps: pageStamps,
    stampFloater: stampFloater
  };
})();
