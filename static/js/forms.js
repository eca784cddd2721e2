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
