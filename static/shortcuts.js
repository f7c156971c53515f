// Keyboard shortcuts, listed in the "?" dialog (base.html): "/" search,
// j/k next and previous event, m load more, p pause, f filters, t theme.
// Never while typing in a field, and never with Ctrl, Alt or Meta.
(function () {
  "use strict";

  function rows() {
    return Array.from(document.querySelectorAll(
      "#feed-items .event:not([hidden]) .event-title, #timeline .step-title, .conversation-list .conversation-title"));
  }

  function move(step) {
    var links = rows();
    if (!links.length) return;
    var index = links.indexOf(document.activeElement);
    var next = links[Math.min(Math.max(index + step, 0), links.length - 1)];
    if (index === -1) next = links[0];
    document.querySelectorAll(".current").forEach(function (el) { el.classList.remove("current"); });
    var row = next.closest(".event, .step, .conversation-item");
    if (row) row.classList.add("current");
    next.focus();
    next.scrollIntoView({ block: "nearest" });
  }

  function typing(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  document.addEventListener("keydown", function (evt) {
    if (evt.ctrlKey || evt.metaKey || evt.altKey || evt.defaultPrevented) return;
    var help = document.getElementById("shortcuts-help");
    if (typing(evt.target)) {
      if (evt.key === "Escape" && evt.target.type === "search") evt.target.blur();
      return;
    }
    if (help && help.open) return;  // the dialog handles its own keys (Esc closes it)
    var handled = true;
    switch (evt.key) {
      case "/": {
        var search = document.querySelector("#filter-form input[type=search], .conversation-filters input[type=search]");
        if (search) { search.focus(); search.select(); } else handled = false;
        break;
      }
      case "j": move(1); break;
      case "k": move(-1); break;
      case "m": {
        var more = document.querySelector("#load-more a, .conversations-more a");
        if (more) more.click(); else handled = false;
        break;
      }
      case "p": if (window.activitywebTogglePause && document.querySelector(".live-pause")) window.activitywebTogglePause(); else handled = false; break;
      case "f": if (window.activitywebToggleFilters && document.querySelector(".filters-toggle")) window.activitywebToggleFilters(); else handled = false; break;
      case "t": if (window.activitywebToggleTheme) window.activitywebToggleTheme(); break;
      case "?": if (help) help.showModal(); break;
      default: handled = false;
    }
    if (handled) evt.preventDefault();
  });
})();
