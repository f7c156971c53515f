// Page controls that are not live: the header menu on a phone, the filter
// drawer, the theme toggle, the token page's copy button, keeping the loaded
// depth and the focus after "Load more", and a filter typed while offline.
(function () {
  "use strict";
  var root = document.documentElement;
  var THEME_KEY = "activityweb.theme";

  function $(selector, scope) { return (scope || document).querySelector(selector); }

  // --- Theme ------------------------------------------------------------------
  function effectiveTheme() {
    if (root.dataset.theme) return root.dataset.theme;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function showTheme() {
    var button = $(".theme-toggle");
    if (!button) return;
    var dark = effectiveTheme() === "dark";
    button.setAttribute("aria-pressed", dark ? "true" : "false");
  }

  function toggleTheme() {
    var next = effectiveTheme() === "dark" ? "light" : "dark";
    root.dataset.theme = next;
    try { localStorage.setItem(THEME_KEY, next); } catch (e) { /* not remembered, still applied */ }
    showTheme();
  }
  window.activitywebToggleTheme = toggleTheme;

  // --- Header menu (phones) ---------------------------------------------------
  function toggleMenu(open) {
    var button = $(".menu-toggle");
    if (!button) return;
    var next = typeof open === "boolean" ? open : button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", next ? "true" : "false");
    document.body.classList.toggle("menu-open", next);
  }

  // --- Filter drawer ------------------------------------------------------------
  // On a phone the fields start folded (class "open" unfolds them); on a
  // wide screen they start open, and folding them (class "closed") is remembered.
  var wide = window.matchMedia("(min-width: 801px)");
  var FOLD_KEY = "activityweb.filters-folded";

  function filtersOpen(form) {
    return wide.matches ? !form.classList.contains("closed") : form.classList.contains("open");
  }

  function showFilters() {
    var form = $("#filter-form"), button = $(".filters-toggle");
    if (form && button) button.setAttribute("aria-expanded", filtersOpen(form) ? "true" : "false");
  }

  function toggleFilters(open) {
    var form = $("#filter-form");
    if (!form) return;
    var next = typeof open === "boolean" ? open : !filtersOpen(form);
    if (wide.matches) {
      form.classList.toggle("closed", !next);
      try { localStorage.setItem(FOLD_KEY, next ? "" : "1"); } catch (e) { /* not remembered */ }
    } else {
      form.classList.toggle("open", next);
    }
    showFilters();
    if (next) {
      var first = form.querySelector("fieldset input, fieldset select");
      if (first) first.focus();
    }
  }
  window.activitywebToggleFilters = toggleFilters;

  function restoreFilters() {
    var form = $("#filter-form");
    if (!form) return;
    try { if (localStorage.getItem(FOLD_KEY)) form.classList.add("closed"); } catch (e) { /* open */ }
    showFilters();
  }
  wide.addEventListener("change", showFilters);

  // The count on the drawer's button: how many fields the filter sets (the
  // search box is outside the drawer and not counted).
  function countFilters() {
    var form = $("#filter-form");
    var badge = $(".filters-toggle .filter-count");
    if (!form || !badge) return;
    var n = 0;
    form.querySelectorAll("fieldset input:not([type=hidden]), fieldset select").forEach(function (field) {
      if (String(field.value).trim() !== "") n += 1;
    });
    form.querySelectorAll("fieldset input[type=hidden]").forEach(function (field) {
      if (field.value) n += 1;
    });
    badge.textContent = n ? String(n) : "";
    badge.hidden = !n;
  }

  // --- Copy a token's secret ----------------------------------------------------
  function copySecret(button) {
    var target = document.getElementById(button.dataset.copy);
    if (!target) return;
    var done = function () {
      button.textContent = "Copied";
      var note = $("#live-announcer");
      if (note) note.textContent = "Token copied to the clipboard";
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(target.textContent.trim()).then(done, function () { selectText(target); });
    } else {
      selectText(target);
      try { if (document.execCommand("copy")) done(); } catch (e) { /* selected: the reader copies */ }
    }
  }

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  document.addEventListener("click", function (evt) {
    var target = evt.target.closest ? evt.target : evt.target.parentElement;
    if (!target) return;
    if (target.closest(".theme-toggle")) toggleTheme();
    else if (target.closest(".menu-toggle")) toggleMenu();
    else if (target.closest(".filters-toggle")) toggleFilters();
    else if (target.closest("[data-copy]")) copySecret(target.closest("[data-copy]"));
    else if (target.closest(".shortcuts-open")) {
      var help = document.getElementById("shortcuts-help");
      if (help && !help.open) help.showModal();
    }
  });

  // --- Keeping the loaded depth, and the focus, after "Load more" ---------------
  // The server answers "load more" with HX-Replace-Url (the feed's URL with
  // depth=N): back from an event reloads that URL and the server renders the
  // N pages again, so the browser can put the scroll position back.
  var loadMore = null;  // {elt: the link, from: the row above it}
  document.addEventListener("htmx:beforeRequest", function (evt) {
    var more = evt.detail.elt.closest && evt.detail.elt.closest(".load-more");
    if (more) loadMore = { elt: evt.detail.elt, from: more.previousElementSibling };
  });
  document.addEventListener("htmx:afterSettle", function (evt) {
    // Only the settle of that request (a live message may settle in between).
    if (!loadMore || !evt.detail.requestConfig || evt.detail.requestConfig.elt !== loadMore.elt) return;
    var previous = loadMore.from;
    loadMore = null;
    var next = previous ? previous.nextElementSibling : null;
    while (next && !next.classList.contains("event") && !next.classList.contains("conversation-item")) next = next.nextElementSibling;
    var link = next && next.querySelector(".event-title, .conversation-title");
    if (link) link.focus();
  });

  // --- A filter change while offline ------------------------------------------
  // If the filter's request fails (the server is away), the form and the list
  // would disagree; say so, and send the filter again when the live socket
  // (or the network) comes back.
  var pendingFilter = false;
  function filterFailed(evt) {
    if (!evt.detail.elt || evt.detail.elt.id !== "filter-form") return;
    pendingFilter = true;
    var note = $("#filter-pending");
    if (note) note.hidden = false;
  }
  document.addEventListener("htmx:sendError", filterFailed);
  document.addEventListener("htmx:responseError", filterFailed);
  function retryFilter() {
    if (!pendingFilter) return;
    var form = $("#filter-form");
    if (form && window.htmx) htmx.trigger(form, "submit");
  }
  document.addEventListener("htmx:afterRequest", function (evt) {
    if (evt.detail.elt && evt.detail.elt.id === "filter-form" && evt.detail.successful) {
      pendingFilter = false;
      var note = $("#filter-pending");
      if (note) note.hidden = true;
    }
  });
  document.addEventListener("htmx:wsOpen", retryFilter);
  window.addEventListener("online", retryFilter);
  setInterval(retryFilter, 5000);

  // A saved view names the filter the page shows now (htmx may have changed it since the page came).
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (form.classList && form.classList.contains("views-save")) {
      form.action = form.action.split("?")[0] + window.location.search.replace(/([?&])(cursor|depth)=[^&]*/g, "$1");
    }
  });

  function ready() {
    showTheme();
    restoreFilters();
    countFilters();
  }
  document.addEventListener("DOMContentLoaded", ready);
  document.addEventListener("input", function (evt) { if (evt.target.closest("#filter-form")) countFilters(); });
  document.addEventListener("change", function (evt) { if (evt.target.closest("#filter-form")) countFilters(); });
  document.addEventListener("htmx:historyRestore", countFilters);
  window.addEventListener("popstate", function () { setTimeout(countFilters, 0); });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", showTheme);
})();
