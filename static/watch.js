// Watch page: live chat over the WebSocket protocol (PROTOCOL.md), stamps
// floating over the video, presence, the pinned message and moderation.
// Chat text is only ever inserted with textContent. Messages typed while the
// socket is down wait in a queue and are sent with their client_id once it is
// back, so a message is never lost and never shown twice.
(function () {
  'use strict';

  var root = document.getElementById('watch');
  if (!root || root.dataset.replay === 'true') return; // replay.js plays past streams
  var T = JSON.parse(document.getElementById('i18n').textContent);

  var MAX_CHARS = 500;
  var MAX_FLOATING = 40;        // stamps animating at once, whatever the counts
  var MAX_PER_STAMP = 12;       // per stamp and reactions frame
  var MAX_MESSAGES = 500;       // message elements kept in the list
  var BACKOFF_BASE_MS = 500;
  var BACKOFF_MAX_MS = 15000;
  var RETRY_UNAVAILABLE_MS = 2000;

  var streamId = root.dataset.streamId;
  var canModerate = root.dataset.canModerate === 'true';
  var signedIn = root.dataset.signedIn === 'true';
  var me = root.dataset.username || null;
  var lang = root.dataset.lang || 'en';

  // As in replay.js: the page's elements, looked up once by id.
  var list = document.getElementById('messages');
  var box = document.getElementById('message-box');
  var sendButton = document.getElementById('send');
  var form = document.getElementById('composer');
  var counter = document.getElementById('counter');
  var reason = document.getElementById('composer-reason');
  var conn = document.getElementById('conn');
  var alertBox = document.getElementById('alert');
  var viewersEl = document.getElementById('viewers');
  var pinnedBox = document.getElementById('pinned');
  var pinnedBody = document.getElementById('pinned-body');
  var unpinButton = document.getElementById('unpin');
  var slowEl = document.getElementById('slow');
  var floats = document.getElementById('floats');

  var stamps = Stampede.pageStamps(); // stamp_id -> {name, url}

  // ---------------------------------------------------------------- state
  var seen = new Set();         // every message id shown (deleted ones too)
  var lastId = 0;               // resume point: the highest id received in order
  var synced = false;           // a history has come: resume at lastId, even at 0
  var resuming = false;         // the current socket asked for what came after lastId
  var pending = new Map();      // client_id -> {text, el, sentOn}
  var ws = null;
  var helloSeen = false;
  var hellos = 0;               // hello frames so far: above 1, a reconnect
  var attempt = 0;
  var reconnectTimer = null;
  var stopped = false;
  var canChat = !box.disabled;
  var chatBlock = null;         // why chat is blocked by the server, if it is
  var timeoutTimer = null;
  var pinnedId = null;
  var replyTo = null;           // {id, username, excerpt} of the message replied to
  var editingId = null;         // id of the own message being edited
  var hiddenUsers = new Set();  // users known to be hidden (moderators only)
  var heldItems = new Map();    // held_id -> element of the review panel (moderators)
  var modes = null;             // the stream's chat modes, from hello and notices
  var EDIT_WINDOW_MS = 120000;

  var fmt = Stampede.fmt;

  function chars(s) { return Array.from(s).length; }

  function clock(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return '';
    return d.toLocaleTimeString(lang, { hour: '2-digit', minute: '2-digit' });
  }

  function newClientId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return 'c-' + Array.prototype.map.call(bytes, function (b) { return ('0' + b.toString(16)).slice(-2); }).join('');
  }

  function escapeRegExp(s) { return s.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&'); }

  // The server lists who a message mentions; older frames only have the text.
  function mentionsMe(m) {
    if (!me) return false;
    if (Array.isArray(m.mentions)) {
      var low = me.toLowerCase();
      return m.mentions.some(function (n) { return String(n).toLowerCase() === low; });
    }
    return mentions(m.message || '');
  }

  function mentions(text) {
    if (!me) return false;
    var re = new RegExp('(^|[^A-Za-z0-9_.-])@' + escapeRegExp(me) + '(?![A-Za-z0-9_-])', 'i');
    return re.test(text);
  }

  // ---------------------------------------------------------------- alerts
  var alertTimer = null;
  function showError(text) {
    alertBox.textContent = text;
    clearTimeout(alertTimer);
    alertTimer = setTimeout(function () { alertBox.textContent = ''; }, 8000);
  }

  function errorText(f) {
    if (f.code === 'too_new') {
      var ms = f.retry_after_ms;
      if (typeof ms !== 'number' || ms <= 0) return T.err_too_new_plain;
      var wait = ms >= 60000
        ? fmt(T.wait_minutes, { n: Math.ceil(ms / 60000) })
        : fmt(T.wait_seconds, { n: Math.ceil(ms / 1000) });
      return fmt(T.err_too_new, { wait: wait });
    }
    var key = 'err_' + f.code;
    return T[key] || f.message || T.err_invalid;
  }

  // ---------------------------------------------------------------- connection state
  function setState(state) {
    var text = { connecting: T.connecting, live: T.connected, reconnecting: T.reconnecting, stopped: T.stopped }[state];
    conn.dataset.state = state;
    root.dataset.state = state;
    conn.textContent = text;
  }

  // ---------------------------------------------------------------- composer
  function updateComposer() {
    var allowed = signedIn && canChat && !chatBlock && !stopped;
    box.disabled = !allowed;
    var n = chars(box.value);
    counter.textContent = n + '/' + MAX_CHARS;
    counter.classList.toggle('over', n > MAX_CHARS);
    sendButton.disabled = !allowed || n > MAX_CHARS || box.value.trim() === '';
    if (!signedIn) return; // the server-rendered "log in" reason and link stay
    reason.textContent = allowed ? '' : (chatBlock || T.cannot_chat);
  }

  function block(why) { chatBlock = why; updateComposer(); }

  // Blocked by a moderator: the composer says why, and so does the alert.
  function blockAndTell(why) { block(why); showError(why); }

  function unblock() { chatBlock = null; clearTimeout(timeoutTimer); updateComposer(); }

  // ---------------------------------------------------------------- messages
  // A button of a message's tools, named by its `action` (what a click does).
  function actionButton(action, text, className) {
    var b = document.createElement('button');
    b.type = 'button';
    b.className = className;
    b.dataset.action = action;
    b.textContent = text;
    return b;
  }

  function modTools(fromUser, username) {
    var span = document.createElement('span');
    span.className = 'mod-tools';
    span.setAttribute('role', 'group');
    span.setAttribute('aria-label', T.moderation_tools);
    var actions = fromUser ? ['delete', 'pin', 'timeout', 'ban', 'hide'] : ['delete', 'pin'];
    actions.forEach(function (a) {
      var text = a === 'hide' && hiddenUsers.has(username) ? T.unhide : T[a];
      span.appendChild(actionButton(a, text, a === 'ban' ? 'small danger' : 'small'));
    });
    return span;
  }

  // Hide buttons say "Unhide" for users known to be hidden.
  function setHidden(username, hidden) {
    if (!username) return;
    if (hidden) hiddenUsers.add(username); else hiddenUsers.delete(username);
    Array.prototype.forEach.call(list.querySelectorAll('.msg button[data-action="hide"]'), function (b) {
      if (b.closest('.msg').dataset.user === username) b.textContent = hidden ? T.unhide : T.hide;
    });
  }

  function messageElement(m) {
    var parts = Stampede.messageParts(m);
    var li = parts.li;
    var meta = parts.meta;
    var kind = m.message_type || 'message';
    if (typeof m.id === 'number') li.dataset.id = String(m.id);
    if (m.timestamp) {
      parts.time.dateTime = m.timestamp;
      parts.time.textContent = clock(m.timestamp);
    }
    if (m.reply_to) li.insertBefore(replyRef(m.reply_to), parts.text);
    if (m.edited_at) li.appendChild(editedMark());
    if (kind === 'message' && mentionsMe(m)) li.classList.add('mention');
    // Only moderators learn that a message is hidden: its author must not.
    if (canModerate && m.hidden) {
      if (kind === 'message' && m.username) hiddenUsers.add(m.username);
      li.classList.add('hidden-msg');
      var mark = document.createElement('span');
      mark.className = 'hidden-mark';
      mark.textContent = ' (' + T.hidden_mark + ')';
      meta.appendChild(mark);
    }
    if (signedIn && typeof m.id === 'number' && kind === 'message') li.appendChild(chatTools(m));
    if (canModerate && typeof m.id === 'number' && (kind === 'message' || kind === 'system' || kind === 'moderation')) {
      li.appendChild(modTools(kind === 'message' && m.username && m.username !== 'system', m.username));
    }
    return li;
  }

  function replyRef(r) {
    var q = document.createElement('span');
    q.className = 'reply-ref';
    q.dataset.replyTo = String(r.id);
    q.textContent = '\u21aa @' + (r.username || '') + ': ' + (r.excerpt || '');
    return q;
  }

  function editedMark() {
    var e = document.createElement('span');
    e.className = 'edited';
    e.textContent = ' ' + (T.edited || '(edited)');
    return e;
  }

  // Reply on every message; Edit on one's own while it may be edited.
  function chatTools(m) {
    var span = document.createElement('span');
    span.className = 'chat-tools';
    span.appendChild(actionButton('reply', T.reply || 'Reply', 'small'));
    var age = m.timestamp ? Date.now() - Date.parse(m.timestamp) : 0;
    if (me && m.username === me && age < EDIT_WINDOW_MS) {
      var e = actionButton('edit', T.edit || 'Edit', 'small');
      span.appendChild(e);
      setTimeout(function () { e.remove(); }, Math.max(0, EDIT_WINDOW_MS - age));
    }
    return span;
  }

  // The bar above the message box: "Replying to @bob: …" or "Editing".
  var intentBar = document.createElement('div');
  intentBar.className = 'intent';
  intentBar.hidden = true;
  var intentText = document.createElement('span');
  var intentCancel = document.createElement('button');
  intentCancel.type = 'button';
  intentCancel.className = 'small';
  intentCancel.textContent = T.cancel || 'Cancel';
  intentBar.appendChild(intentText);
  intentBar.appendChild(document.createTextNode(' '));
  intentBar.appendChild(intentCancel);
  form.insertBefore(intentBar, form.firstChild);
  intentCancel.addEventListener('click', function () { clearIntent(); box.focus(); });

  function clearIntent() {
    if (editingId !== null) box.value = '';
    replyTo = null;
    editingId = null;
    intentBar.hidden = true;
    updateComposer();
  }

  function startReply(li) {
    var text = li.querySelector('.text');
    if (editingId !== null) box.value = '';
    editingId = null;
    replyTo = { id: Number(li.dataset.id), username: li.dataset.user, excerpt: Array.from(text ? text.textContent : '').slice(0, 80).join('') };
    intentText.textContent = fmt(T.replying_to || 'Replying to @{user}: {text}', { user: replyTo.username, text: replyTo.excerpt });
    intentBar.hidden = false;
    box.focus();
  }

  function startEdit(li) {
    var text = li.querySelector('.text');
    replyTo = null;
    editingId = Number(li.dataset.id);
    intentText.textContent = T.editing || 'Editing your message';
    intentBar.hidden = false;
    box.value = text ? text.textContent : '';
    updateComposer();
    box.focus();
  }

  function onEdit(f) {
    var li = list.querySelector('.msg[data-id="' + Number(f.message_id) + '"]');
    if (li) {
      var text = li.querySelector('.text');
      if (text) text.textContent = f.message;
      if (text && !li.querySelector('.edited')) text.after(editedMark());
      li.classList.toggle('mention', mentionsMe({ message: f.message, mentions: f.mentions }));
    }
    if (pinnedId === f.message_id) {
      var who = pinnedBody.querySelector('strong');
      pinnedBody.textContent = '';
      if (who) pinnedBody.appendChild(who);
      pinnedBody.appendChild(document.createTextNode(f.message || ''));
    }
  }

  function nearBottom() { return list.scrollHeight - list.scrollTop - list.clientHeight < 80; }

  function scrollDown(wasNear) { if (wasNear) list.scrollTop = list.scrollHeight; }

  // Confirmed messages go before the pending ones (which wait at the bottom).
  function insertConfirmed(el) {
    var firstPending = list.querySelector('.msg.pending');
    list.insertBefore(el, firstPending);
    var all = list.querySelectorAll('.msg[data-id]');
    for (var i = 0; i < all.length - MAX_MESSAGES; i++) all[i].remove();
  }

  function addMessage(m, inOrder) {
    var kind = m.message_type;
    var wasNear = nearBottom();
    if (kind === 'join' || kind === 'leave') {
      insertConfirmed(messageElement(m));
      scrollDown(wasNear);
      return;
    }
    if (typeof m.id !== 'number') return;
    if (inOrder && m.id > lastId) lastId = m.id;
    var mine = m.client_id && m.username === me ? pending.get(m.client_id) : null;
    if (seen.has(m.id)) {
      if (mine) settle(m.client_id, m.id);
      return;
    }
    seen.add(m.id);
    var el = messageElement(m);
    if (mine) {
      pending.delete(m.client_id);
      mine.el.replaceWith(el);
      var firstPending = list.querySelector('.msg.pending');
      if (firstPending && el.compareDocumentPosition(firstPending) & Node.DOCUMENT_POSITION_PRECEDING) {
        list.insertBefore(el, firstPending);
      }
    } else {
      insertConfirmed(el);
    }
    scrollDown(wasNear);
  }

  // A pending message whose id is known: drop the placeholder if the message
  // is already shown, else turn the placeholder into the message.
  function settle(clientId, id) {
    var p = pending.get(clientId);
    if (!p) return;
    pending.delete(clientId);
    if (seen.has(id)) {
      p.el.remove();
      return;
    }
    seen.add(id);
    var el = messageElement({
      id: id, username: me, message: p.text, message_type: 'message',
      timestamp: new Date().toISOString(), role: null, client_id: clientId
    });
    p.el.replaceWith(el);
  }

  function pendingElement(text) {
    var el = messageElement({ username: me, message: text, message_type: 'message' });
    el.classList.add('pending');
    var state = document.createElement('span');
    state.className = 'state';
    el.appendChild(state);
    return el;
  }

  function markPending(p) {
    if (p.held) return;
    var state = p.el.querySelector('.state');
    if (state) state.textContent = ws && helloSeen ? T.sending : T.queued;
  }

  function flushPending() {
    if (!ws || ws.readyState !== WebSocket.OPEN || !helloSeen) {
      pending.forEach(markPending);
      return;
    }
    pending.forEach(function (p, clientId) {
      if (p.sentOn === ws || p.held) return;
      p.sentOn = ws;
      var frame = { type: 'message', message: p.text, client_id: clientId };
      if (p.replyTo) frame.reply_to = p.replyTo;
      ws.send(JSON.stringify(frame));
      markPending(p);
    });
  }

  function submit() {
    var text = box.value;
    if (text.trim() === '' || box.disabled) return;
    if (chars(text) > MAX_CHARS) { showError(T.too_long); return; }
    if (editingId !== null) {
      if (sendFrame({ type: 'edit', message_id: editingId, message: text })) clearIntent();
      return;
    }
    var clientId = newClientId();
    var p = { text: text, el: pendingElement(text), sentOn: null, replyTo: replyTo ? replyTo.id : null };
    if (replyTo) { p.el.insertBefore(replyRef(replyTo), p.el.querySelector('.text')); clearIntent(); }
    pending.set(clientId, p);
    list.appendChild(p.el);
    list.scrollTop = list.scrollHeight;
    box.value = '';
    updateComposer();
    flushPending();
  }

  // ---------------------------------------------------------------- frames
  function onHello(f) {
    helloSeen = true;
    hellos += 1;
    attempt = 0;
    if (f.user) me = f.user.username;
    canChat = !!f.can_chat;
    if (canChat) chatBlock = null;
    else if (!chatBlock && signedIn) chatBlock = root.dataset.status === 'ended' ? T.chat_closed : T.cannot_chat;
    (f.stamps || []).forEach(function (s) {
      stamps[String(s.stamp_id)] = { name: s.stamp_name, url: s.stamp_image_url };
    });
    setViewers(f.viewers);
    setSlowMode(f.slow_mode_seconds || 0);
    applyModes(f.modes);
    if (f.pinned) showPinned(f.pinned); else hidePinned();
    setState('live');
    updateComposer();
    flushPending();
  }

  function onHistory(f) {
    var resumed = resuming;
    synced = true;
    (f.messages || []).forEach(function (m) {
      // Elements rendered by the server (or before a reconnect) take the
      // history's fresher view: replies, edits, mentions, tools.
      var old = typeof m.id === 'number' && seen.has(m.id) && list.querySelector('.msg[data-id="' + m.id + '"]:not(.pending)');
      if (old) old.replaceWith(messageElement(m));
      addMessage(m, true);
    });
    if (f.truncated && resumed) showError(T.older_skipped);
    // After a reconnect (not the first connect: the page was just rendered),
    // at a random moment within 5 s, so that the pages of a restarted node
    // do not all ask at once.
    if (resumed && hellos > 1) setTimeout(reconcile, Math.random() * 5000);
  }

  // A resume brings what came after lastId, not what was deleted or cleared
  // meanwhile among the messages already shown: the replay API says which
  // of those are still there, and the others are removed.
  function reconcile() {
    var shown = list.querySelectorAll('.msg[data-id]:not(.pending)').length;
    if (!shown) return;
    var ceiling = lastId;
    var limit = Math.min(shown, 200);
    var url = '/api/streams/' + streamId + '/messages?limit=' + limit + '&before_id=' + (ceiling + 1);
    fetch(url, { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.json(); })
      .then(function (body) {
        var got = body.messages || [];
        var still = new Set(got.map(function (m) { return m.id; }));
        // Newest first: a full page leaves what is older than its last unknown.
        var floor = got.length === limit ? got[got.length - 1].id : 0;
        Array.prototype.forEach.call(list.querySelectorAll('.msg[data-id]:not(.pending)'), function (el) {
          var id = Number(el.dataset.id);
          if (id >= floor && id <= ceiling && !still.has(id)) el.remove();
        });
      })
      .catch(function () {});
  }

  function onAck(f) {
    if (f.client_id && typeof f.id === 'number') settle(f.client_id, f.id);
  }

  function onError(f) {
    var p = f.client_id ? pending.get(f.client_id) : null;
    if (f.code === 'denied') {
      var key = f.client_id && p ? f.client_id : heldClientId(f.held_id);
      p = key ? pending.get(key) : null;
      if (p) {
        // Marked as not approved for a while, then gone; never sent again.
        pending.delete(key);
        p.el.classList.remove('held');
        p.el.classList.add('denied');
        var state = p.el.querySelector('.state');
        if (state) state.textContent = T.held_denied;
        setTimeout(function () { p.el.remove(); }, 8000);
      }
      showError(errorText(f));
      return;
    }
    if (p && f.code === 'unavailable') {
      // Not stored: send again later with the same client_id.
      p.sentOn = null;
      markPending(p);
      showError(T.retrying);
      setTimeout(flushPending, RETRY_UNAVAILABLE_MS + Math.random() * 1000);
      return;
    }
    if (p) {
      pending.delete(f.client_id);
      p.el.remove();
      if (box.value === '' && !box.disabled) { box.value = p.text; updateComposer(); }
    }
    if (f.code === 'chat_closed') { canChat = false; block(T.chat_closed); }
    else if (f.code === 'banned') block(T.banned);
    else if (f.code === 'timed_out') block(T.err_timed_out);
    showError(errorText(f));
  }

  function heldClientId(heldId) {
    var found = null;
    pending.forEach(function (p, clientId) { if (p.held === heldId) found = clientId; });
    return found;
  }

  // ---------------------------------------------------------------- held for review
  // The sender's `held` names their client_id; moderators' name the author.
  function onHeld(f) {
    if (f.username !== undefined) addHeld(f);
    var p = f.client_id ? pending.get(f.client_id) : null;
    if (p && f.username === undefined) {
      p.held = f.held_id;
      p.el.classList.add('held');
      var state = p.el.querySelector('.state');
      if (state) state.textContent = T.held;
    }
  }

  var heldList = document.getElementById('held-list');
  var heldCount = document.getElementById('held-count');
  var heldEmpty = document.getElementById('held-empty');

  function heldChanged() {
    if (!heldList) return;
    heldCount.textContent = String(heldItems.size);
    heldEmpty.hidden = heldItems.size > 0;
  }

  function addHeld(item) {
    if (!heldList || typeof item.held_id !== 'number' || heldItems.has(item.held_id)) return;
    var li = document.createElement('li');
    li.className = 'held-item';
    li.dataset.heldId = String(item.held_id);
    var meta = document.createElement('span');
    meta.className = 'meta';
    var user = document.createElement('span');
    user.className = 'user';
    user.textContent = item.username || '';
    meta.appendChild(user);
    if (item.timestamp) {
      var time = document.createElement('time');
      time.dateTime = item.timestamp;
      time.textContent = clock(item.timestamp);
      meta.appendChild(document.createTextNode(' '));
      meta.appendChild(time);
    }
    var why = document.createElement('span');
    why.className = 'held-reason';
    why.textContent = ' (' + (T['reason_' + item.reason] || item.reason || '') + ')';
    meta.appendChild(why);
    var text = document.createElement('span');
    text.className = 'text';
    text.id = 'held-text-' + item.held_id;
    text.textContent = item.message || '';
    var tools = document.createElement('span');
    tools.className = 'held-tools';
    ['approve', 'deny'].forEach(function (a) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = a === 'deny' ? 'small danger' : 'small primary';
      b.dataset.heldAction = a;
      b.textContent = T[a];
      b.setAttribute('aria-describedby', text.id);
      tools.appendChild(b);
    });
    li.appendChild(meta);
    li.appendChild(text);
    li.appendChild(tools);
    heldList.appendChild(li);
    heldItems.set(item.held_id, li);
    heldChanged();
  }

  function removeHeld(heldId) {
    var li = heldItems.get(heldId);
    if (!li) return;
    heldItems.delete(heldId);
    // Keep keyboard focus in the panel: on the next item, else the heading.
    if (li.contains(document.activeElement)) {
      var next = li.nextElementSibling || li.previousElementSibling;
      var target = next ? next.querySelector('button') : document.getElementById('held-title');
      li.remove();
      if (target) target.focus();
    } else {
      li.remove();
    }
    heldChanged();
  }

  function onHeldQueue(f) {
    if (!heldList) return;
    heldItems.forEach(function (_, id) { removeHeld(id); });
    (f.items || []).forEach(addHeld);
    heldChanged();
  }

  if (heldList) {
    heldList.addEventListener('click', function (e) {
      var b = e.target.closest('button[data-held-action]');
      if (!b) return;
      var li = b.closest('.held-item');
      var heldId = Number(li.dataset.heldId);
      // One answer per item; the buttons keep focus (disabling would drop it).
      if (li.dataset.busy || !sendFrame({ type: b.dataset.heldAction, held_id: heldId })) return;
      li.dataset.busy = '1';
      li.setAttribute('aria-busy', 'true');
      // The notice removes the item; if none comes (an error), allow a retry.
      setTimeout(function () { delete li.dataset.busy; li.removeAttribute('aria-busy'); }, 5000);
    });
  }

  // ---------------------------------------------------------------- chat modes
  var modesForm = document.getElementById('modes-form');
  var modesNote = document.getElementById('modes-note');
  var MODE_FLAGS = ['stamps_only', 'unique_chat', 'hold_links', 'shield'];

  function applyModes(m) {
    if (!m) return;
    modes = m;
    if (modesForm) {
      MODE_FLAGS.forEach(function (k) {
        var input = modesForm.elements[k];
        input.checked = !!m[k];
        input.disabled = false;
      });
      var minutes = modesForm.elements.established_minutes;
      if (document.activeElement !== minutes) minutes.value = String(m.established_minutes || 0);
      minutes.disabled = false;
      modesForm.querySelector('button[type=submit]').disabled = false;
    }
    var active = [];
    if (m.shield) active.push(T.mode_shield);
    if (m.stamps_only) active.push(T.mode_stamps_only);
    if (m.unique_chat) active.push(T.mode_unique_chat);
    if (m.hold_links && canModerate) active.push(T.mode_hold_links);
    if (m.established_minutes) active.push(fmt(T.mode_established, { n: m.established_minutes }));
    modesNote.hidden = active.length === 0;
    modesNote.textContent = active.length ? fmt(T.active_modes, { list: active.join(', ') }) : '';
  }

  if (modesForm) {
    modesForm.addEventListener('change', function (e) {
      var input = e.target;
      if (MODE_FLAGS.indexOf(input.name) < 0) return;
      var frame = { type: 'modes' };
      frame[input.name] = input.checked;
      // Until the room's notice confirms it, the control shows the known state.
      if (!sendFrame(frame) && modes) input.checked = !!modes[input.name];
    });
    modesForm.addEventListener('submit', function (e) {
      e.preventDefault();
      var minutes = Math.max(0, Math.min(525600, Math.floor(Number(modesForm.elements.established_minutes.value) || 0)));
      sendFrame({ type: 'modes', established_minutes: minutes });
    });
  }

  function setViewers(n) {
    if (typeof n !== 'number') return;
    viewersEl.dataset.viewers = String(n);
    viewersEl.querySelector('.count').textContent = String(n);
  }

  function setSlowMode(seconds) {
    slowEl.hidden = !seconds;
    slowEl.textContent = seconds ? fmt(T.slow_mode, { n: seconds }) : '';
  }

  function showPinned(m) {
    pinnedId = m.id;
    pinnedBody.textContent = '';
    var who = document.createElement('strong');
    who.textContent = (m.username || '') + ': ';
    pinnedBody.appendChild(who);
    pinnedBody.appendChild(document.createTextNode(m.message || ''));
    pinnedBox.hidden = false;
  }

  function hidePinned() {
    pinnedId = null;
    pinnedBody.textContent = '';
    pinnedBox.hidden = true;
  }

  function onModeration(f) {
    switch (f.action) {
      case 'delete': {
        var el = list.querySelector('.msg[data-id="' + Number(f.message_id) + '"]');
        if (el) el.remove();
        seen.add(Number(f.message_id));
        if (pinnedId === f.message_id) hidePinned();
        break;
      }
      case 'clear':
        Array.prototype.forEach.call(list.querySelectorAll('.msg:not(.pending)'), function (e) { e.remove(); });
        hidePinned();
        break;
      case 'pin':
        if (f.message) showPinned(f.message);
        break;
      case 'unpin':
        hidePinned();
        break;
      case 'slow_mode':
        setSlowMode(f.seconds || 0);
        break;
      case 'ban':
        if (me && f.username === me) blockAndTell(T.banned);
        break;
      case 'timeout':
        if (me && f.username === me) {
          var until = f.until ? new Date(f.until) : null;
          blockAndTell(until ? fmt(T.timed_out_until, { time: until.toLocaleTimeString(lang) }) : T.err_timed_out);
          clearTimeout(timeoutTimer);
          if (until) timeoutTimer = setTimeout(unblock, Math.max(0, until - Date.now()) + 500);
        }
        break;
      case 'unban':
        if (me && f.username === me) unblock();
        break;
      case 'hide':
      case 'unhide':
        if (canModerate) setHidden(f.username, f.action === 'hide');
        break;
      case 'approve':
      case 'deny':
        removeHeld(Number(f.held_id));
        break;
      case 'modes':
        applyModes(f.modes);
        if (typeof f.slow_mode_seconds === 'number') setSlowMode(f.slow_mode_seconds);
        break;
    }
  }

  // ---------------------------------------------------------------- stamps
  var spawnStamp = Stampede.stampFloater(floats, MAX_FLOATING);

  function onReactions(f) {
    var windowMs = f.window_ms || 250;
    (f.stamps || []).forEach(function (s) {
      var url = s.stamp_image_url || (stamps[String(s.stamp_id)] || {}).url;
      var n = Math.min(s.count || 0, MAX_PER_STAMP);
      for (var i = 0; i < n; i++) {
        // Spread over the window so a burst rises as a stream, not a block.
        setTimeout(spawnStamp, Math.random() * windowMs, url);
      }
    });
  }

  // ---------------------------------------------------------------- socket
  function socketUrl() {
    var scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var url = scheme + '//' + location.host + '/ws/chat/stream_' + encodeURIComponent(streamId) + '/';
    // A page that has seen the room empty resumes too (from 0): a plain
    // connect would bring only the newest 50 of what it missed.
    resuming = synced || lastId > 0;
    return resuming ? url + '?last_id=' + lastId : url;
  }

  function connect() {
    reconnectTimer = null;
    if (stopped) return;
    setState(attempt === 0 && !helloSeen ? 'connecting' : 'reconnecting');
    var sock;
    try {
      sock = new WebSocket(socketUrl());
    } catch (e) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    helloSeen = false;
    sock.onmessage = function (ev) {
      if (ws !== sock) return;
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      handle(f);
    };
    sock.onclose = function (ev) {
      if (ws !== sock) return;
      ws = null;
      helloSeen = false;
      onClose(ev.code);
    };
  }

  function stop(why) {
    stopped = true;
    clearTimeout(reconnectTimer);
    setState('stopped');
    block(why);
    showError(why);
    pending.forEach(markPending);
  }

  function onClose(code) {
    if (code === 4003) return stop(T.banned_closed);
    // 4001 to an anonymous viewer: the tenant no longer shows streams to them.
    if (code === 4001) return stop(me ? T.session_ended : T.watching_ended);
    // 1006, 1012, 4008 and anything unexpected: come back, resuming at lastId.
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (stopped || reconnectTimer) return;
    setState('reconnecting');
    pending.forEach(markPending);
    var ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * Math.pow(2, Math.min(attempt, 10)));
    var delay = ceiling / 2 + Math.random() * ceiling / 2;
    attempt++;
    reconnectTimer = setTimeout(connect, delay);
  }

  function handle(f) {
    switch (f.type) {
      case 'hello': onHello(f); break;
      case 'history': onHistory(f); break;
      case 'message': addMessage(f, true); break;
      case 'ack': onAck(f); break;
      case 'error': onError(f); break;
      case 'reactions': onReactions(f); break;
      case 'moderation': onModeration(f); break;
      case 'presence': setViewers(f.viewers); break;
      case 'edit': onEdit(f); break;
      case 'held': onHeld(f); break;
      case 'held_queue': onHeldQueue(f); break;
    }
  }

  function sendFrame(frame) {
    if (!ws || ws.readyState !== WebSocket.OPEN || !helloSeen) {
      showError(T.not_connected);
      return false;
    }
    ws.send(JSON.stringify(frame));
    return true;
  }

  // ---------------------------------------------------------------- events
  form.addEventListener('submit', function (e) { e.preventDefault(); submit(); });
  box.addEventListener('input', updateComposer);
  box.addEventListener('keydown', function (e) {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submit();
    }
  });

  document.querySelector('.reaction-bar').addEventListener('click', function (e) {
    var b = e.target.closest('.stamp');
    if (!b || b.disabled) return;
    if (sendFrame({ type: 'reaction', stamp_id: Number(b.dataset.stampId) })) {
      b.classList.remove('pressed');
      void b.offsetWidth; // restart the press animation
      b.classList.add('pressed');
    }
  });

  list.addEventListener('click', function (e) {
    var b = e.target.closest('button[data-action]');
    if (!b) return;
    var li = b.closest('.msg');
    var id = Number(li.dataset.id);
    var user = li.dataset.user;
    switch (b.dataset.action) {
      case 'delete': sendFrame({ type: 'delete', message_id: id }); break;
      case 'pin': sendFrame({ type: 'pin', message_id: id }); break;
      case 'timeout': sendFrame({ type: 'timeout', username: user, seconds: 600 }); break;
      case 'ban': sendFrame({ type: 'ban', username: user }); break;
      case 'hide': sendFrame({ type: hiddenUsers.has(user) ? 'unhide' : 'hide', username: user }); break;
      case 'reply': startReply(li); break;
      case 'edit': startEdit(li); break;
    }
  });

  if (unpinButton) unpinButton.addEventListener('click', function () { sendFrame({ type: 'unpin' }); });

  window.addEventListener('online', function () {
    if (reconnectTimer) { clearTimeout(reconnectTimer); reconnectTimer = null; attempt = 0; connect(); }
  });

  // ---------------------------------------------------------------- search (moderators)
  // Searches the stream's chat (GET /api/streams/{id}/search); a result still
  // in the live list is scrolled to and flashed, an older one opens its place
  // in the replay under it.
  function searchBox() {
    var head = root.querySelector('.chat-head');
    var box = document.createElement('details');
    box.className = 'chat-search';
    var summary = document.createElement('summary');
    summary.textContent = T.search_chat || 'Search chat';
    var f = document.createElement('form');
    f.setAttribute('role', 'search');
    var input = document.createElement('input');
    input.type = 'search';
    input.name = 'q';
    input.setAttribute('aria-label', T.search_chat || 'Search chat');
    var go = document.createElement('button');
    go.type = 'submit';
    go.className = 'small';
    go.textContent = T.search || 'Search';
    var results = document.createElement('ol');
    results.className = 'search-results';
    results.setAttribute('aria-live', 'polite');
    f.appendChild(input);
    f.appendChild(go);
    box.appendChild(summary);
    box.appendChild(f);
    box.appendChild(results);
    head.after(box);
    f.addEventListener('submit', function (e) {
      e.preventDefault();
      var q = input.value.trim();
      if (Array.from(q).length < 2) return;
      results.textContent = T.loading || '…';
      fetch('/api/streams/' + streamId + '/search?q=' + encodeURIComponent(q), { credentials: 'same-origin' })
        .then(function (r) {
          if (!r.ok) throw new Error(fmt(T.err_request || 'Request failed ({status}).', { status: r.status }));
          return r.json();
        })
        .then(function (body) {
          results.textContent = '';
          if (!body.messages.length) { results.textContent = T.no_results || 'No messages found.'; return; }
          body.messages.forEach(function (m) {
            var li = document.createElement('li');
            var a = document.createElement('a');
            a.href = '#';
            a.textContent = clock(m.timestamp) + ' ' + (m.username || '') + ': ' + m.message;
            var live = list.querySelector('.msg[data-id="' + m.id + '"]');
            a.addEventListener('click', function (ev) {
              ev.preventDefault();
              var el = list.querySelector('.msg[data-id="' + m.id + '"]');
              if (!el) { showContext(li, m); return; }
              el.scrollIntoView({ block: 'center' });
              el.classList.remove('flash');
              void el.offsetWidth;
              el.classList.add('flash');
            });
            li.appendChild(a);
            var notes = [];
            if (m.is_deleted) notes.push(T.deleted || 'deleted');
            if (!live) notes.push(T.not_in_list || 'older than the live list');
            if (notes.length) {
              var n = document.createElement('span');
              n.className = 'note';
              n.textContent = ' (' + notes.join(', ') + ')';
              li.appendChild(n);
            }
            if (m.is_deleted) li.classList.add('deleted');
            results.appendChild(li);
          });
        })
        .catch(function (err) { results.textContent = err.message; });
    });
  }
  // A result no longer in the live list: its place in the replay (the
  // messages up to it, from GET /api/streams/{id}/messages), under the result.
  function showContext(li, m) {
    var old = li.querySelector('.search-context');
    if (old) { old.remove(); return; }
    var ctx = document.createElement('ol');
    ctx.className = 'search-context';
    ctx.setAttribute('aria-label', T.in_replay || 'In the replay');
    li.appendChild(ctx);
    if (m.is_deleted || m.hidden) {
      ctx.textContent = T.not_in_replay || 'Not in the replay (deleted or hidden).';
      return;
    }
    ctx.textContent = T.loading || '…';
    fetch('/api/streams/' + streamId + '/messages?limit=10&before_id=' + (m.id + 1), { credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) throw new Error(fmt(T.err_request || 'Request failed ({status}).', { status: r.status }));
        return r.json();
      })
      .then(function (body) {
        ctx.textContent = '';
        body.messages.slice().reverse().forEach(function (c) {
          var line = document.createElement('li');
          line.textContent = clock(c.timestamp) + ' ' + (c.username || '') + ': ' + c.message;
          if (c.id === m.id) { line.className = 'hit'; line.setAttribute('aria-current', 'true'); }
          ctx.appendChild(line);
        });
        var hit = ctx.querySelector('.hit');
        if (hit) hit.scrollIntoView({ block: 'nearest' });
      })
      .catch(function (err) { ctx.textContent = err.message; });
  }
  if (canModerate) searchBox();

  // ---------------------------------------------------------------- start
  Array.prototype.forEach.call(list.querySelectorAll('.msg[data-id]'), function (el) {
    var id = Number(el.dataset.id);
    seen.add(id);
    if (id > lastId) lastId = id;
    var time = el.querySelector('time');
    if (time && time.dateTime) time.textContent = clock(time.dateTime);
    var text = el.querySelector('.text');
    if (el.classList.contains('kind-message') && text && mentions(text.textContent)) el.classList.add('mention');
    el.dataset.server = '1';
    if (signedIn && el.classList.contains('kind-message')) {
      el.appendChild(chatTools({ id: id, username: el.dataset.user, timestamp: time ? time.dateTime : null }));
    }
  });
  // The server renders text only: the replay API gives the same messages with
  // their replies, edits and mentions (the socket resumes after them).
  var rendered = list.querySelectorAll('.msg[data-server]').length;
  if (rendered) {
    fetch('/api/streams/' + streamId + '/messages?limit=' + Math.min(rendered, 200), { credentials: 'same-origin' })
      .then(function (r) { return r.ok ? r.json() : { messages: [] }; })
      .then(function (body) {
        (body.messages || []).forEach(function (m) {
          var old = list.querySelector('.msg[data-server][data-id="' + m.id + '"]');
          if (old) old.replaceWith(messageElement(m));
        });
      })
      .catch(function () {});
  }
  list.scrollTop = list.scrollHeight;
  updateComposer();
  connect();
})();
