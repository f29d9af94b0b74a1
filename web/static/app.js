// labd lab page: xterm.js terminal over the labd.term.v1 websocket
// protocol (docs/terminal-protocol.md), Run/Copy buttons on code blocks
// (Run waits for the shell's prompt, marked with OSC 133), the Files panel
// (web/files.go) and the draggable divider. Plain JS, no build step.
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
    4003: 'The shell exited.',
    4006: 'Your sandbox reached this server\'s time limit. Your files are kept: reload the page for a new one.',
    4007: 'An instructor stopped your sandbox. Your files are kept: reload the page for a new one.'
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
  var stats = { connects: 0, pauses: 0, resumes: 0, bytes: 0, marks: 0 };
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

  // The sandbox's coming end (idle, or the server's time limit): a bar
  // above the terminal counting down, with "I'm still here" for an idle
  // end. A warning without a message withdraws it.
  var endWarning = (function () {
    var el = document.getElementById('end-warning');
    var text = el && el.querySelector('.end-warning-text');
    var btn = document.getElementById('btn-still-here');
    var timer = null, base = '';
    function tick(ends) {
      var left = Math.max(0, Math.round((ends - Date.now()) / 1000));
      var m = Math.floor(left / 60), sec = left % 60;
      text.textContent = base + ' (' + m + ':' + (sec < 10 ? '0' : '') + sec + ' left)';
    }
    if (btn) {
      btn.addEventListener('click', function () {
        btn.disabled = true;
        fetch(el.dataset.touchUrl, { method: 'POST', credentials: 'same-origin' }).then(function (r) {
          btn.disabled = false;
          if (r.ok) hide();
        }, function () { btn.disabled = false; });
      });
    }
    function hide() {
      if (timer) clearInterval(timer);
      timer = null;
      if (el) el.hidden = true;
    }
    return {
      show: function (n) {
        if (!el) return;
        if (!n.message) { hide(); return; }
        base = n.message;
        btn.hidden = n.action !== 'still-here';
        el.hidden = false;
        if (timer) clearInterval(timer);
        if (n.ends) {
          tick(n.ends);
          timer = setInterval(function () { tick(n.ends); }, 1000);
        } else {
          text.textContent = base;
        }
      },
      hide: hide
    };
  })();

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
    // Shell integration: the sandbox's bash marks its prompts (OSC 133,
    // sandbox/prompt.go); xterm.js drops unknown OSCs, so nothing shows.
    if (term.parser && term.parser.registerOscHandler) {
      term.parser.registerOscHandler(133, function (data) { shell.mark(data); return true; });
    }

    window.addEventListener('resize', debounce(refit, 60));
    if (window.ResizeObserver) new ResizeObserver(debounce(refit, 30)).observe(termEl);
    session.connect();
  }

  function refit() {
    if (!fit) return;
    try { fit.fit(); } catch (e) { /* not laid out yet */ }
  }

  // Ctrl+Shift+C copies the selection, Ctrl+Shift+V pastes; everything
  // else goes to the shell (Ctrl+C stays an interrupt). The paste is the
  // browser's own (Ctrl+Shift+V is "paste as plain text", a paste event on
  // xterm's textarea, which xterm.js sends to the shell): it needs no
  // clipboard permission and works on plain http. Reading the clipboard
  // here as well would paste twice.
  function clipboardKeys(e) {
    if (!e.ctrlKey || !e.shiftKey || e.altKey || e.metaKey) return true;
    if (e.code === 'KeyC') {
      // Not the browser's Ctrl+Shift+C (the element inspector).
      e.preventDefault();
      if (e.type === 'keydown' && term.hasSelection()) copyText(term.getSelection());
      return false;
    }
    if (e.code === 'KeyV') return false;
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
    // The first connection waits for the sandbox when the page came
    // before its shell (labd answers pages at once).
    setStatus(this.failed ? 'reconnecting' : 'connecting',
      this.failed ? 'Reconnecting…' : (gen === 1 ? 'Starting your sandbox…' : 'Connecting…'), false);
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
      shell.disconnected();
      var final = FINAL_CLOSE[ev.code];
      if (final) {
        // Our own wording for the codes we know; the server's reason
        // (from the "closing" notice or the close frame) otherwise.
        var why = ev.code >= 4000 ? final : (self.closing || ev.reason || final);
        setStatus('closed', why, true);
        endWarning.hide();
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
    var hello = null;
    switch (buf[0]) {
      case T.HELLO:
        try {
          hello = JSON.parse(new TextDecoder().decode(payload));
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
        shell.reset(hello && hello.scrollback || 0);
        break;
      case T.OUTPUT:
        var n = payload.length;
        this.pending += n;
        stats.bytes += n;
        term.write(payload, function () {
          if (gen !== self.gen) return;
          shell.parsed(payload);
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
        shell.received(n);
        break;
      case T.NOTICE:
        var notice;
        try { notice = JSON.parse(new TextDecoder().decode(payload)); } catch (e) { return; }
        if (notice.kind === 'closing') {
          this.closing = notice.message;
        } else if (notice.kind === 'warning') {
          endWarning.show(notice);
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

  // ---- shell integration: prompt markers and Run -----------------------

  // The sandbox's bash sends OSC 133 markers (sandbox/prompt.go): A before
  // a prompt (A;k=s before a continuation prompt), C when a command starts,
  // D;<status> when it ended. Run types a block only at a prompt, line by
  // line as a learner would: the next line after the shell showed its
  // prompt (or continuation prompt) again.
  // A shell that sends no markers (another shell, a learner's own
  // PROMPT_COMMAND): Run types at once after NO_MARKS_MS, as it used to.
  var NO_MARKS_MS = 1500;
  // A typed line that brings no marker at all (the shell stopped marking,
  // e.g. after `exec sh`): the rest is typed at once.
  var LINE_QUIET_MS = 4000;
  // A (from PROMPT_COMMAND) comes before bash expands PS1, which may run
  // commands, and before readline takes the terminal: a line typed then
  // is echoed by the tty (in canonical mode) and again by readline, and
  // lands on the screen before the prompt. Whatever bash prints after A
  // comes from readline (its bracketed-paste switch, the prompt), so the
  // shell reads once any output follows A; a prompt that prints nothing
  // at all counts as drawn after PROMPT_DRAW_MS.
  var PROMPT_DRAW_MS = 3000;
  // Delays before showing "running" and "waiting", so quick commands do
  // not make them flicker.
  var SHOW_BUSY_MS = 400;
  var SHOW_WAIT_MS = 250;

  var shell = {
    marks: false,     // the shell sent markers on this connection
    state: 'unknown', // prompt | drawing | continuation | busy | typed | unknown
    replayLeft: 0,    // bytes of the replay still to come
    replaying: false, // markers parsed now are history, not news
    blind: false,     // no markers: type at once
    freshA: false,    // A was parsed in the chunk being parsed
    drawTimer: null
  };

  shell.reset = function (scrollback) {
    this.state = 'unknown';
    this.freshA = false;
    clearTimeout(this.drawTimer);
    this.marks = false;
    this.blind = false;
    this.replayLeft = scrollback;
    this.replaying = scrollback > 0;
    showBusy(false);
    if (!this.replaying) runner.step();
  };

  shell.received = function (n) {
    if (this.replayLeft <= 0) return;
    this.replayLeft -= n;
    if (this.replayLeft > 0) return;
    var self = this;
    // Runs once xterm.js has parsed everything written before: the whole
    // replay, whose last marker tells where the shell is now.
    term.write('', function () {
      self.replaying = false;
      showBusy(self.state === 'busy');
      runner.step();
    });
  };

  shell.disconnected = function () {
    this.state = 'unknown';
    clearTimeout(this.drawTimer);
    this.replaying = false;
    showBusy(false);
    runner.render();
  };

  shell.mark = function (data) {
    var parts = data.split(';');
    var ev;
    switch (parts[0]) {
      case 'A': ev = parts.indexOf('k=s') > 0 ? 'continuation' : 'prompt'; break;
      case 'C': ev = 'busy'; break;
      case 'D': ev = 'done'; break;
      default: return; // B (end of prompt) and others: nothing to do
    }
    stats.marks++;
    this.marks = true;
    this.blind = false;
    if (ev === 'prompt') {
      // At the prompt once readline drew it (parsed, PROMPT_DRAW_MS).
      ev = this.state = 'drawing';
      this.freshA = true;
      clearTimeout(this.drawTimer);
      var self = this;
      this.drawTimer = setTimeout(function () { self.drawn(); }, PROMPT_DRAW_MS);
    } else if (ev !== 'done') {
      clearTimeout(this.drawTimer);
      this.state = ev;
    }
    if (this.replaying) return;
    showBusy(this.state === 'busy');
    runner.onMark(ev, parts[1]);
  };

  // parsed runs after xterm.js parsed each chunk of output, in order: after
  // A, output in the same chunk past the marker or in any later chunk means
  // readline is drawing its prompt.
  shell.parsed = function (chunk) {
    if (this.state !== 'drawing') return;
    var fresh = this.freshA;
    this.freshA = false;
    if (chunk.length === 0 || (fresh && endsWithPromptMark(chunk))) return;
    this.drawn();
  };

  shell.drawn = function () {
    clearTimeout(this.drawTimer);
    if (this.state !== 'drawing') return;
    this.state = 'prompt';
    if (!this.replaying) runner.step();
  };

  // endsWithPromptMark tells whether the chunk ends with (the end of) the
  // marker ESC ] 133 ; A, ended by BEL or ST: nothing followed it yet.
  var MARK_A = [0x1b, 0x5d, 0x31, 0x33, 0x33, 0x3b, 0x41];
  function endsWithPromptMark(chunk) {
    var end = chunk.length;
    if (chunk[end - 1] === 0x07) end -= 1;
    else if (end >= 2 && chunk[end - 2] === 0x1b && chunk[end - 1] === 0x5c) end -= 2;
    else if (end === 1 && chunk[0] === 0x5c) end = 0; // ESC ended the chunk before
    else return false;
    // The marker may have started in an earlier chunk.
    for (var i = MARK_A.length - 1, j = end - 1; i >= 0 && j >= 0; i--, j--) {
      if (chunk[j] !== MARK_A[i]) return false;
    }
    return true;
  }

  var busyEl = document.getElementById('term-busy');
  var busyTimer = null;
  function showBusy(on) {
    if (!busyEl) return;
    clearTimeout(busyTimer);
    if (!on) {
      busyEl.hidden = true;
      return;
    }
    busyTimer = setTimeout(function () { busyEl.hidden = false; }, SHOW_BUSY_MS);
  }

  var waitEl = document.getElementById('run-wait');
  var waitText = waitEl && waitEl.querySelector('.run-wait-text');

  // runner types queued blocks into the shell.
  var runner = {
    queue: [],       // blocks not started: {lines, i, btn}
    cur: null,       // the block being typed
    quietTimer: null,
    noMarksTimer: null,
    showTimer: null
  };

  runner.add = function (text, btn) {
    var lines = text.replace(/\r\n?/g, '\n').replace(/\n+$/, '').split('\n');
    this.queue.push({ lines: lines, i: 0, btn: btn });
    if (btn) btn.classList.add('queued');
    this.step();
  };

  // step types what the shell's state allows: the next line of the
  // current block at a (continuation) prompt, a new block at a prompt.
  runner.step = function () {
    while (session && session.connected && !shell.replaying) {
      if (this.cur) {
        if (!(shell.blind || shell.state === 'prompt' || shell.state === 'continuation')) break;
        this.typeLine();
        continue;
      }
      if (!this.queue.length) break;
      if (!(shell.blind || shell.state === 'prompt')) break;
      this.cur = this.queue.shift();
    }
    if ((this.cur || this.queue.length) && !shell.marks && !shell.blind && !this.noMarksTimer) {
      var self = this;
      this.noMarksTimer = setTimeout(function () {
        self.noMarksTimer = null;
        if (!shell.marks) {
          shell.blind = true;
          self.step();
        }
      }, NO_MARKS_MS);
    }
    this.render();
  };

  runner.send = function (line) {
    session.send(T.INPUT, encoder.encode(line + '\r'));
  };

  runner.typeLine = function () {
    var b = this.cur;
    clearTimeout(this.quietTimer);
    if (shell.blind) {
      while (b.i < b.lines.length) this.send(b.lines[b.i++]);
    } else {
      this.send(b.lines[b.i++]);
      // Until the next marker, the shell is reading what we typed.
      shell.state = 'typed';
      var self = this;
      this.quietTimer = setTimeout(function () {
        if (shell.state === 'typed') {
          shell.blind = true;
          self.step();
        }
      }, LINE_QUIET_MS);
    }
    if (b.i >= b.lines.length) {
      this.cur = null;
      if (b.btn) {
        b.btn.classList.remove('queued');
        flash(b.btn, 'Sent');
      }
    }
  };

  runner.onMark = function (ev, status) {
    if (ev === 'done') {
      // Ctrl+C (status 130) while a block runs stops the rest of it.
      if (this.cur && status === '130') {
        this.drop([this.cur]);
        this.cur = null;
        this.render();
      }
      return;
    }
    clearTimeout(this.quietTimer);
    this.step();
  };

  runner.drop = function (blocks) {
    blocks.forEach(function (b) { if (b.btn) b.btn.classList.remove('queued'); });
  };

  // sendNow types everything waiting at once, as Run did before markers.
  runner.sendNow = function () {
    var blocks = (this.cur ? [this.cur] : []).concat(this.queue);
    this.cur = null;
    this.queue = [];
    var self = this;
    blocks.forEach(function (b) {
      while (b.i < b.lines.length) self.send(b.lines[b.i++]);
      if (b.btn) {
        b.btn.classList.remove('queued');
        flash(b.btn, 'Sent');
      }
    });
    shell.state = 'typed';
    this.render();
    if (term) term.focus();
  };

  runner.cancel = function () {
    this.drop((this.cur ? [this.cur] : []).concat(this.queue));
    this.cur = null;
    this.queue = [];
    clearTimeout(this.quietTimer);
    this.render();
    if (term) term.focus();
  };

  runner.render = function () {
    if (!waitEl) return;
    var waiting = this.queue.length > 0 || (this.cur !== null && shell.state !== 'typed');
    clearTimeout(this.showTimer);
    if (!waiting) {
      waitEl.hidden = true;
      return;
    }
    var n = this.queue.length + (this.cur ? 1 : 0);
    var text = 'Waiting for the prompt';
    if (!session || !session.connected) text = 'Waiting for the terminal';
    text += '… ' + n + (n === 1 ? ' block' : ' blocks') + ' to run.';
    waitText.textContent = text;
    if (waitEl.hidden) this.showTimer = setTimeout(function () { waitEl.hidden = false; }, SHOW_WAIT_MS);
  };

  if (waitEl) {
    document.getElementById('btn-run-now').addEventListener('click', function () { runner.sendNow(); });
    document.getElementById('btn-run-cancel').addEventListener('click', function () { runner.cancel(); });
  }

  // For tests and the curious: what the page believes the shell does.
  window.labd.shell = function () {
    return { state: shell.state, marks: shell.marks, blind: shell.blind, queued: runner.queue.length + (runner.cur ? 1 : 0) };
  };

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
      if (!session || !session.connected) return;
      runner.add(text, btn);
      term.focus();
    }
  });

  // ---- files of the workspace (web/files.go) ------------------------------

  var files = document.getElementById('files');
  var filesBtn = document.getElementById('btn-files');
  var filesURL = files && files.dataset.url;
  var filesDir = '.';      // folder shown, relative to the workspace
  var maxUpload = 0;       // from the server's listing

  function human(n) {
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    return (n / 1024 / 1024).toFixed(1) + ' MiB';
  }

  function tilde(rel) { return rel === '.' ? '~' : '~/' + rel; }

  function joinRel(dir, name) { return dir === '.' ? name : dir + '/' + name; }

  // errorText is the message of a failed request: labd answers refusals
  // (not yours, no such sandbox, foreign origin) with JSON
  // {"status", "title", "error"}, other errors with plain text.
  function errorText(text) {
    try {
      var j = JSON.parse(text);
      if (j && typeof j.error === 'string') return j.error;
    } catch (e) { /* plain text */ }
    return text.trim();
  }

  function filesMsg(text, bad) {
    var el = files.querySelector('.files-msg');
    el.textContent = text;
    el.classList.toggle('bad', !!bad);
  }

  function showFiles(open) {
    files.hidden = !open;
    filesBtn.setAttribute('aria-expanded', String(open));
    refit();
    return open ? listFiles(filesDir) : Promise.resolve();
  }

  function listFiles(dir) {
    return fetch(filesURL + '?path=' + encodeURIComponent(dir), { credentials: 'same-origin' }).then(function (res) {
      if (!res.ok) return res.text().then(function (t) { throw new Error(errorText(t)); });
      return res.json();
    }).then(function (list) {
      filesDir = list.path;
      maxUpload = list.maxUpload || 0;
      renderFiles(list);
    }).catch(function (err) { filesMsg(err.message, true); });
  }

  function renderFiles(list) {
    files.querySelector('.files-where').textContent = list.display;
    files.querySelector('.files-up').disabled = list.path === '.';
    var ul = files.querySelector('.files-list');
    ul.textContent = '';
    var entries = list.entries.slice().sort(function (a, b) {
      return (a.type === 'dir' ? 0 : 1) - (b.type === 'dir' ? 0 : 1) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    });
    entries.forEach(function (e) {
      var li = document.createElement('li');
      li.dataset.type = e.type;
      li.dataset.name = e.name;
      var rel = joinRel(list.path, e.name);
      if (e.type === 'dir') {
        var b = document.createElement('button');
        b.type = 'button';
        b.className = 'files-open';
        b.textContent = e.name + '/';
        b.addEventListener('click', function () { listFiles(rel); });
        li.appendChild(b);
      } else if (e.type === 'file' || e.type === 'symlink') {
        var a = document.createElement('a');
        a.href = filesURL + '/download?path=' + encodeURIComponent(rel);
        a.setAttribute('download', e.name);
        a.className = 'files-get';
        a.textContent = e.name;
        li.appendChild(a);
        var meta = document.createElement('span');
        meta.className = 'files-meta';
        meta.textContent = e.type === 'symlink' ? '→ ' + e.target : human(e.size);
        li.appendChild(meta);
      } else {
        var span = document.createElement('span');
        span.className = 'files-other';
        span.textContent = e.name + ' (not a regular file)';
        li.appendChild(span);
      }
      ul.appendChild(li);
    });
    if (!entries.length) {
      var empty = document.createElement('li');
      empty.className = 'files-empty';
      empty.textContent = 'Empty folder.';
      ul.appendChild(empty);
    }
    if (list.truncated) filesMsg('Only the first ' + list.entries.length + ' entries are shown.', false);
    files.querySelector('.files-archive input[name="path"]').value = list.path === '.' ? '' : list.path;
  }

  // upload sends files into the folder shown, in one request: all land or
  // none does.
  function upload(fileList) {
    var list = Array.prototype.slice.call(fileList || []);
    if (!list.length) return;
    var total = list.reduce(function (n, f) { return n + f.size; }, 0);
    if (maxUpload && total > maxUpload) {
      filesMsg('Upload too large: ' + human(total) + ', the limit is ' + human(maxUpload) + ' per upload.', true);
      return;
    }
    var fd = new FormData();
    list.forEach(function (f) { fd.append('file', f, f.name); });
    var what = list.length === 1 ? list[0].name : list.length + ' files';
    var dir = filesDir;
    filesMsg('Uploading ' + what + ' to ' + tilde(dir) + '…', false);
    var xhr = new XMLHttpRequest();
    xhr.open('POST', filesURL + '?dir=' + encodeURIComponent(dir));
    xhr.upload.onprogress = function (e) {
      if (e.lengthComputable) filesMsg('Uploading ' + what + ' to ' + tilde(dir) + '… ' + Math.floor(100 * e.loaded / e.total) + ' %', false);
    };
    xhr.onload = function () {
      if (xhr.status === 200) {
        filesMsg('Uploaded ' + what + ' to ' + tilde(dir) + '.', false);
        listFiles(dir);
      } else {
        filesMsg(errorText(xhr.responseText) || ('Upload failed (' + xhr.status + ').'), true);
      }
    };
    xhr.onerror = function () { filesMsg('Upload failed: the connection broke.', true); };
    xhr.send(fd);
  }

  // download checks the answer before handing the URL to the browser, so
  // a wrong path shows its error here instead of replacing the page.
  function download(url) {
    var ctl = window.AbortController ? new AbortController() : null;
    fetch(url, { credentials: 'same-origin', signal: ctl && ctl.signal }).then(function (res) {
      if (!res.ok) return res.text().then(function (t) { filesMsg(errorText(t), true); });
      if (ctl) ctl.abort();
      filesMsg('', false);
      var a = document.createElement('a');
      a.href = url;
      a.setAttribute('download', '');
      document.body.appendChild(a);
      a.click();
      a.remove();
    }).catch(function (err) { if (err.name !== 'AbortError') filesMsg(err.message, true); });
  }

  if (files && filesBtn) {
    filesBtn.addEventListener('click', function () { showFiles(files.hidden); });
    files.querySelector('.files-close').addEventListener('click', function () { showFiles(false); });
    files.querySelector('.files-up').addEventListener('click', function () {
      var i = filesDir.lastIndexOf('/');
      listFiles(i < 0 ? '.' : filesDir.slice(0, i));
    });
    files.querySelector('.files-refresh').addEventListener('click', function () { listFiles(filesDir); });
    var input = files.querySelector('.files-input');
    files.querySelector('.files-upload').addEventListener('click', function () { input.click(); });
    input.addEventListener('change', function () {
      upload(input.files);
      input.value = '';
    });
    files.querySelectorAll('form').forEach(function (form) {
      form.addEventListener('submit', function (e) {
        e.preventDefault();
        var q = new URLSearchParams(new FormData(form)).toString();
        download(form.action + '?' + q);
      });
    });

    // Drag and drop onto the terminal uploads into the folder shown.
    var pane = document.querySelector('.pane-terminal');
    var overlay = document.getElementById('drop-overlay');
    var depth = 0;
    var hasFiles = function (e) { return e.dataTransfer && Array.prototype.indexOf.call(e.dataTransfer.types || [], 'Files') >= 0; };
    pane.addEventListener('dragenter', function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth++;
      overlay.textContent = 'Drop to upload to ' + tilde(filesDir);
      overlay.hidden = false;
    });
    pane.addEventListener('dragover', function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
    });
    pane.addEventListener('dragleave', function () {
      if (--depth <= 0) { depth = 0; overlay.hidden = true; }
    });
    pane.addEventListener('drop', function (e) {
      if (!hasFiles(e)) return;
      e.preventDefault();
      depth = 0;
      overlay.hidden = true;
      // The drop's file list is only valid during the event.
      var dropped = Array.prototype.slice.call(e.dataTransfer.files);
      // The listing tells the folder and the size limit first.
      (files.hidden ? showFiles(true) : Promise.resolve()).then(function () { upload(dropped); });
    });
  }

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
