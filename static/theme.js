// The theme, before the first paint: the one the reader chose (remembered in
// localStorage), else the system's (prefers-color-scheme, through CSS
// light-dark()). Also marks the page as scripted, so the stylesheet may fold
// the menu and the filters away (without scripts they stay open).
(function () {
  "use strict";
  var root = document.documentElement;
  root.classList.add("js");
  try {
    var chosen = localStorage.getItem("activityweb.theme");
    if (chosen === "light" || chosen === "dark") root.dataset.theme = chosen;
  } catch (e) { /* storage refused: follow the system */ }
})();
