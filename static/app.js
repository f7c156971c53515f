// ActivityWeb dashboard behaviour that htmx attributes cannot express.
// No inline scripts anywhere (the CSP allows only this origin's files).
(function () {
  "use strict";

  // --- Live sockets -----------------------------------------------------------
  // A socket holder (the element with ws-connect: #feed-live, #timeline-live,
  // #unread-live) carries in data-since the position this page has reached in
  // the log (an opaque token: the one the page was rendered with, then the one
  // each message brings). On every (re)connect we tell the server, which sends
  // exactly what we missed, each event once, before going live.
  function liveHolder(elt) {
    return elt && elt.closest ? elt.closest("[ws-connect]") : null;
  }

  function setLiveState(holder, state, label) {
    holder.dataset.state = state;
    var text = holder.querySelector(".live-label");
    if (text) text.textContent = label;
  }

  document.addEventListener("htmx:wsOpen", function (evt) {
    var holder = liveHolder(evt.target);
    if (!holder) return;
    evt.detail.socketWrapper.send(JSON.stringify({since: holder.dataset.since || null}));
    setLiveState(holder, "open", "Live");
  });

  document.addEventListener("htmx:wsClose", function (evt) {
    var holder = liveHolder(evt.target);
    if (holder) setLiveState(holder, "closed", "Reconnecting…");
  });

  // Each message starts with the position after it (<!--position:TOKEN-->),
  // or says the page was away too long (<!--reset:TOKEN-->): then the feed
  // reloads (a fresh page, with a fresh position) instead of replaying.
  var POSITION = /^<!--(position|reset):([0-9a-f~-]+)-->/;

  document.addEventListener("htmx:wsBeforeMessage", function (evt) {
    var holder = liveHolder(evt.target);
    var found = holder && typeof evt.detail.message === "string" && POSITION.exec(evt.detail.message);
    if (!found) return;
    holder.dataset.since = found[2];
    if (found[1] !== "reset") return;
    if (holder.id === "feed-live") {
      htmx.ajax("GET", window.location.href, {target: "#feed", swap: "innerHTML"});
    } else if (holder.id === "timeline-live") {
      window.location.reload();
    }
  });

  // Each live message prepends events to #feed-items. The first render and
  // its socket may both bring an event committed just as the page was read:
  // the second replaces the element with the same id instead of adding one.
  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "feed-items") return;
    var holder = document.getElementById("feed-live");
    var fragment = evt.detail.fragment;
    Array.from(fragment.children).forEach(function (item) {
      var id = item.dataset && item.dataset.id;
      if (!id) return;
      if (holder && (!holder.dataset.newest || id > holder.dataset.newest)) holder.dataset.newest = id;
      var existing = document.getElementById(item.id);
      if (existing) {
        // A repeat is rendered unread, as every arrival is: keep what this page knows.
        if (!existing.classList.contains("unread")) markedRead(item);
        existing.replaceWith(item);
        htmx.process(item);  // it left the swapped fragment, so htmx would not see it
        refreshTimes(item);  // nor fire htmx:load for it
      } else {
        item.classList.add("arrived");
      }
    });
    var empty = document.getElementById("feed-empty");
    if (empty && fragment.children.length) empty.remove();
  });

  // "Load more" can bring an event that already arrived live (a late event
  // sorts by its own time): keep the one on screen.
  document.addEventListener("htmx:load", function (evt) {
    var elt = evt.detail.elt;
    if (elt && elt.classList && elt.classList.contains("event") && document.getElementById(elt.id) !== elt) {
      elt.remove();
    }
  });

  // --- Unread ---------------------------------------------------------------------
  // The count is of feed rows: a tool call's start and outcome are one row.
  // Events arriving live are unread by everyone: the unread socket sends the
  // rows they take (call-… or activity-…) and the header's count adds the
  // rows it has not counted yet. A count from the server (the page's, or a
  // fresh one after marking read) names the running calls it includes
  // (data-running-calls), so their outcome arriving adds nothing.
  var counted = new Set();

  function seedCounted(link) {
    if (!link) return;
    counted.forEach(function (row) { if (row.indexOf("call-") === 0) counted.delete(row); });
    (link.dataset.runningCalls || "").split(" ").forEach(function (row) { if (row) counted.add(row); });
  }
  seedCounted(document.getElementById("unread-count"));
  document.addEventListener("htmx:oobAfterSwap", function (evt) {
    var target = evt.detail.target;
    if (target && target.id === "unread-count") seedCounted(document.getElementById("unread-count"));
  });

  function showUnread(link, count) {
    link.dataset.count = count;
    var cap = Number(link.dataset.cap);  // store.UNREAD_COUNT_CAP, rendered by reading/_unread.html
    link.querySelector(".n").textContent = count > cap ? cap + "+" : String(count);
  }

  document.addEventListener("htmx:oobBeforeSwap", function (evt) {
    var target = evt.detail.target;
    if (!target || target.id !== "unread-arrived") return;
    evt.detail.shouldSwap = false;
    var link = document.getElementById("unread-count");
    var added = 0;
    (evt.detail.fragment.firstElementChild.dataset.rows || "").split(" ").forEach(function (row) {
      if (!row || counted.has(row)) return;
      counted.add(row);
      added += 1;
    });
    if (link && added) showUnread(link, Number(link.dataset.count) + added);
  });

  function markedRead(item) {
    item.classList.remove("unread");
    var button = item.querySelector(".mark-read");
    if (button) button.remove();
  }

  // "Mark all read" marks what the feed shows up to the newest event this
  // page has; anything newer stays unread, here and on the server.
  document.addEventListener("htmx:configRequest", function (evt) {
    if (!evt.detail.elt.closest("form.mark-all-read")) return;
    var holder = document.getElementById("feed-live");
    var upTo = holder && (holder.dataset.newest || holder.dataset.pageSince);
    if (upTo) evt.detail.formData.set("up_to", upTo);
  });

  document.addEventListener("activityweb:read-all", function (evt) {
    var upTo = evt.detail.upTo;
    document.querySelectorAll("#feed-items li.event.unread").forEach(function (item) {
      if (!upTo || item.dataset.id <= upTo) markedRead(item);
    });
  });

  // --- CSRF -------------------------------------------------------------------
  // Every state-changing htmx request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", function (evt) {
    if (evt.detail.verb === "get") return;
    var meta = document.querySelector("meta[name=csrf-token]");
    if (meta) evt.detail.headers["X-CSRFToken"] = meta.content;
  });

  // --- Filter form ----------------------------------------------------------
  // Leave empty fields out of the URL so a shared link shows only the filter.
  document.addEventListener("htmx:configRequest", function (evt) {
    if (evt.detail.elt.id !== "filter-form") return;
    var data = evt.detail.formData;
    Array.from(new Set(Array.from(data.keys()))).forEach(function (key) {
      var values = data.getAll(key).filter(function (v) { return String(v).trim() !== ""; });
      data.delete(key);
      values.forEach(function (v) { data.append(key, v); });
    });
  });

  // Back/forward restores the feed from htmx's history; put the form's fields
  // back to the filter in the restored URL too.
  window.addEventListener("popstate", function () {
    setTimeout(syncFormWithUrl, 0);
  });
  document.addEventListener("htmx:historyRestore", syncFormWithUrl);

  function syncFormWithUrl() {
    var form = document.getElementById("filter-form");
    if (!form) return;
    var params = new URLSearchParams(window.location.search);
    Array.from(form.elements).forEach(function (field) {
      if (!field.name || field.type === "hidden" || field.type === "submit") return;
      var values = params.getAll(field.name);
      var value = field.tagName === "SELECT" ? (values[0] || "") : values.join(",");
      if (field.type === "datetime-local") value = value.slice(0, 16);
      field.value = value;
    });
  }

  // --- Times ------------------------------------------------------------------
  // Server-rendered relative times ("5 min ago") drift; refresh them with the
  // server's own rule (relative-time.js, the rule in <meta name="relative-time">),
  // and show the absolute time in the reader's own zone on hover.
  var timeRule = null;

  function refreshTimes(root) {
    if (!timeRule) {
      var meta = document.querySelector("meta[name=relative-time]");
      if (!meta) return;
      timeRule = JSON.parse(meta.content);
    }
    var now = Date.now();
    (root || document).querySelectorAll("time[datetime]").forEach(function (t) {
      var date = new Date(t.getAttribute("datetime"));
      if (isNaN(date)) return;
      t.textContent = window.activitywebRelativeTime(timeRule, date, now);
      t.title = date.toLocaleString();
    });
  }

  document.addEventListener("DOMContentLoaded", function () { refreshTimes(); });
  document.addEventListener("htmx:load", function (evt) { refreshTimes(evt.detail.elt); });
  setInterval(refreshTimes, 30000);
})();
