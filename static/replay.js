// Video and replay on the watch page.
//
// 1. HLS everywhere: a `.m3u8` video (data-hls-src) plays natively where the
//    browser can (Safari), else through the vendored hls.js (Media Source
//    Extensions), loaded only then.
// 2. Replay: on an ended stream with a video (data-replay="true"), chat and
//    floating stamps follow the video's time from GET /api/streams/{id}/timeline
//    (play, pause and seek move the chat), and a reaction strip shows where
//    reactions peaked, per stamp colour; choosing a moment on it seeks there
//    (mouse, touch or keyboard). Chat text is only ever inserted as text.
(function () {
  'use strict';

  var root = document.getElementById('watch');
  var video = document.getElementById('video');
  if (!root || !video) return;

  var HLS_SCRIPT = '/static/vendor/hls/hls.min.js';

  // ------------------------------------------------------------ HLS
  function attachHls(url) {
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = url;
      return;
    }
    var s = document.createElement('script');
    s.src = HLS_SCRIPT;
    s.onload = function () {
      var Hls = window.Hls;
      if (!Hls || !Hls.isSupported()) { video.src = url; return; }
      // No worker: the page's policy allows no blob: scripts.
      var hls = new Hls({ enableWorker: false });
      hls.on(Hls.Events.ERROR, function (_, data) {
        if (!data.fatal) return;
        if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
        else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) recoverVideo();
        else hls.destroy();
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      root.hls = hls;
    };
    document.head.appendChild(s);
  }

  var hlsUrl = video.dataset.hlsSrc;
  if (hlsUrl) attachHls(hlsUrl);

  // A media error (a segment that cannot be parsed, a decoder that gives up)
  // need not end the video: it is attached afresh, through hls.js where that
  // plays it, else by loading its source again, and a replay goes back to
  // where it was. Only once the video has played or seeked since the last
  // recovery, and at most RECOVERIES_PER_MINUTE times a minute, so a source
  // that keeps failing stays failed, and says so.
  var RECOVERIES_PER_MINUTE = 5;
  var recoveries = [];          // when the recent ones were (Date.now())
  var progressed = true;        // played or seeked since the last recovery
  function progress() { progressed = true; }
  video.addEventListener('playing', progress);
  video.addEventListener('seeked', progress);
  function recoverVideo() {
    var now = Date.now();
    var src = video.currentSrc || video.src;
    recoveries = recoveries.filter(function (t) { return now - t < 60000; });
    if (!progressed || recoveries.length >= RECOVERIES_PER_MINUTE) return;
    if (!root.hls && !src) return;
    progressed = false;
    recoveries.push(now);
    if (root.hls) { root.hls.recoverMediaError(); return; }
    var at = video.currentTime;
    var playing = !video.paused;
    video.src = src;
    // Before its metadata, this is where the video starts once loaded: a
    // seek the viewer makes meanwhile replaces it.
    if (root.dataset.replay === 'true') video.currentTime = at;
    if (playing) video.play().catch(function () {});
  }
  video.addEventListener('error', function () { if (video.error) setTimeout(recoverVideo, 0); });

  if (root.dataset.replay !== 'true') return;

  // ------------------------------------------------------------ replay
  // The page's data and elements, read here as watch.js reads its own (only
  // one of the two runs on a page: watch.js stops on a replay).
  var T = JSON.parse(document.getElementById('replay-i18n').textContent);
  var streamId = root.dataset.streamId;
  var lang = root.dataset.lang || 'en';
  var list = document.getElementById('messages');
  var floats = document.getElementById('floats');
  var strip = document.getElementById('reaction-strip');
  var bins = document.getElementById('strip-bins');
  var head = document.getElementById('strip-head');
  var peaks = document.getElementById('peaks');
  var note = document.getElementById('replay-note');
  var conn = document.getElementById('conn');

  var MAX_SHOWN = 200;          // message elements kept in the list
  var MAX_FLOATING = 40;
  var MAX_PER_BUCKET = 12;      // floating stamps per stamp and second
  var CHUNK_MS = 10 * 60 * 1000;
  var MAX_BINS = 160;

  var stamps = Stampede.pageStamps();

  var messages = [];            // sorted by offset_ms
  var buckets = [];             // {offset_ms, stamp_id, count}, sorted by offset
  var durationMs = 0;
  var shown = 0;                // messages[0..shown) are in the list
  var lastMs = -1;              // the time the chat was last brought to
  var nextBucket = 0;           // first bucket not yet floated

  var fmt = Stampede.fmt;

  function clockOf(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    var h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
    var mm = (h ? String(m).padStart(2, '0') : String(m));
    return (h ? h + ':' : '') + mm + ':' + String(sec).padStart(2, '0');
  }

  if (conn) { conn.dataset.state = 'replay'; conn.textContent = T.replay; }
  root.dataset.state = 'replay';
  strip.setAttribute('aria-label', T.strip_label);
  peaks.setAttribute('aria-label', T.peaks_label);
  note.textContent = T.loading;

  // ---------------------------------------------------------- chat
  function messageElement(m) {
    var p = Stampede.messageParts(m);
    p.li.dataset.id = String(m.id);
    p.li.dataset.offsetMs = String(m.offset_ms);
    p.time.dateTime = m.timestamp || '';
    p.time.textContent = clockOf(m.offset_ms);
    return p.li;
  }

  // Index of the first of `items` (sorted by offset_ms) after `ms`.
  function firstAfter(items, ms) {
    var lo = 0, hi = items.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (items[mid].offset_ms <= ms) lo = mid + 1; else hi = mid;
    }
    return lo;
  }

  // Shows exactly the messages up to `ms` (the newest MAX_SHOWN of them).
  function chatTo(ms) {
    var n = firstAfter(messages, ms);
    if (n === shown) return;
    var near = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    if (n > shown && n - shown <= MAX_SHOWN) {
      var frag = document.createDocumentFragment();
      for (var i = shown; i < n; i++) frag.appendChild(messageElement(messages[i]));
      list.appendChild(frag);
      var extra = list.children.length - MAX_SHOWN;
      while (extra-- > 0) list.firstElementChild.remove();
    } else {
      list.textContent = '';
      var frag2 = document.createDocumentFragment();
      for (var j = Math.max(0, n - MAX_SHOWN); j < n; j++) frag2.appendChild(messageElement(messages[j]));
      list.appendChild(frag2);
      near = true;
    }
    shown = n;
    if (near) list.scrollTop = list.scrollHeight;
  }

  // ---------------------------------------------------------- stamps
  var spawnStamp = Stampede.stampFloater(floats, MAX_FLOATING);

  // Floats the stamps of the seconds the video played through (not on seeks).
  function floatTo(ms, playedThrough) {
    var end = firstAfter(buckets, ms);
    if (playedThrough) {
      for (var i = nextBucket; i < end; i++) {
        var b = buckets[i];
        var url = (stamps[String(b.stamp_id)] || {}).url;
        var n = Math.min(b.count, MAX_PER_BUCKET);
        for (var k = 0; k < n; k++) setTimeout(spawnStamp, Math.random() * 900, url);
      }
    }
    nextBucket = end;
  }

  // ---------------------------------------------------------- sync
  function sync() {
    var ms = Math.floor(video.currentTime * 1000);
    var through = !video.paused && !video.seeking && lastMs >= 0 && ms >= lastMs && ms - lastMs < 1500;
    chatTo(ms);
    floatTo(ms, through);
    lastMs = ms;
    moveHead(ms);
  }

  var ticking = false;
  function tick() {
    if (video.paused || video.ended) { ticking = false; sync(); return; }
    sync();
    requestAnimationFrame(tick);
  }
  function startTicking() { if (!ticking) { ticking = true; requestAnimationFrame(tick); } }

  video.addEventListener('play', startTicking);
  video.addEventListener('playing', startTicking);
  video.addEventListener('pause', sync);
  video.addEventListener('seeking', function () { lastMs = -1; sync(); });
  video.addEventListener('seeked', function () { lastMs = -1; sync(); });
  video.addEventListener('timeupdate', function () { if (!ticking) sync(); });
  video.addEventListener('loadedmetadata', function () { if (!durationMs) drawStrip(); });
  // A media error is recovered from by attaching the video afresh (see
  // recoverVideo): once it plays or seeks again, the note says again what it
  // said before.
  var noteBefore = '';
  video.addEventListener('error', function () {
    if (note.textContent !== T.video_failed) noteBefore = note.textContent;
    note.textContent = T.video_failed;
  });
  function recovered() { if (!video.error && note.textContent === T.video_failed) note.textContent = noteBefore; }
  video.addEventListener('playing', recovered);
  video.addEventListener('seeked', recovered);

  // ---------------------------------------------------------- strip
  function totalMs() {
    var d = durationMs;
    if (isFinite(video.duration) && video.duration > 0) d = Math.max(d, Math.round(video.duration * 1000));
    return Math.max(d, 1000);
  }

  function moveHead(ms) {
    var total = totalMs();
    head.style.setProperty('--at', (Math.min(1, Math.max(0, ms / total)) * 100).toFixed(3) + '%');
    strip.setAttribute('aria-valuenow', String(Math.floor(ms / 1000)));
    strip.setAttribute('aria-valuetext', fmt(T.strip_value, { time: clockOf(ms), total: clockOf(total) }));
  }

  function drawStrip() {
    var total = totalMs();
    var seconds = Math.ceil(total / 1000);
    var n = Math.max(1, Math.min(MAX_BINS, seconds));
    var per = total / n;
    var sums = [];
    for (var i = 0; i < n; i++) sums.push({});
    var perSecond = {};
    buckets.forEach(function (b) {
      var i = Math.min(n - 1, Math.max(0, Math.floor(b.offset_ms / per)));
      sums[i][b.stamp_id] = (sums[i][b.stamp_id] || 0) + b.count;
      perSecond[b.offset_ms] = (perSecond[b.offset_ms] || 0) + b.count;
    });
    var max = 0;
    var totals = sums.map(function (s) {
      var t = 0;
      for (var k in s) t += s[k];
      if (t > max) max = t;
      return t;
    });
    bins.textContent = '';
    sums.forEach(function (s, i) {
      var bin = document.createElement('div');
      bin.className = 'strip-bin';
      bin.dataset.offsetMs = String(Math.round(i * per));
      bin.dataset.count = String(totals[i]);
      // Square-root scale, so quiet moments still show beside the peak.
      var height = max ? Math.sqrt(totals[i] / max) * 100 : 0;
      Object.keys(s).sort().forEach(function (id) {
        var seg = document.createElement('div');
        seg.className = 'strip-seg stamp-' + id;
        seg.style.setProperty('--h', (totals[i] ? (s[id] / totals[i]) * height : 0).toFixed(2) + '%');
        bin.appendChild(seg);
      });
      bins.appendChild(bin);
    });
    strip.setAttribute('aria-valuemax', String(seconds));
    // The top moments (whole seconds), as buttons that seek.
    var moments = Object.keys(perSecond).map(function (k) { return { ms: Number(k), n: perSecond[k] }; });
    moments.sort(function (a, b) { return b.n - a.n || a.ms - b.ms; });
    strip.dataset.peakMs = moments.length ? String(moments[0].ms) : '';
    peaks.textContent = '';
    var picked = [];
    moments.forEach(function (m) {
      if (picked.length >= 3) return;
      if (picked.some(function (p) { return Math.abs(p.ms - m.ms) < 10000; })) return;
      picked.push(m);
    });
    picked.sort(function (a, b) { return a.ms - b.ms; }).forEach(function (m) {
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'small peak';
      b.dataset.offsetMs = String(m.ms);
      b.textContent = fmt(T.peak, { time: clockOf(m.ms), n: m.n });
      peaks.appendChild(b);
    });
    if (!moments.length) note.textContent = T.no_reactions;
    moveHead(Math.floor(video.currentTime * 1000));
  }

  function seekTo(ms) {
    var total = totalMs();
    ms = Math.max(0, Math.min(total, ms));
    video.currentTime = ms / 1000;
    lastMs = -1;
    sync();
  }

  function seekAtPointer(clientX) {
    var r = strip.getBoundingClientRect();
    if (r.width <= 0) return;
    seekTo(((clientX - r.left) / r.width) * totalMs());
  }

  strip.addEventListener('click', function (e) { seekAtPointer(e.clientX); });
  strip.addEventListener('keydown', function (e) {
    var ms = video.currentTime * 1000;
    var step = { ArrowLeft: -5000, ArrowDown: -5000, ArrowRight: 5000, ArrowUp: 5000, PageDown: -30000, PageUp: 30000 }[e.key];
    if (step !== undefined) seekTo(ms + step);
    else if (e.key === 'Home') seekTo(0);
    else if (e.key === 'End') seekTo(totalMs());
    else return;
    e.preventDefault();
  });
  peaks.addEventListener('click', function (e) {
    var b = e.target.closest('button[data-offset-ms]');
    if (b) seekTo(Number(b.dataset.offsetMs));
  });

  // ---------------------------------------------------------- loading
  function fetchJson(url) {
    return fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); });
  }

  function load(from, to) {
    return fetchJson('/api/streams/' + encodeURIComponent(streamId) + '/timeline?from_ms=' + from + '&to_ms=' + to)
      .then(function (t) {
        if (typeof t.duration_ms === 'number') durationMs = t.duration_ms;
        Array.prototype.push.apply(messages, t.messages || []);
        Array.prototype.push.apply(buckets, t.reactions || []);
        if (typeof t.next_from_ms === 'number') return load(t.next_from_ms, to);
      });
  }

  // The whole stream, a chunk at a time; chat shows as soon as it arrives.
  function loadAll() {
    return fetchJson('/api/streams/' + encodeURIComponent(streamId) + '/timeline?from_ms=0&to_ms=0')
      .then(function (t) {
        durationMs = t.duration_ms || 0;
        var end = durationMs + 1;
        var from = 0;
        function next() {
          if (from >= end) return null;
          var to = Math.min(end, from + CHUNK_MS);
          var p = load(from, to);
          from = to;
          return p.then(function () {
            lastMs = -1;
            shown = Math.min(shown, messages.length);
            sync();
            return next();
          });
        }
        return next();
      });
  }

  loadAll().then(function () {
    note.textContent = T.chat_replay;
    drawStrip();
    lastMs = -1;
    shown = 0;
    list.textContent = '';
    sync();
    root.dataset.replayReady = 'true';
  }, function () {
    note.textContent = T.load_failed;
  });
})();
