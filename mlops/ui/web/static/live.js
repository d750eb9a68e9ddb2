/* mlops dashboard: live numbers for the rollout and monitoring pages.
 * The element #live names a JSON address (data-live-url) that answers
 * {"key": "text", ..., "_signature": "..."}; every element with data-live-key="key" gets
 * the new text. When the signature changes (a new analysis, window or alert), a note
 * offers a reload. Polling stops while the tab is hidden and resumes when it shows. */
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !root.dataset.liveUrl) { return; }
  var url = root.dataset.liveUrl;
  var every = parseInt(root.dataset.liveInterval || "3000", 10);
  var timer = null;
  var busy = false;

  function apply(values) {
    var nodes = document.querySelectorAll("[data-live-key]");
    for (var i = 0; i < nodes.length; i++) {
      var key = nodes[i].getAttribute("data-live-key");
      if (Object.prototype.hasOwnProperty.call(values, key)
          && nodes[i].textContent !== values[key]) {
        nodes[i].textContent = values[key];
        nodes[i].classList.add("live-changed");
      }
    }
    var note = document.getElementById("live-note");
    if (note && values._signature !== undefined
        && values._signature !== root.dataset.liveSignature) {
      note.hidden = false;
    }
    root.dataset.liveUpdated = String(Date.now());
  }

  function poll() {
    if (busy || document.visibilityState !== "visible") { return; }
    busy = true;
    fetch(url, { credentials: "same-origin", headers: { "accept": "application/json" },
                 cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (values) { if (values) { apply(values); } })
      .catch(function () { /* the server may be restarting: the next poll tries again */ })
      .then(function () { busy = false; });
  }

  function start() {
    if (timer === null) { timer = window.setInterval(poll, every); }
  }

  function stop() {
    if (timer !== null) { window.clearInterval(timer); timer = null; }
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") { poll(); start(); } else { stop(); }
  });
  root.dataset.livePolling = "on";
  if (document.visibilityState === "visible") { start(); }
}());
