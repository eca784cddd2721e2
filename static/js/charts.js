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
  document.addEventListener("DOMContentLoaded", () => draw(document));
  // Parts of the page that htmx swaps in may carry figures too.
  document.body.addEventListener("htmx:afterSettle", (event) => draw(event.target));
})();
