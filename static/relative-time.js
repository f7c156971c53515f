// The one relative-time rule ("5 min ago"), applied in the browser. The rule
// is data the server renders into every page (<meta name="relative-time">,
// from activityweb/web/present.py's RELATIVE_TIME), and the server renders
// the first text with it too: the browser only refreshes it as time passes.
// No DOM here, so tests run it under Node beside the Python copy.
(function (root) {
  "use strict";

  function relativeTime(rule, date, now) {
    var seconds = (now - date.getTime()) / 1000;
    if (seconds < 0) return rule.future;
    for (var i = 0; i < rule.steps.length; i++) {
      var step = rule.steps[i];  // [below, text, unit, "nearest" | "floor"]
      if (seconds < step[0]) {
        var count = Math.floor(seconds / step[2] + (step[3] === "nearest" ? 0.5 : 0));
        return step[1].replace("{n}", String(Math.max(count, 1)));
      }
    }
    var day = rule.months[date.getUTCMonth()] + " " + date.getUTCDate();
    return date.getUTCFullYear() === new Date(now).getUTCFullYear() ? day : day + ", " + date.getUTCFullYear();
  }

  root.activitywebRelativeTime = relativeTime;
  if (typeof module === "object" && module.exports) module.exports = relativeTime;
})(typeof window !== "undefined" ? window : globalThis);
