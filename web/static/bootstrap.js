// labd: the base-image banner (web/bootstrap.go). While labd prepares its
// base images in the background, every page shows what it is doing; this
// file asks /bootstrap/status every 2 s and updates the banner, and
// removes it when there is nothing left to say.
(function () {
  'use strict';
  var el = document.getElementById('bootstrap-banner');
  if (!el || !el.dataset.url) return;
  var INTERVAL = 2000;
  var stats = { polls: 0, last: null };
  window.labd = window.labd || {};
  window.labd.bootstrap = stats;

  function text(sel, value) {
    var n = el.querySelector(sel);
    if (n) n.textContent = value || '';
    return n;
  }

  // A lab page waiting for its terminal (no shell image yet) reloads
  // once the image is there: the reload starts the sandbox.
  var lab = document.getElementById('lab');
  var waitShell = lab && lab.dataset.waitShell === 'true';

  function render(b) {
    stats.last = b;
    if (waitShell && b.shell_ready) {
      window.location.reload();
      return;
    }
    if (b.state === 'done' && !b.message && !(b.notes && b.notes.length) && !(b.errors && b.errors.length)) {
      el.remove();
      return;
    }
    el.dataset.state = b.state;
    var msg = el.querySelector('.bootstrap-message');
    msg.textContent = b.message || '';
    if (b.phase) {
      var p = document.createElement('span');
      p.className = 'bootstrap-phase';
      p.textContent = b.phase;
      msg.appendChild(document.createTextNode(' '));
      msg.appendChild(p);
    }
    var ul = el.querySelector('.bootstrap-notes');
    ul.replaceChildren();
    (b.notes || []).forEach(function (n) {
      var li = document.createElement('li');
      li.textContent = n;
      ul.appendChild(li);
    });
    var det = el.querySelector('.bootstrap-errors');
    det.hidden = !(b.errors && b.errors.length);
    text('.bootstrap-errors pre', (b.errors || []).join('\n'));
  }

  function poll() {
    stats.polls++;
    fetch(el.dataset.url, { cache: 'no-store', credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then(function (b) {
        render(b);
        if (b.poll) setTimeout(poll, INTERVAL);
      })
      .catch(function () { setTimeout(poll, INTERVAL); });
  }

  if (el.dataset.poll === 'true') setTimeout(poll, INTERVAL);
})();
