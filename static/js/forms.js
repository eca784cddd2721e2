// Fields shown only for some values of another field: a wrapper with
// data-show-when="NAME" data-show-values="a b c" is visible only while the form's control named
// NAME has one of those values (hidden fields are also disabled, so they are not submitted).
(function () {
  "use strict";
  function update(form) {
    form.querySelectorAll("[data-show-when]").forEach((wrapper) => {
      const control = form.elements.namedItem(wrapper.dataset.showWhen);
      if (!control) return;
      const shown = wrapper.dataset.showValues.split(" ").includes(control.value);
      wrapper.hidden = !shown;
      wrapper.querySelectorAll("input, select, textarea").forEach((input) => { input.disabled = !shown; });
    });
  }
  function bind(root) {
    root.querySelectorAll("form").forEach((form) => {
      if (!form.querySelector("[data-show-when]") || form.dataset.showWhenBound) return;
      form.dataset.showWhenBound = "1";
      update(form);
      form.addEventListener("change", () => update(form));
    });
  }
  document.addEventListener("DOMContentLoaded", () => bind(document));
  // Forms that htmx swaps in later (the version page's job forms once validation is done).
  document.addEventListener("htmx:load", (event) => bind(event.target.parentNode || document));
})();

// A region that a live refresh swaps in out of band (the endpoint page's deploy form and
// actions) is left alone while someone fills in a form inside it: while one of its fields has
// the focus, or after a field was changed (or the server sent the form back with errors,
// data-edited), the refresh skips it; a reload or a submit brings the region up to date.
(function () {
  "use strict";
  document.addEventListener("input", (event) => {
    if (event.target.form) event.target.form.dataset.edited = "1";
  });
  document.addEventListener("htmx:oobBeforeSwap", (event) => {
    const region = event.detail.target;
    const focused = document.activeElement;
    const typing = focused && region.contains(focused) && focused.matches("input, select, textarea");
    if (typing || region.querySelector("form[data-edited]")) event.detail.shouldSwap = false;
  });
})();
