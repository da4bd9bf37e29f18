// Progressive enhancement for admin pages: everything works without it.
(function () {
  "use strict";

  // Live delivery progress of an announcement.
  var section = document.getElementById("progress");
  if (section && section.dataset.live === "1") {
    var bar = document.getElementById("progress-bar");
    var status = document.getElementById("ann-status");
    var tick = function () {
      fetch(section.dataset.url, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) {
          if (!data) { return; }
          bar.max = data.total || 1;
          bar.value = data.done;
          section.querySelectorAll("[data-k]").forEach(function (el) {
            var v = data[el.dataset.k];
            if (v !== undefined) { el.textContent = v.toLocaleString(); }
          });
          if (status) {
            status.textContent = data.status;
            status.className = "status " + data.status;
          }
          if (data.status === "sending" || data.status === "paused") {
            window.setTimeout(tick, 2000);
          }
        })
        .catch(function () { window.setTimeout(tick, 5000); });
    };
    window.setTimeout(tick, 1000);
  }

  // Live audience count while an announcement is being written.
  var form = document.getElementById("announcement-form");
  if (form && form.dataset.countUrl) {
    var out = document.getElementById("audience-count");
    var field = function (name) {
      var el = form.querySelector("[name='" + name + "']");
      return el ? el.value : "";
    };
    var update = function () {
      var params = new URLSearchParams({
        topic: field("topic"), source: field("source_slug"),
        from: field("signed_up_from"), until: field("signed_up_until")
      });
      fetch(form.dataset.countUrl + "?" + params.toString(), { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (data) {
          out.textContent = data.error ? data.error
            : "Reaches " + data.count.toLocaleString() + " confirmed lead" + (data.count === 1 ? "" : "s") + " right now.";
        });
    };
    ["topic", "source_slug", "signed_up_from", "signed_up_until"].forEach(function (name) {
      var el = form.querySelector("[name='" + name + "']");
      if (el) { el.addEventListener("change", update); }
    });
    update();
  }
})();
