// Keeps keyboard focus where the person left it when part of a page is replaced: after an
// htmx swap (tick a tool, Sync, save a token, create or revoke a key), and after a plain
// form (a filter) loads the same page again. Loaded as a file: the pages' CSP (script-src
// 'self') refuses inline script. Listens on the document, so content swapped in later is
// covered too.
//
// Before a request, the focused control is noted by what survives a swap: its id; else its
// data-focus-key; else its tag, name and value; else its tag and text, within its nearest
// ancestor that has an id. Once the swap has settled, and only if focus was lost (it is on
// the body, or on an element no longer in the page), the control so noted in the new content
// takes focus back; failing that, its nearest ancestor with an id, or the element that
// replaced the one holding it.
(function () {
  "use strict";

  const STORED = "mcpadmin.focus";

  function describe(el) {
    if (!el || el === document.body || el === document.documentElement) return null;
    const scope = el.parentElement && el.parentElement.closest("[id]");
    return {
      id: el.id || null,
      key: el.dataset.focusKey || null,
      tag: el.tagName.toLowerCase(),
      name: el.getAttribute("name"),
      value: el.getAttribute("value"),
      text: el.textContent.trim(),
      scope: scope ? scope.id : null,
    };
  }

  function attr(name, value) {
    return "[" + name + '="' + CSS.escape(value) + '"]';
  }

  function find(noted) {
    const byId = noted.id && document.getElementById(noted.id);
    if (byId) return byId;
    const byKey = noted.key && document.querySelector(attr("data-focus-key", noted.key));
    if (byKey) return byKey;
    const root = (noted.scope && document.getElementById(noted.scope)) || document;
    if (noted.name) {
      const value = noted.value === null ? "" : attr("value", noted.value);
      const byName = root.querySelector(noted.tag + attr("name", noted.name) + value);
      if (byName) return byName;
    }
    if (root === document) return null;
    for (const el of root.querySelectorAll(noted.tag)) {
      if (el.textContent.trim() === noted.text) return el;
    }
    return null;
  }

  function focusLost() {
    const active = document.activeElement;
    return !active || active === document.body || !active.isConnected;
  }

  function focusOn(el) {
    if (!el || el.disabled || el.closest("[hidden], [inert]")) return false;
    if (el.tabIndex < 0 && !el.hasAttribute("tabindex")) el.setAttribute("tabindex", "-1");
    el.focus();
    return document.activeElement === el;
  }

  // What each request in flight noted, by its XMLHttpRequest.
  const pending = new WeakMap();

  document.addEventListener("htmx:beforeRequest", function (event) {
    const active = document.activeElement;
    const target = event.detail.target;
    if (!target || !active || !target.contains(active)) return;
    const home = target.id ? target : target.closest("[id]");
    pending.set(event.detail.xhr, { control: describe(active), home: home && home.id });
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    const noted = pending.get(event.detail.xhr);
    if (!noted) return;
    pending.delete(event.detail.xhr);
    if (!focusLost()) return;
    const control = noted.control;
    if (control && focusOn(find(control))) return;
    // The control is gone (a revoked key's button): its row, else the swapped element.
    if (control && control.scope && focusOn(document.getElementById(control.scope))) return;
    focusOn(noted.home && document.getElementById(noted.home));
  });

  // A form htmx leaves alone loads a page. Back on the same page (a filter, the connector
  // page's Sync), the control used takes focus again; a form answered with errors puts focus
  // on its first invalid field instead.
  document.addEventListener("submit", function (event) {
    if (event.defaultPrevented) return; // htmx took it
    const control = describe(document.activeElement) || describe(event.submitter);
    sessionStorage.setItem(STORED, JSON.stringify({ path: location.pathname, control: control }));
  });

  const stored = sessionStorage.getItem(STORED);
  sessionStorage.removeItem(STORED);
  if (stored && focusLost()) {
    const noted = JSON.parse(stored);
    const invalid = document.querySelector('main [aria-invalid="true"]');
    if (!focusOn(invalid) && noted.path === location.pathname && noted.control) {
      focusOn(find(noted.control));
    }
  }
})();
