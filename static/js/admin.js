// Progressive enhancement for admin pages: everything works without it.
(function () {
  "use strict";

  var number = function (n) { return Number(n).toLocaleString("en"); };

  // Live delivery progress of an announcement, while it is scheduled,
  // sending or paused: polled every 2 s while the counts move, less and
  // less often (up to 30 s) while they do not or the tab is hidden, and
  // not at all once it is finished. The Refresh link does it without JS.
  var LIVE = ["scheduled", "sending", "paused"];
  var FAST = 2000, SLOW = 30000;
  var section = document.getElementById("progress");
  if (section && section.dataset.live === "1" && window.fetch) {
    var bar = document.getElementById("progress-bar");
    var status = document.getElementById("ann-status");
    var waiting = document.getElementById("progress-waiting");
    var skips = document.getElementById("skips");
    var skipsBody = document.getElementById("skips-body");
    var note = document.getElementById("progress-auto");
    var outcome = document.getElementById("outcome-bar");
    var counts = document.getElementById("progress-text");
    var nothingSent = document.getElementById("nothing-sent");
    var delay = FAST, last = "";
    if (note) { note.textContent = "or wait: the counts update by themselves."; }

    var render = function (data) {
      bar.max = data.total || 1;
      bar.value = data.done;
      bar.textContent = data.done + " of " + data.total;
      if (waiting) { waiting.hidden = data.total > 0; }
      if (counts) { counts.hidden = data.total === 0; }  // no "0 of 0 done" while the worker plans
      if (outcome) {
        var x = 0, whole = data.total || 1;
        outcome.querySelectorAll("[data-part]").forEach(function (rect) {
          var w = 100 * (data[rect.dataset.part] || 0) / whole;
          rect.setAttribute("x", x.toFixed(3));
          rect.setAttribute("width", w.toFixed(3));
          x += w;
        });
      }
      if (nothingSent) { nothingSent.hidden = !(data.total > 0 && data.done === data.total && data.sent === 0); }
      section.querySelectorAll("[data-k]").forEach(function (el) {
        var v = data[el.dataset.k];
        if (v !== undefined) { el.textContent = number(v); }
      });
      if (status) {
        status.textContent = data.status;
        status.className = "status " + data.status;
      }
      if (skips && skipsBody && data.skips) {
        skipsBody.replaceChildren.apply(skipsBody, data.skips.map(function (pair) {
          var row = document.createElement("tr");
          var reason = document.createElement("td");
          var count = document.createElement("td");
          reason.textContent = pair[0];
          count.textContent = number(pair[1]);
          count.className = "num";
          row.append(reason, count);
          return row;
        }));
        skips.hidden = data.skips.length === 0;
      }
    };
    var later = function () {
      window.setTimeout(tick, document.hidden ? Math.max(delay, 10000) : delay);
    };
    var tick = function () {
      fetch(section.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (r.status >= 400 && r.status < 500) { throw new Error("stop"); }  // signed out, gone
          if (!r.ok) { throw new Error("retry"); }
          return r.json();
        })
        .then(function (data) {
          var seen = JSON.stringify(data);
          delay = seen === last ? Math.min(delay * 1.5, SLOW) : FAST;
          last = seen;
          render(data);
          if (LIVE.indexOf(data.status) >= 0) {
            later();
          } else if (note) {
            note.textContent = "finished: " + data.status + ".";
          }
        })
        .catch(function (err) {
          if (err.message === "stop") { return; }
          delay = Math.min(delay * 2, SLOW);
          later();
        });
    };
    later();
  }

  // Live audience count while an announcement is being written, with the
  // leads the frequency cap would hold back.
  var form = document.getElementById("announcement-form");
  if (form && form.dataset.countUrl && window.fetch) {
    var out = document.getElementById("audience-count");
    var field = function (name) {
      var el = form.querySelector("[name='" + name + "']");
      return el ? el.value : "";
    };
    var override = form.querySelector("[name='ignore_frequency_cap']");
    var describe = function (data) {
      var text = "Reaches " + number(data.count) + " confirmed lead" + (data.count === 1 ? "" : "s") + " right now.";
      if (data.cap_days > 0) {
        var held = number(data.held_by_cap) + " of them";
        var days = data.cap_days + " day" + (data.cap_days === 1 ? "" : "s");
        text += (override && override.checked)
          ? " " + held + " got marketing mail in the last " + days + " and get this one anyway."
          : " The frequency cap holds back " + held + ": they got marketing mail in the last " + days + ".";
      }
      return text;
    };
    var update = function () {
      var params = new URLSearchParams({
        topic: field("topic"), source: field("source_slug"),
        from: field("signed_up_from"), until: field("signed_up_until")
      });
      fetch(form.dataset.countUrl + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) { out.textContent = data.error ? data.error : describe(data); });
    };
    ["topic", "source_slug", "signed_up_from", "signed_up_until", "ignore_frequency_cap"].forEach(function (name) {
      var el = form.querySelector("[name='" + name + "']");
      if (el) { el.addEventListener("change", update); }
    });
    update();
  }
})();
