// Online classes on the training page: the visitor's own time beside the
// class's zone (which stays shown). Reads <time datetime data-end data-zone>;
// without JavaScript the page is unchanged.
(function () {
  "use strict";
  if (!window.Intl || !Intl.DateTimeFormat) { return; }
  var visitorZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  var day = new Intl.DateTimeFormat("en-GB", { weekday: "long", day: "numeric", month: "long", year: "numeric" });
  var hour = new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
  var zoneName = new Intl.DateTimeFormat("en-GB", { timeZoneName: "short" });
  var shortName = function (date) {
    var part = zoneName.formatToParts(date).filter(function (p) { return p.type === "timeZoneName"; })[0];
    return part ? part.value : "";
  };

  document.querySelectorAll("time[data-end][data-zone]").forEach(function (el) {
    if (!visitorZone || el.dataset.zone === visitorZone) { return; }
    var start = new Date(el.getAttribute("datetime"));
    var end = new Date(el.dataset.end);
    if (isNaN(start) || isNaN(end)) { return; }
    var days = day.format(start);
    if (day.format(end) !== days) { days += " – " + day.format(end); }
    var local = document.createElement("p");
    local.className = "local-time";
    var stamp = document.createElement("time");
    stamp.setAttribute("datetime", start.toISOString());
    stamp.textContent = days + ", " + hour.format(start) + "–" + hour.format(end);
    local.append("Your time: ", stamp, " (" + visitorZone + ", " + shortName(start) + ")");
    el.parentNode.insertAdjacentElement("afterend", local);
  });
})();
