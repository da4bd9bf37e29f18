// Progressive enhancement: a "Copy" button beside a read-only field
// (data-copy = the field's id). Without JavaScript the button stays hidden
// and the field can still be selected and copied by hand.
(function () {
  "use strict";
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    var field = document.getElementById(button.dataset.copy);
    if (!field || !navigator.clipboard) { return; }
    var status = button.parentNode.querySelector(".copy-status");
    var say = function (text) { if (status) { status.textContent = text; } };
    button.hidden = false;
    button.addEventListener("click", function () {
      field.select();
      navigator.clipboard.writeText(field.value).then(
        function () { say("Copied."); },
        function () { say("Press Ctrl+C (or ⌘C) to copy the selected token."); }
      );
    });
  });
})();
