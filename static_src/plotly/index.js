'use strict';
// plotly.js with only the trace types Berth's pages draw (jobs/charts.py, monitoring/charts.py):
// scatter (in the core), bar, box and heatmap. The dist bundles carry more, and the browser
// pays for every module at each page's first load: the cartesian one (1.5 MB) took about three
// times as long to start as this one.
var Plotly = require('plotly.js/lib/core');

Plotly.register([require('plotly.js/lib/bar'), require('plotly.js/lib/box'), require('plotly.js/lib/heatmap')]);

module.exports = Plotly;
