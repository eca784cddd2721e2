// Draws every Plotly figure the page carries as JSON: <script type="application/json"
// id="chart-NAME"> beside <div data-chart="NAME">. The figures are built in Python.
(function () {
  "use strict";
  function draw(root) {
    root.querySelectorAll("[data-chart]").forEach((element) => {
      const source = document.getElementById(`chart-${element.dataset.chart}`);
      if (!source || !window.Plotly) return;
      const figure = JSON.parse(source.textContent);
      window.Plotly.react(element, figure.data, figure.layout, { displaylogo: false, responsive: true });
    });
  }
  document.addEventListener("DOMContentLoaded", () => {
    draw(document);
    document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
      select.addEventListener("change", () => select.form.submit());
    });
  });
  // Parts of the page that htmx swaps in may carry figures, for charts inside them or (a live
  // refresh that replaces only the data) for charts elsewhere on the page: Plotly.react
  // updates those in place, keeping the user's zoom (uirevision).
  document.body.addEventListener("htmx:afterSettle", (event) => {
    const carriesFigures = event.target.querySelector && event.target.querySelector('script[id^="chart-"]');
    draw(carriesFigures ? document : event.target);
  });
})();
