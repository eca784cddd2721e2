// Draws every Plotly figure the page carries as JSON: <script type="application/json"
// id="chart-NAME"> beside <div data-chart="NAME">. The figures are built in Python.
(function () {
  "use strict";
  function drawOne(element) {
    const source = document.getElementById(`chart-${element.dataset.chart}`);
    if (!window.Plotly) return;
    if (!source) {
      // A live refresh that no longer carries this figure (no drift verdict in the window any
      // more): clear the chart rather than leave stale data on the page.
      if (element.classList.contains("js-plotly-plot")) window.Plotly.purge(element);
      return;
    }
    const figure = JSON.parse(source.textContent);
    window.Plotly.react(element, figure.data, figure.layout, { displaylogo: false, responsive: true });
  }
  // The first chart (the top one, in view) is drawn at once and each other one in a task of its
  // own after the next frame: drawn in one go, a page's charts kept the first one off the screen
  // until all of them were plotted (each takes tens of ms). One queue for the page, so live
  // refreshes that come while charts wait (a hidden tab has no frames) do not pile up.
  const queue = [];
  let scheduled = false;
  function drawNext() {
    scheduled = false;
    const element = queue.shift();
    if (element && element.isConnected) drawOne(element);
    if (queue.length) {
      scheduled = true;
      requestAnimationFrame(() => setTimeout(drawNext));
    }
  }
  function draw(root) {
    root.querySelectorAll("[data-chart]").forEach((element) => {
      if (!queue.includes(element)) queue.push(element);
    });
    if (!scheduled) drawNext();
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
