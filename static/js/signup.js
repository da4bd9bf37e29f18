// Progressive enhancement for the signup forms. Pages are the same for
// every visitor (cached), so what belongs to this visit is filled in here:
// the outside page that sent the visitor (document.referrer) and the UTM
// parameters of this page's address. Without JavaScript the server still
// reads the UTM values from the post's Referer; only the outside referrer
// is lost.
(function () {
  "use strict";
  var UTM = ["utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content"];

  function fill(form) {
    var params = new URLSearchParams(window.location.search);
    var set = function (name, value) {
      var field = form.elements.namedItem(name);
      if (field && value && !field.value) {
        field.value = value.slice(0, name === "ref" ? 500 : 200);
      }
    };
    set("ref", document.referrer);
    UTM.forEach(function (key) { set(key, params.get(key)); });
  }

  function start() {
    document.querySelectorAll("form.signup").forEach(fill);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
