// labd lab page: live step status. The grader streams the lab's state over
// the labd.status.v1 websocket (web/grading.go); this file turns it into
// the check lists' states and messages, the step list's marks and a
// progress line, and adds a Check button to every step's status area.
//
// Machines read data-state (the grader's passed/failed/error/pending);
// people see data-view, which is kinder (docs/authoring.md, "What the
// learner sees"): a failing check is "to do" until the learner presses
// the step's Check button (the server lists the step in "asked") or the
// check passed before and no longer does ("regressed"); only then is it
// red "not yet". A step without checks is "no check".
(function () {
  'use strict';
  var lab = document.getElementById('lab');
  if (!lab || !lab.dataset.statusUrl) return;
  var SUBPROTOCOL = 'labd.status.v1';
  var ws = null;
  var backoff = 500;
  var stats = { updates: 0, connects: 0, last: null, asked: [] };
  window.labd = window.labd || {};
  window.labd.status = stats;

  var VIEW_TEXT = {
    done: 'done', todo: 'to do', progress: 'in progress', notyet: 'not yet',
    error: 'could not check', nocheck: 'no check'
  };
  var NOTE_TEXT = {
    done: 'Step done.',
    todo: 'Checked as you work. Press Check to see what is missing.',
    progress: 'In progress: checked as you work.',
    notyet: 'Not done yet: see what is missing above.',
    error: 'Could not check: see why above.'
  };

  function url() {
    var proto = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
    return proto + '//' + window.location.host + lab.dataset.statusUrl;
  }

  function stepItem(index) {
    return document.querySelector('.step-list li[data-step="' + index + '"]');
  }

  function showStep(index, view) {
    var item = stepItem(index);
    if (!item) return;
    item.dataset.view = view;
    var s = item.querySelector('.step-state');
    if (s) s.textContent = VIEW_TEXT[view] || view;
  }

  // Before the first status: steps with checks are "to do", the others
  // "no check" (the template's "pending" would never change for them).
  function initialViews() {
    document.querySelectorAll('.step-list li[data-step]').forEach(function (item) {
      var box = document.querySelector('.step-status[data-step="' + item.dataset.step + '"]');
      showStep(item.dataset.step, box ? 'todo' : 'nocheck');
    });
    document.querySelectorAll('.step-status').forEach(function (box) {
      box.dataset.view = 'todo';
      box.querySelectorAll('li.check').forEach(function (li) { li.dataset.view = 'todo'; });
      var note = box.querySelector('.step-status-note');
      if (note) note.textContent = NOTE_TEXT.todo;
    });
  }

  function addButtons() {
    document.querySelectorAll('.step-status').forEach(function (box) {
      if (box.querySelector('.btn-check')) return;
      var b = document.createElement('button');
      b.type = 'button';
      b.className = 'btn-check';
      b.textContent = 'Check';
      b.addEventListener('click', function () {
        if (!ws || ws.readyState !== WebSocket.OPEN) return;
        ws.send(JSON.stringify({ type: 'check', step: Number(box.dataset.step) }));
        b.textContent = 'Checking…';
        b.dataset.waiting = '1';
        // The answer is the first status listing this step in "asked";
        // the timer only covers a lost connection.
        setTimeout(function () { b.textContent = 'Check'; delete b.dataset.waiting; }, 5000);
      });
      box.appendChild(b);
    });
  }

  function checkView(c, asked) {
    if (c.state === 'passed') return 'done';
    if (c.state === 'error') return 'error';
    if (c.state === 'failed' && (asked || c.regressed)) return 'notyet';
    return 'todo';
  }

  function stepView(views) {
    if (!views.length) return 'nocheck';
    var has = function (v) { return views.indexOf(v) >= 0; };
    if (views.every(function (v) { return v === 'done'; })) return 'done';
    if (has('notyet')) return 'notyet';
    if (has('error')) return 'error';
    if (has('done')) return 'progress';
    return 'todo';
  }

  function apply(res, askedList) {
    stats.updates++;
    stats.last = Date.now();
    stats.asked = askedList;
    (res.steps || []).forEach(function (st) {
      var asked = askedList.indexOf(st.index) >= 0;
      var box = document.querySelector('.step-status[data-step="' + st.index + '"]');
      var item = stepItem(st.index);
      var views = (st.checks || []).map(function (c) { return checkView(c, asked); });
      var view = stepView(views);
      if (item) item.dataset.state = st.state;
      showStep(st.index, view);
      if (!box) return;
      box.dataset.state = st.state;
      box.dataset.view = view;
      if (asked) {
        var btn = box.querySelector('.btn-check[data-waiting]');
        if (btn) { btn.textContent = 'Check'; delete btn.dataset.waiting; }
      }
      (st.checks || []).forEach(function (c, i) {
        var li = box.querySelector('li.check[data-check="' + c.id + '"]');
        if (!li) return;
        var v = views[i];
        li.dataset.state = c.state;
        li.dataset.view = v;
        var msg = li.querySelector('.check-message');
        // A "to do" check says nothing yet: its message reads as a failure.
        var text = '';
        if (v === 'notyet' || v === 'error') {
          text = c.message || '';
          if (v === 'notyet' && c.hint) text = text ? text + ' Hint: ' + c.hint : 'Hint: ' + c.hint;
        }
        if (text) {
          if (!msg) {
            msg = document.createElement('div');
            msg.className = 'check-message';
            li.appendChild(msg);
          }
          msg.textContent = text;
        } else if (msg) {
          msg.remove();
        }
      });
      var note = box.querySelector('.step-status-note');
      if (note) note.textContent = NOTE_TEXT[view] || '';
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
      if (m.type === 'status' && m.result) apply(m.result, m.asked || []);
    };
    ws.onclose = function () { ws = null; retry(); };
  }

  function retry() {
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  }

  initialViews();
  addButtons();
  connect();
})();
