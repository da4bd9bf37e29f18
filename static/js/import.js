// Progressive enhancement for the import page: the figures follow the
// worker without reloading; without it, the page's Refresh link does.
(function () {
  "use strict";
  var section = document.getElementById("import-progress");
  if (!section || section.dataset.live !== "1") { return; }
  var tick = function () {
    fetch(section.dataset.url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        section.querySelectorAll("[data-k]").forEach(function (el) {
          var v = data[el.dataset.k];
          if (v !== undefined && v !== null) { el.textContent = v.toLocaleString(); }
        });
        if (data.finished) {
          window.location.reload();  // the report, the issues and the next step
        } else {
          window.setTimeout(tick, 1500);
        }
      })
      .catch(function () { window.setTimeout(tick, 5000); });
  };
  window.setTimeout(tick, 1500);
})();
