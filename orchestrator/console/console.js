// The console's own script: live updates from GET /orders/stream, and what an action answered.
// Pages are rendered on the server; htmx (vendored) fetches fragments and posts actions.
(() => {
  "use strict";

  // Elements marked data-live reload their fragment (htmx trigger "refresh") when a saga
  // changes: at most once a second, however busy the system is.
  const live = document.body.dataset.stream;
  const status = document.getElementById("live");
  let pending = false;
  let last = 0;
  const refresh = () => {
    pending = false;
    last = Date.now();
    document.querySelectorAll("[data-live]").forEach((el) => htmx.trigger(el, "refresh"));
  };
  const changed = () => {
    if (pending) return;
    pending = true;
    setTimeout(refresh, Math.max(0, 1000 - (Date.now() - last)));
  };
  const show = (on, text) => {
    if (!status) return;
    status.className = "live " + (on ? "on" : "off");
    status.textContent = text;
  };

  function follow() {
    const source = new EventSource(live);
    source.addEventListener("open", () => show(true, "live"));
    source.addEventListener("change", changed);
    source.addEventListener("lagging", () => show(true, "live (behind)"));
    source.addEventListener("lagged", () => {
      // The feed dropped changes this page had not seen: start afresh and reload what shows.
      source.close();
      changed();
      setTimeout(follow, 1000);
    });
    source.addEventListener("error", () => {
      show(false, "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(follow, 2000);
      }
    });
  }
  if (live) follow();

  // What an action (cancel, retry, requeue, ...) answered, shown for a few seconds.
  const flash = (text, isError) => {
    let el = document.getElementById("flash");
    if (!el) {
      el = document.createElement("div");
      el.id = "flash";
      document.body.appendChild(el);
    }
    el.className = "flash" + (isError ? " error" : "");
    el.textContent = text;
    el.hidden = false;
    clearTimeout(el.timer);
    el.timer = setTimeout(() => (el.hidden = true), 6000);
  };
  document.body.addEventListener("htmx:afterRequest", (event) => {
    const elt = event.detail.elt;
    if (!elt.dataset.action) return;
    const xhr = event.detail.xhr;
    let body = {};
    try { body = JSON.parse(xhr.responseText); } catch (_) { body = {}; }
    if (xhr.status >= 200 && xhr.status < 300) {
      const what = body.state ? `order ${body.orderId} is ${body.state}` : (body.done ? `${body.id}: ${body.done}` : body.message || "done");
      flash(`${elt.dataset.action}: ${what}`, false);
      changed();
    } else {
      flash(`${elt.dataset.action}: ${body.error || "failed (" + xhr.status + ")"}`, true);
    }
  });
  // htmx reports a failed fragment load as an event, not an exception: show it.
  document.body.addEventListener("htmx:responseError", (event) => {
    if (!event.detail.elt.dataset.action) flash(`could not load: ${event.detail.xhr.status}`, true);
  });
})();
