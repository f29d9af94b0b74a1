// labd lab page: xterm.js terminal over the labd.term.v1 websocket
// protocol (docs/terminal-protocol.md), Run/Copy buttons on code blocks,
// and the draggable divider. Plain JS, no build step.
(function () {
  'use strict';

  // Message types: first byte of every binary frame.
  var T = {
    INPUT: 0x01, RESIZE: 0x02, PING: 0x03, PAUSE: 0x04, RESUME: 0x05,
    HELLO: 0x81, OUTPUT: 0x82, PONG: 0x83, NOTICE: 0x84
  };
  var SUBPROTOCOL = 'labd.term.v1';

  // Close codes after which reconnecting cannot help: the shell is gone
  // (a reload starts a new one) or the client broke the protocol.
  var FINAL_CLOSE = {
    1000: 'Connection closed.',
    1003: 'Protocol error.',
    1007: 'Protocol error.',
    1008: 'Connection refused.',
    1009: 'Message too large.',
    4000: 'Closed after being idle for too long.',
    4001: 'The sandbox was destroyed.',
    // labd destroys every sandbox when it stops, so reconnecting after a
    // shutdown cannot find the shell again: a reload starts a new one.
    4002: 'The server is shutting down.',
    4003: 'The shell exited.'
  };

  // Flow control: ask the server to pause output while xterm.js has more
  // than HIGH bytes queued for parsing, resume below LOW.
  var HIGH_WATER = 256 * 1024;
  var LOW_WATER = 32 * 1024;

  var MAX_BACKOFF_MS = 10000;
  // Attempts without a successful hello before giving up: the sandbox was
  // most likely reaped while we were away, and only a reload recreates it.
  var MAX_FAILED_ATTEMPTS = 8;

  var encoder = new TextEncoder();

  // Counters for tests and for curious learners in the devtools console.
  var stats = { connects: 0, pauses: 0, resumes: 0, bytes: 0 };
  window.labd = { stats: stats };

  function frame(type, payload) {
    var n = payload ? payload.length : 0;
    var buf = new Uint8Array(1 + n);
    buf[0] = type;
    if (n) buf.set(payload, 1);
    return buf;
  }

  // ---- status bar ----------------------------------------------------

  var statusEl = document.getElementById('term-status');
  var statusText = statusEl && statusEl.querySelector('.term-text');
  var restartBtn = document.getElementById('btn-restart');

  function setStatus(state, text, offerRestart) {
    if (!statusEl) return;
    statusEl.dataset.state = state;
    statusText.textContent = text;
    restartBtn.hidden = !offerRestart;
    document.querySelectorAll('.btn-run').forEach(function (b) {
      b.disabled = state !== 'connected';
    });
  }

  if (restartBtn) {
    restartBtn.addEventListener('click', function () { window.location.reload(); });
  }

  // ---- terminal ------------------------------------------------------

  var lab = document.getElementById('lab');
  var termEl = document.getElementById('terminal');
  var term = null;
  var fit = null;
  var session = null;

  function startTerminal() {
    if (!lab || !termEl) return;
    if (typeof window.Terminal !== 'function') {
      setStatus('closed', 'The terminal files are missing from this labd build (run make assets).', false);
      return;
    }
    term = new window.Terminal({
      screenReaderMode: true,
      cursorBlink: true,
      convertEol: false,
      scrollback: 5000,
      fontSize: 14,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, Consolas, monospace',
      theme: { background: '#1b1e23', foreground: '#e6edf3', cursor: '#e6edf3', selectionBackground: '#3b5070' }
    });
    fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    if (window.WebLinksAddon) term.loadAddon(new window.WebLinksAddon.WebLinksAddon());
    term.open(termEl);
    refit();
    term.focus();

    session = new Session(lab.dataset.terminalUrl);
    // Drops the websocket as a network failure would (tests, debugging).
    window.labd.dropConnection = function () {
      if (session.ws) session.ws.close(4999, 'dropped by the page');
    };
    term.onData(function (d) { session.send(T.INPUT, encoder.encode(d)); });
    term.onBinary(function (d) {
      var b = new Uint8Array(d.length);
      for (var i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 0xff;
      session.send(T.INPUT, b);
    });
    term.onResize(function () { session.sendSize(); });
    term.attachCustomKeyEventHandler(clipboardKeys);

    window.addEventListener('resize', debounce(refit, 60));
    if (window.ResizeObserver) new ResizeObserver(debounce(refit, 30)).observe(termEl);
    session.connect();
  }

  function refit() {
    if (!fit) return;
    try { fit.fit(); } catch (e) { /* not laid out yet */ }
  }

  // Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes; everything
  // else goes to the shell (Ctrl+C stays an interrupt).
  function clipboardKeys(e) {
    if (e.type !== 'keydown' || !e.ctrlKey || !e.shiftKey) return true;
    if (e.code === 'KeyC') {
      if (term.hasSelection()) copyText(term.getSelection());
      return false;
    }
    if (e.code === 'KeyV') {
      if (navigator.clipboard && navigator.clipboard.readText) {
        navigator.clipboard.readText().then(function (t) { if (t) term.paste(t); }, function () {});
      }
      return false;
    }
    return true;
  }

  // Session is one logical terminal connection that reconnects by itself.
  function Session(path) {
    this.path = path;
    this.ws = null;
    this.connected = false;
    this.failed = 0;
    this.closing = null;   // message of the last "closing" notice
    this.pending = 0;      // bytes handed to xterm.js not yet parsed
    this.paused = false;
    this.gen = 0;          // connection generation, drops stale callbacks
    this.maxMessage = 0;   // largest frame the server accepts (from hello)
  }

  Session.prototype.url = function () {
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + window.location.host + this.path;
  };

  Session.prototype.connect = function () {
    var self = this;
    var gen = ++this.gen;
    this.pending = 0;
    this.paused = false;
    this.closing = null;
    setStatus(this.failed ? 'reconnecting' : 'connecting', this.failed ? 'Reconnecting…' : 'Connecting…', false);
    var ws;
    try {
      ws = new WebSocket(this.url(), [SUBPROTOCOL]);
    } catch (e) {
      this.retry();
      return;
    }
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = function (ev) {
      if (gen !== self.gen || !(ev.data instanceof ArrayBuffer)) return;
      self.receive(new Uint8Array(ev.data), gen);
    };
    ws.onclose = function (ev) {
      if (gen !== self.gen) return;
      self.connected = false;
      self.ws = null;
      var final = FINAL_CLOSE[ev.code];
      if (final) {
        // Our own wording for the codes we know; the server's reason
        // (from the "closing" notice or the close frame) otherwise.
        var why = ev.code >= 4000 ? final : (self.closing || ev.reason || final);
        setStatus('closed', why, true);
        return;
      }
      self.retry();
    };
  };

  Session.prototype.retry = function () {
    var self = this;
    this.failed++;
    if (this.failed > MAX_FAILED_ATTEMPTS) {
      setStatus('closed', 'Lost the connection to the terminal.', true);
      return;
    }
    var delay = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, this.failed - 1));
    delay = delay * (0.8 + 0.4 * Math.random());
    setStatus('reconnecting', 'Connection lost, reconnecting in ' + Math.round(delay / 1000) + ' s…', false);
    setTimeout(function () { self.connect(); }, delay);
  };

  Session.prototype.receive = function (buf, gen) {
    if (buf.length === 0) return;
    var self = this;
    var payload = buf.subarray(1);
    switch (buf[0]) {
      case T.HELLO:
        try {
          var hello = JSON.parse(new TextDecoder().decode(payload));
          this.maxMessage = hello.maxMessage || 0;
        } catch (e) { /* keep the default */ }
        // The scrollback replay follows: start from a clean screen so a
        // reconnect does not show the history twice.
        term.reset();
        this.connected = true;
        this.failed = 0;
        stats.connects++;
        setStatus('connected', 'Connected', false);
        this.sendSize();
        break;
      case T.OUTPUT:
        var n = payload.length;
        this.pending += n;
        stats.bytes += n;
        term.write(payload, function () {
          if (gen !== self.gen) return;
          self.pending -= n;
          if (self.paused && self.pending < LOW_WATER) {
            self.paused = false;
            stats.resumes++;
            self.send(T.RESUME);
          }
        });
        if (!this.paused && this.pending > HIGH_WATER) {
          this.paused = true;
          stats.pauses++;
          this.send(T.PAUSE);
        }
        break;
      case T.NOTICE:
        var notice;
        try { notice = JSON.parse(new TextDecoder().decode(payload)); } catch (e) { return; }
        if (notice.kind === 'closing') {
          this.closing = notice.message;
        } else if (notice.message) {
          statusText.textContent = notice.message;
        }
        break;
      default:
        // PONG and types from later versions: nothing to do.
    }
  };

  Session.prototype.send = function (type, payload) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    // The server refuses frames above hello.maxMessage (1009): big pastes
    // go out in pieces, which the pty receives in order.
    var max = Math.max(1024, (this.maxMessage || 65536) - 1);
    if (type === T.INPUT && payload && payload.length > max) {
      for (var off = 0; off < payload.length; off += max) {
        this.ws.send(frame(type, payload.subarray(off, off + max)));
      }
      return true;
    }
    this.ws.send(frame(type, payload));
    return true;
  };

  Session.prototype.sendSize = function () {
    if (!this.connected || !term) return;
    var cols = Math.max(1, Math.min(1000, term.cols));
    var rows = Math.max(1, Math.min(1000, term.rows));
    this.send(T.RESIZE, encoder.encode(JSON.stringify({ cols: cols, rows: rows })));
  };

  // ---- code blocks -----------------------------------------------------

  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return legacyCopy(text); });
    }
    return Promise.resolve(legacyCopy(text));
  }

  function legacyCopy(text) {
    var ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.appendChild(ta);
    ta.select();
    try { document.execCommand('copy'); } catch (e) { /* nothing more to try */ }
    document.body.removeChild(ta);
  }

  function flash(btn, text) {
    var old = btn.dataset.label || btn.textContent;
    btn.dataset.label = old;
    btn.textContent = text;
    btn.classList.add('done');
    setTimeout(function () { btn.textContent = old; btn.classList.remove('done'); }, 1200);
  }

  // runBlock types the block into the shell line by line, as a learner
  // would, ending every line (so the last one too) with Enter.
  function runBlock(text) {
    if (!session || !session.connected) return false;
    var lines = text.replace(/\r\n?/g, '\n').replace(/\n+$/, '').split('\n');
    lines.forEach(function (line) { session.send(T.INPUT, encoder.encode(line + '\r')); });
    term.focus();
    return true;
  }

  document.addEventListener('click', function (ev) {
    // Copy buttons of single values (the registry box).
    var val = ev.target.closest('button[data-copy]');
    if (val) {
      copyText(val.dataset.copy).then(function () { flash(val, 'Copied'); });
      return;
    }
    var btn = ev.target.closest('.codeblock button');
    if (!btn) return;
    var code = btn.closest('.codeblock').querySelector('code');
    if (!code) return;
    var text = code.textContent;
    if (btn.classList.contains('btn-copy')) {
      copyText(text).then(function () { flash(btn, 'Copied'); });
    } else if (btn.classList.contains('btn-run')) {
      if (runBlock(text)) flash(btn, 'Sent');
    }
  });

  // ---- divider ---------------------------------------------------------

  var SPLIT_KEY = 'labd.split';
  var divider = document.getElementById('divider');

  function setSplit(ratio) {
    ratio = Math.max(0.2, Math.min(0.8, ratio));
    lab.style.setProperty('--split', (ratio * 100).toFixed(2) + '%');
    return ratio;
  }

  function loadSplit() {
    try {
      var v = parseFloat(window.localStorage.getItem(SPLIT_KEY));
      if (v > 0 && v < 1) setSplit(v);
    } catch (e) { /* storage disabled */ }
  }

  function saveSplit(ratio) {
    try { window.localStorage.setItem(SPLIT_KEY, String(ratio)); } catch (e) { /* storage disabled */ }
  }

  if (lab && divider) {
    loadSplit();
    var current = null;
    divider.addEventListener('pointerdown', function (e) {
      if (e.button !== 0) return;
      e.preventDefault();
      divider.setPointerCapture(e.pointerId);
      divider.classList.add('dragging');
      document.body.classList.add('resizing');
      current = null;
    });
    divider.addEventListener('pointermove', function (e) {
      if (!divider.hasPointerCapture(e.pointerId)) return;
      var r = lab.getBoundingClientRect();
      current = setSplit((e.clientX - r.left) / r.width);
    });
    var end = function (e) {
      if (!divider.hasPointerCapture(e.pointerId)) return;
      divider.releasePointerCapture(e.pointerId);
      divider.classList.remove('dragging');
      document.body.classList.remove('resizing');
      if (current !== null) saveSplit(current);
      refit();
    };
    divider.addEventListener('pointerup', end);
    divider.addEventListener('pointercancel', end);
    divider.addEventListener('keydown', function (e) {
      var step = e.key === 'ArrowLeft' ? -0.02 : e.key === 'ArrowRight' ? 0.02 : 0;
      if (!step) return;
      e.preventDefault();
      var r = lab.getBoundingClientRect();
      var left = document.getElementById('instructions').getBoundingClientRect().width;
      saveSplit(setSplit(left / r.width + step));
      refit();
    });
  }

  function debounce(f, ms) {
    var t = null;
    return function () {
      clearTimeout(t);
      t = setTimeout(f, ms);
    };
  }

  startTerminal();
})();
