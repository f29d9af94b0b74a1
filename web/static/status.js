// labd lab page: live step status. The grader streams the lab's state over
// the labd.status.v1 websocket (web/grading.go); this file turns it into
// the check lists' states and messages, the step list's marks and a
// progress line, and adds a Check button to every step's status area.
(function () {
  'use strict';
  var lab = document.getElementById('lab');
  if (!lab || !lab.dataset.statusUrl) return;
  var SUBPROTOCOL = 'labd.status.v1';
  var ws = null;
  var backoff = 500;
  var stats = { updates: 0, connects: 0, last: null };
  window.labd = window.labd || {};
  window.labd.status = stats;

  var STATE_TEXT = { passed: 'done', failed: 'not yet', error: 'could not check', pending: 'pending' };

  function url() {
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + window.location.host + lab.dataset.statusUrl;
  }

  function addButtons() {
    document.querySelectorAll('.step-status').forEach(function (box) {
      if (box.querySelector('.btn-check')) return;
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'btn-check';
      b.textContent = 'Check';
      b.addEventListener('click', function () {
        if (ws && ws.readyState === WebSocket.OPEN) {
          ws.send(JSON.stringify({ type: 'check' }));
          b.textContent = 'Checking…';
          setTimeout(function () { b.textContent = 'Check'; }, 800);
        }
      });
      box.appendChild(b);
    });
  }

  function apply(res) {
    stats.updates++;
    stats.last = Date.now();
    (res.steps || []).forEach(function (st) {
      var box = document.querySelector('.step-status[data-step="' + st.index + '"]');
      var item = document.querySelector('.step-list li[data-step="' + st.index + '"]');
      if (item) {
        item.dataset.state = st.state;
        var s = item.querySelector('.step-state');
        if (s) s.textContent = STATE_TEXT[st.state] || st.state;
      }
      if (!box) return;
      box.dataset.state = st.state;
      var notes = [];
      (st.checks || []).forEach(function (c) {
        var li = box.querySelector('li.check[data-check="' + c.id + '"]');
        if (!li) return;
        li.dataset.state = c.state;
        var msg = li.querySelector('.check-message');
        var text = c.state === 'passed' ? '' : (c.message || '');
        if (c.state !== 'passed' && c.hint) text = text ? text + ' Hint: ' + c.hint : 'Hint: ' + c.hint;
        if (text && c.state !== 'pending') {
          if (!msg) {
            msg = document.createElement('div');
            msg.className = 'check-message';
            li.appendChild(msg);
          }
          msg.textContent = text;
        } else if (msg) {
          msg.remove();
        }
        if (c.state !== 'passed') notes.push(c.state);
      });
      var note = box.querySelector('.step-status-note');
      if (note) {
        note.textContent = st.state === 'passed' ? 'Step done.' :
          st.state === 'pending' ? 'Not checked yet.' : 'Checked just now.';
      }
    });
    var p = document.getElementById('lab-progress');
    if (!p) {
      p = document.createElement('p');
      p.id = 'lab-progress';
      p.className = 'lab-progress';
      var nav = document.querySelector('.step-list');
      if (nav) nav.parentNode.insertBefore(p, nav);
    }
    p.dataset.passed = res.passed;
    p.dataset.total = res.total;
    p.textContent = res.passed + ' of ' + res.total + ' checks done';
    document.dispatchEvent(new CustomEvent('labd:status', { detail: res }));
  }

  function connect() {
    stats.connects++;
    try {
      ws = new WebSocket(url(), [SUBPROTOCOL]);
    } catch (e) {
      return retry();
    }
    ws.onopen = function () { backoff = 500; };
    ws.onmessage = function (ev) {
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.type === 'status' && m.result) apply(m.result);
    };
    ws.onclose = function () { ws = null; retry(); };
  }

  function retry() {
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  }

  addButtons();
  connect();
})();
