// Studio: create streams, go live / end, and manage each stream's moderators,
// slow mode, blocked terms and moderation log through the JSON API. Every
// POST carries the session's CSRF token from <meta name="csrf-token">.
(function () {
  'use strict';

  var T = JSON.parse(document.getElementById('i18n').textContent);
  var lang = document.documentElement.lang || 'en';

  var fmt = Stampede.fmt;
  var streamsBox = document.getElementById('studio-streams');
  var isAdmin = !!streamsBox && streamsBox.dataset.admin === 'true';

  // Calls the API; resolves with the JSON body, rejects with a user-facing message.
  var api = Stampede.apiCaller(T);

  function say(el, text) { el.textContent = text; }

  // ---------------------------------------------------------------- new stream
  var newForm = document.getElementById('new-stream');

  // Description preview: the server renders and cleans the Markdown exactly as
  // the watch page will (links, bold, italics, lists); its HTML is safe.
  var descField = document.getElementById('ns-description');
  var preview = document.getElementById('ns-preview');
  var previewTimer = null;
  if (descField && preview) {
    descField.addEventListener('input', function () {
      clearTimeout(previewTimer);
      previewTimer = setTimeout(function () {
        var text = descField.value;
        if (!text.trim()) { preview.hidden = true; preview.innerHTML = ''; return; }
        api('POST', '/api/markdown/preview', { markdown: text }).then(function (data) {
          preview.innerHTML = data.html;
          preview.hidden = false;
        }, function () { /* the preview is a convenience: keep the last one */ });
      }, 300);
    });
  }
  if (newForm) {
    var title = document.getElementById('ns-title');
    var description = document.getElementById('ns-description');
    var video = document.getElementById('ns-video');
    var titleError = document.getElementById('ns-title-error');
    var videoError = document.getElementById('ns-video-error');
    var newAlert = document.getElementById('new-stream-alert');

    function fieldError(input, el, text) {
      el.textContent = text || '';
      if (text) input.setAttribute('aria-invalid', 'true'); else input.removeAttribute('aria-invalid');
    }

    newForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var t = title.value.trim();
      var v = video.value.trim();
      var titleBad = t === '' || Array.from(t).length > 200;
      var videoBad = v !== '' && !/^https?:\/\/[^\s/@]+/i.test(v);
      fieldError(title, titleError, titleBad ? T.title_required : '');
      fieldError(video, videoError, videoBad ? T.url_invalid : '');
      say(newAlert, '');
      if (titleBad) { title.focus(); return; }
      if (videoBad) { video.focus(); return; }
      var button = newForm.querySelector('button[type=submit]');
      button.disabled = true;
      api('POST', '/api/streams', { title: t, description: description.value, video_url: v })
        .then(function (data) {
          location.assign('/studio?created=' + encodeURIComponent(data.id) + '#stream-' + data.id);
        }, function (err) {
          button.disabled = false;
          say(newAlert, err.message);
        });
    });
  }

  // ---------------------------------------------------------------- each stream
  Array.prototype.forEach.call(document.querySelectorAll('.studio-stream'), function (section) {
    var id = section.dataset.streamId;
    var base = '/api/streams/' + encodeURIComponent(id);
    var alertEl = section.querySelector('[data-role=alert]');
    var statusEl = section.querySelector('[data-role=status]');
    var liveButton = section.querySelector('[data-action=live]');
    var endButton = section.querySelector('[data-action=end]');
    var details = section.querySelector('[data-role=manage]');
    var modList = section.querySelector('[data-role=moderators]');
    var termList = section.querySelector('[data-role=terms]');
    var logBody = section.querySelector('[data-role=log]');
    var loaded = false;

    function fail(err) { say(alertEl, err.message); }

    function setStatus(status) {
      section.dataset.status = status;
      statusEl.className = 'badge ' + status;
      statusEl.textContent = T['status_' + status] || status;
      liveButton.hidden = status !== 'scheduled';
      endButton.hidden = status === 'ended';
    }

    function postStatus(status) {
      say(alertEl, '');
      return api('POST', base + '/status', { status: status }).then(function (data) { setStatus(data.status); }, fail);
    }

    liveButton.addEventListener('click', function () { postStatus('live'); });

    // Ending cannot be undone: the first press asks, the second ends.
    var armed = null;
    var endLabel = endButton.textContent;
    endButton.addEventListener('click', function () {
      if (!armed) {
        endButton.textContent = T.confirm_end;
        armed = setTimeout(function () { armed = null; endButton.textContent = endLabel; }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      endButton.textContent = endLabel;
      postStatus('ended');
    });

    // items are strings, or {label, value} when the label says more than the value.
    function chips(ul, items, empty, onRemove) {
      ul.textContent = '';
      if (!items.length) {
        var li = document.createElement('li');
        li.className = 'empty';
        li.textContent = empty;
        ul.appendChild(li);
        return;
      }
      items.forEach(function (entry) {
        var item = typeof entry === 'string' ? entry : entry.value;
        var li = document.createElement('li');
        var label = document.createElement('span');
        label.textContent = typeof entry === 'string' ? entry : entry.label;
        var b = document.createElement('button');
        b.type = 'button';
        b.className = 'small';
        b.textContent = T.remove;
        b.setAttribute('aria-label', T.remove + ': ' + item);
        b.addEventListener('click', function () { onRemove(item, entry); });
        li.appendChild(label);
        if (typeof entry === 'string' || !entry.fixed) li.appendChild(b);
        ul.appendChild(li);
      });
    }

    function showModerators(data) {
      chips(modList, data.moderators || [], T.no_moderators, function (name) {
        api('POST', base + '/moderators', { username: name, action: 'remove' }).then(showModerators, fail);
      });
    }

    function showTerms(data) {
      var terms = (data.terms || []).map(function (t) {
        if (typeof t === 'string') return t;
        var label = t.term + (t.mode === 'hold' ? ' (' + T.term_hold + ')' : '') + (t.scope === 'tenant' ? ' (' + T.term_tenant + ')' : '');
        // Only an admin changes the tenant's list: others see its terms.
        return { label: label, value: t.term, scope: t.scope, fixed: t.scope === 'tenant' && !isAdmin };
      });
      // A term is removed from the list it is on: the stream's or, for an
      // admin, the tenant's.
      chips(termList, terms, T.no_terms, function (term, entry) {
        var body = { term: term, action: 'remove' };
        if (entry && entry.scope) body.scope = entry.scope;
        api('POST', base + '/blocked_terms', body).then(showTerms, fail);
      });
    }

    function cell(tr, text) {
      var td = document.createElement('td');
      td.textContent = text == null ? '' : String(text);
      tr.appendChild(td);
    }

    function showLog(data) {
      logBody.textContent = '';
      var entries = data.entries || [];
      if (!entries.length) {
        var tr = document.createElement('tr');
        var td = document.createElement('td');
        td.colSpan = 5;
        td.className = 'muted';
        td.textContent = T.no_log;
        tr.appendChild(td);
        logBody.appendChild(tr);
        return;
      }
      entries.forEach(function (e) {
        var tr = document.createElement('tr');
        var when = new Date(e.created_at);
        cell(tr, isNaN(when.getTime()) ? e.created_at : when.toLocaleString(lang));
        var action = e.action;
        if (e.seconds) action += ' (' + e.seconds + ' s)';
        if (e.message_id) action += ' #' + e.message_id;
        cell(tr, action);
        cell(tr, e.moderator);
        cell(tr, e.target);
        cell(tr, e.reason);
        logBody.appendChild(tr);
      });
    }

    function loadLog() { return api('GET', base + '/moderation/log').then(showLog, fail); }

    function load() {
      say(alertEl, '');
      api('GET', base + '/moderators').then(showModerators, fail);
      api('GET', base + '/blocked_terms').then(showTerms, fail);
      loadLog();
    }

    details.addEventListener('toggle', function () {
      if (details.open && !loaded) { loaded = true; load(); }
    });
    if (location.hash === '#stream-' + id) details.open = true;

    section.querySelector('[data-action=refresh-log]').addEventListener('click', loadLog);

    // An "add" form: posts its trimmed `field` (skipped when empty), then
    // clears it and shows the list the server answers with.
    function onAdd(formName, field, post, show) {
      section.querySelector('[data-form=' + formName + ']').addEventListener('submit', function (e) {
        e.preventDefault();
        var input = e.target.elements[field];
        var value = input.value.trim();
        if (!value) return;
        say(alertEl, '');
        post(value, e.target.elements).then(function (data) {
          input.value = '';
          show(data);
        }, fail);
      });
    }

    onAdd('moderator', 'username', function (name) {
      return api('POST', base + '/moderators', { username: name, action: 'add' });
    }, showModerators);

    onAdd('term', 'term', function (term, fields) {
      var hold = fields.hold;
      var body = { term: term, action: 'add', mode: hold && hold.checked ? 'hold' : 'block' };
      return api('POST', base + '/blocked_terms', body);
    }, showTerms);

    // Chat modes: each change is a `modes` moderation frame. The shield moves
    // other settings too, so the form then reads the stream's state back
    // from the studio page the server renders.
    var modesForm = section.querySelector('[data-form=modes]');
    var slowInput = section.querySelector('[data-form=slow] input[name=seconds]');

    function refreshModes() {
      return fetch('/studio', { credentials: 'same-origin' })
        .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error(fmt(T.err_request, { status: r.status }))); })
        .then(function (html) {
          var doc = new DOMParser().parseFromString(html, 'text/html');
          var fresh = doc.getElementById('stream-' + id);
          if (!fresh) return;
          var form = fresh.querySelector('[data-form=modes]');
          Array.prototype.forEach.call(modesForm.querySelectorAll('input[type=checkbox]'), function (input) {
            input.checked = form.elements[input.name].checked;
          });
          var minutes = modesForm.elements.established_minutes;
          if (document.activeElement !== minutes) minutes.value = form.elements.established_minutes.value;
          var slow = fresh.querySelector('[data-form=slow] input[name=seconds]');
          if (slow && document.activeElement !== slowInput) slowInput.value = slow.value;
        });
    }

    // While a change is saved and read back the form is aria-busy: a change
    // that lands meanwhile is not yet what the server holds.
    var saving = 0;
    function busy(delta) {
      saving += delta;
      if (saving > 0) modesForm.setAttribute('aria-busy', 'true');
      else modesForm.removeAttribute('aria-busy');
    }

    function postModes(change) {
      say(alertEl, '');
      busy(1);
      var body = { type: 'modes' };
      Object.keys(change).forEach(function (k) { body[k] = change[k]; });
      return api('POST', base + '/moderation', body)
        .then(function () {
          var note = modesForm.querySelector('.saved-note') || document.createElement('span');
          note.className = 'saved-note muted';
          note.setAttribute('role', 'status');
          note.textContent = T.modes_saved;
          modesForm.appendChild(note);
          if (loaded) loadLog();
        }, fail)
        .then(refreshModes)
        .catch(fail)
        .then(idle, idle);
    }

    function idle() {
      busy(-1);
    }

    modesForm.addEventListener('change', function (e) {
      if (e.target.type !== 'checkbox') return;
      var change = {};
      change[e.target.name] = e.target.checked;
      postModes(change);
    });

    modesForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var minutes = Math.max(0, Math.min(525600, Math.floor(Number(modesForm.elements.established_minutes.value) || 0)));
      postModes({ established_minutes: minutes });
    });

    section.querySelector('[data-form=slow]').addEventListener('submit', function (e) {
      e.preventDefault();
      var seconds = Math.max(0, Math.floor(Number(e.target.elements.seconds.value) || 0));
      say(alertEl, '');
      api('POST', base + '/moderation', { type: 'slow_mode', seconds: seconds }).then(function () {
        say(alertEl, '');
        var note = section.querySelector('.saved-note') || document.createElement('span');
        note.className = 'saved-note muted';
        note.setAttribute('role', 'status');
        note.textContent = seconds ? T.saved : T.slow_off;
        e.target.appendChild(note);
        loadLog();
      }, fail);
    });
  });
})();
