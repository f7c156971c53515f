// Live controls on the client, on top of the htmx ws extension's events
// (htmx:oobBeforeSwap, htmx:oobAfterSwap, htmx:wsBeforeMessage,
// htmx:wsAfterMessage); the server sends the same messages as ever.
//
// - Pause: arrivals are swapped in as usual (so app.js still drops repeats
//   and a call's outcome still takes its start's row) but held hidden and
//   counted; resume shows each of them, once.
// - "N new": scrolled away from the top, arrivals are counted on a pill that
//   scrolls back up to them.
// - A polite live region says "3 new events"; the feed itself is not live.
// - The tab title leads with the unread count.
// - A timeline that was at its end follows new steps, and keeps open what
//   the reader opened.
(function () {
  "use strict";

  var paused = false;
  var held = 0;       // arrivals hidden while paused
  var unseen = 0;     // arrivals while scrolled down
  var announceTimer = null;
  var pendingAnnouncement = 0;

  function $(selector) { return document.querySelector(selector); }

  function announce(text) {
    var region = $("#live-announcer");
    if (!region) return;
    region.textContent = "";
    // A fresh text node after a tick: screen readers announce a change, not a repeat.
    setTimeout(function () { region.textContent = text; }, 50);
  }

  function plural(n, word) { return n + " new " + word + (n === 1 ? "" : "s"); }

  function queueAnnouncement(n) {
    pendingAnnouncement += n;
    if (announceTimer) return;
    announceTimer = setTimeout(function () {
      announceTimer = null;
      var n = pendingAnnouncement;
      pendingAnnouncement = 0;
      if (n) announce(plural(n, "event") + (paused ? ", held while paused" : ""));
    }, 1000);
  }

  function scrolledDown() {
    var list = $("#feed-items");
    return !!list && list.getBoundingClientRect().top < 0;
  }

  function showPill() {
    var pill = $("#new-pill");
    if (!pill) return;
    pill.hidden = unseen === 0;
    pill.querySelector(".n").textContent = String(unseen);
  }

  function showPause() {
    var button = $(".live-pause");
    if (button) {
      button.setAttribute("aria-pressed", paused ? "true" : "false");
      button.textContent = paused ? (held ? "Resume (" + held + " new)" : "Resume") : "Pause";
    }
    var holder = $("#feed-live");
    if (holder && paused) {
      holder.dataset.state = "paused";
      var label = holder.querySelector(".live-label");
      if (label) label.textContent = "Paused";
    } else if (holder && holder.dataset.state === "paused") {
      holder.dataset.state = "open";
      var openLabel = holder.querySelector(".live-label");
      if (openLabel) openLabel.textContent = "Live";
    }
  }

  function togglePause() {
    paused = !paused;
    if (!paused) {
      var shown = 0;
      document.querySelectorAll("#feed-items .held").forEach(function (item) {
        item.classList.remove("held");
        item.hidden = false;
        item.classList.add("arrived");
        shown += 1;
      });
      held = 0;
      if (shown) {
        announce(shown + " new event" + (shown === 1 ? "" : "s") + " shown");
        if (scrolledDown()) { unseen += shown; showPill(); }
      }
    }
    showPause();
  }
  window.activitywebTogglePause = togglePause;

  // Capture phase: this runs before app.js's handler, which moves each
  // repeat into its existing row; a row held hidden stays held.
  window.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "feed-items") return;
    var arrived = 0;
    // A tool call's start never takes back its row from the outcome (a
    // replay can resend the start after the outcome), and one message
    // brings one row per id.
    var inMessage = {};
    Array.from(evt.detail.fragment.children).forEach(function (item) {
      if (!item.id) return;
      var running = item.classList.contains("running");
      var existing = document.getElementById(item.id);
      if (running && ((existing && !existing.classList.contains("running")) || inMessage[item.id])) {
        item.remove();
        return;
      }
      if (inMessage[item.id] && !running) inMessage[item.id].remove();
      inMessage[item.id] = item;
    });
    Array.from(evt.detail.fragment.children).forEach(function (item) {
      if (!item.id) return;
      var existing = document.getElementById(item.id);
      if (existing) {
        // The page named the session by its first prompt; a live rendering knows only the project.
        var named = existing.querySelector(".conversation-link"), unnamed = item.querySelector(".conversation-link");
        if (named && unnamed && named.getAttribute("href") === unnamed.getAttribute("href")) unnamed.innerHTML = named.innerHTML;
        if (existing.classList.contains("held")) { item.hidden = true; item.classList.add("held"); }
        return;
      }
      arrived += 1;
      if (paused) { item.hidden = true; item.classList.add("held"); held += 1; }
    });
    if (!arrived) return;
    queueAnnouncement(arrived);
    if (paused) showPause();
    else if (scrolledDown()) { unseen += arrived; showPill(); }
  }, true);

  // Live rows are prepended above the top day header: put it back on top
  // (or start a "Today" header when the day has turned).
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var list = $("#feed-items");
    if (!list || evt.detail.target !== list) return;
    var first = list.firstElementChild;
    if (!first || !first.classList.contains("event")) return;
    var header = list.querySelector(".day-header");
    if (header && header.dataset.day === first.dataset.day) {
      list.insertBefore(header, first);
    } else if (first.dataset.day) {
      var fresh = document.createElement("li");
      fresh.className = "day-header";
      fresh.dataset.day = first.dataset.day;
      var title = document.createElement("h2");
      title.textContent = "Today";
      fresh.appendChild(title);
      list.insertBefore(fresh, first);
    }
  });

  document.addEventListener("click", function (evt) {
    var target = evt.target.closest ? evt.target : evt.target.parentElement;
    if (!target) return;
    if (target.closest(".live-pause")) togglePause();
    else if (target.closest("#new-pill")) {
      unseen = 0;
      showPill();
      var list = $("#feed-items");
      if (list) {
        list.scrollIntoView({ block: "start" });
        var link = list.querySelector(".event:not([hidden]) .event-title");
        if (link) link.focus({ preventScroll: true });
      }
    }
  });

  window.addEventListener("scroll", function () {
    if (unseen && !scrolledDown()) { unseen = 0; showPill(); }
  }, { passive: true });

  // A new filter swaps the results (and the pill and the pause button) anew.
  document.addEventListener("htmx:afterSwap", function (evt) {
    if (evt.detail.target && evt.detail.target.id === "feed") {
      paused = false; held = 0; unseen = 0;
      showPause(); showPill();
    }
  });

  // --- The tab title carries the unread count ---------------------------------
  var baseTitle = document.title.replace(/^\(\d+\+?\) /, "");
  function showTitle() {
    var link = document.getElementById("unread-count");
    var label = link && link.querySelector(".n");
    var count = link ? Number(link.dataset.count) : 0;
    // Past the cap the badge says "999+"; the count underneath goes on, and the tooltip says it.
    if (link) link.title = count > Number(link.dataset.cap) ? "At least " + count.toLocaleString() + " events you have not read"
                                                            : "Events you have not read";
    document.title = count > 0 && label ? "(" + label.textContent + ") " + baseTitle : baseTitle;
  }
  document.addEventListener("DOMContentLoaded", function () {
    var live = document.getElementById("unread-live");
    if (live) new MutationObserver(showTitle).observe(live, { subtree: true, childList: true, characterData: true,
                                                             attributes: true, attributeFilter: ["data-count"] });
    showTitle();
  });

  // --- A timeline follows new steps while the reader is at its end ---------------
  var followState = null;
  document.addEventListener("htmx:wsBeforeMessage", function (evt) {
    if (!evt.target || evt.target.id !== "timeline-live") return;
    var open = [];
    document.querySelectorAll("#timeline details[open]").forEach(function (d) { if (d.id) open.push(d.id); });
    followState = {
      atEnd: window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80,
      steps: document.querySelectorAll("#timeline .step").length,
      open: open
    };
  });
  document.addEventListener("htmx:wsAfterMessage", function (evt) {
    if (!evt.target || evt.target.id !== "timeline-live" || !followState) return;
    var state = followState;
    followState = null;
    state.open.forEach(function (id) { var d = document.getElementById(id); if (d) d.open = true; });
    var added = document.querySelectorAll("#timeline .step").length - state.steps;
    if (added > 0) {
      announce(plural(added, "step"));
      if (state.atEnd) window.scrollTo(0, document.documentElement.scrollHeight);
    }
  });
})();
