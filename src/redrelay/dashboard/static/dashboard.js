// redrelay dashboard: live overview over server-sent events. No framework, no build step.
// Values are written with textContent and setAttribute only, never as HTML.
(function () {
  "use strict";
  var root = document.body.getAttribute("data-root") || "";
  var live = document.getElementById("live");
  var source = null;

  function age(s) {
    if (s === null || s === undefined) return "-";
    if (s < 60) return s.toFixed(1) + "s";
    if (s < 3600) return (s / 60).toFixed(1) + "m";
    return (s / 3600).toFixed(1) + "h";
  }

  function spark(cell, points) {
    var line = cell.querySelector("polyline");
    if (!line || !points.length) return;
    var w = 120, hgt = 24, top = Math.max.apply(null, points) || 1;
    var step = w / Math.max(1, points.length - 1);
    line.setAttribute("points", points.map(function (p, i) {
      return (i * step).toFixed(1) + "," + (hgt - (p / top) * (hgt - 2) - 1).toFixed(1);
    }).join(" "));
  }

  function apply(snap) {
    snap.queues.forEach(function (q) {
      document.querySelectorAll('[data-q="' + CSS.escape(q.name) + '"]').forEach(function (cell) {
        var f = cell.getAttribute("data-f");
        if (f === "history") spark(cell, q.history);
        else if (f === "oldest_age") cell.textContent = age(q.oldest_age);
        else if (f === "acked_rate") cell.textContent = q.acked_rate.toFixed(2);
        else if (f in q) cell.textContent = String(q[f]);
      });
    });
    snap.topics.forEach(function (t) {
      t.groups.forEach(function (g) {
        var key = t.name + "/" + g.group;
        document.querySelectorAll('[data-t="' + CSS.escape(key) + '"]').forEach(function (cell) {
          var f = cell.getAttribute("data-f"), v = g[f];
          if (f === "history") spark(cell, v);
          else if (f === "acked_rate") cell.textContent = v.toFixed(2);
          else cell.textContent = v === null || v === undefined ? "-" : String(v);
        });
      });
    });
    var w = document.querySelector('[data-f="workers"]');
    if (w) w.textContent = String(snap.workers);
    if (live) live.textContent = "live " + new Date(snap.at * 1000).toLocaleTimeString();
  }

  function open() {
    if (source) return;
    source = new EventSource(root + "/events");
    source.addEventListener("overview", function (e) { apply(JSON.parse(e.data)); });
    source.onerror = function () { if (live) live.textContent = "reconnecting"; };
  }

  function close() {
    if (source) { source.close(); source = null; }
    if (live) live.textContent = "paused";
  }

  // One snapshot stream per visible tab; a hidden tab costs the server nothing.
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) close(); else open();
  });
  if (!document.hidden) open();
})();
