/* Jiliang page behaviour.  Loaded as a static file: the content security policy forbids inline scripts
   and inline event handlers, so every behaviour is attached here from data-* attributes. */
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState === "loading") {
      document.addEventListener("DOMContentLoaded", fn);
    } else {
      fn();
    }
  }

  // <form data-autosubmit>: changing a <select> submits the form (htmx, when present, takes the submit).
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (!(target instanceof HTMLSelectElement)) { return; }
    var form = target.form;
    if (form && form.hasAttribute("data-autosubmit")) {
      var page = form.querySelector("input[name=page]");
      if (page) { page.value = ""; }
      if (typeof form.requestSubmit === "function") { form.requestSubmit(); } else { form.submit(); }
    }
  });

  // <form data-confirm="question">: ask before submitting.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // The user menu (<details>) closes when one clicks elsewhere or presses Escape.
  function closeMenus(except) {
    document.querySelectorAll("details.usermenu[open]").forEach(function (menu) {
      if (menu !== except) { menu.removeAttribute("open"); }
    });
  }
  document.addEventListener("click", function (event) {
    var inside = event.target instanceof Element ? event.target.closest("details.usermenu") : null;
    closeMenus(inside);
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { closeMenus(null); }
  });

  // <button data-print>: print the page (the printable QR label).
  onReady(function () {
    document.querySelectorAll("[data-print]").forEach(function (button) {
      button.addEventListener("click", function () { window.print(); });
    });
  });
})();
