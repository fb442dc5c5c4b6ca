/* Charts of 二检合一, drawn from JSON the page embeds with Django's json_script (no inline script under the
   content security policy):
   - "batch-chart-data": {mpe, series: [{name, mpe, data: [[date, mean, batch, n, std, p], ...]}]} — batch
     means over time with the ±MPE band;
   - "oc-chart-data": {n, ac, plan: [[defect %, P(accept)], ...], zero: [...]} — operating characteristic. */
(function () {
  "use strict";
  var FONT = "PingFang SC, Hiragino Sans GB, Microsoft YaHei, Noto Sans CJK SC, sans-serif";

  function data(id) {
    var el = document.getElementById(id);
    return el ? JSON.parse(el.textContent) : null;
  }

  function batchChart(el, d) {
    var series = d.series.map(function (s) {
      return { name: s.name, type: "line", data: s.data, showSymbol: true, symbolSize: 6,
               encode: { x: 0, y: 1 }, animation: false };
    });
    var limits = [], lines = [{ yAxis: 0, lineStyle: { color: "#7b8594" } }];
    d.series.forEach(function (s) { if (limits.indexOf(s.mpe) < 0) { limits.push(s.mpe); } });
    limits.forEach(function (m) { lines.push({ yAxis: m, name: "+MPE" }, { yAxis: -m, name: "-MPE" }); });
    series.push({ name: "±MPE", type: "line", data: [], markLine: { silent: true, symbol: "none",
      lineStyle: { color: "#c8102e", type: "dashed" }, data: lines },
      markArea: { silent: true, itemStyle: { color: "rgba(30,158,106,0.06)" }, data: [[{ yAxis: -d.mpe }, { yAxis: d.mpe }]] } });
    return {
      textStyle: { fontFamily: FONT }, animation: false,
      grid: { left: 12, right: 28, top: 56, bottom: 40, containLabel: true },
      legend: { top: 0, type: "scroll" },
      tooltip: { trigger: "item", formatter: function (p) {
        var v = p.value || [];
        return p.seriesName + "<br>" + v[2] + "<br>mean " + v[1] + " %, n " + v[3] + ", s " + v[4] + ", p " + v[5];
      } },
      xAxis: { type: "time" },
      yAxis: { type: "value", name: "%", min: -d.mpe * 1.2, max: d.mpe * 1.2 },
      series: series
    };
  }

  function ocChart(el, d) {
    return {
      textStyle: { fontFamily: FONT }, animation: false,
      grid: { left: 12, right: 28, top: 44, bottom: 40, containLabel: true },
      legend: { top: 0 },
      tooltip: { trigger: "axis" },
      xAxis: { type: "value", name: "p %" },
      yAxis: { type: "value", name: "Pa", min: 0, max: 1 },
      series: [
        { name: "GB/T 2828.1 n=" + d.n + " Ac=" + d.ac, type: "line", data: d.plan, showSymbol: false },
        { name: "Ac=0", type: "line", data: d.zero, showSymbol: false, lineStyle: { type: "dashed" } }
      ]
    };
  }

  function draw(id, dataId, make) {
    var el = document.getElementById(id);
    var d = data(dataId);
    if (!el || !d || typeof echarts === "undefined") { return; }
    var chart = echarts.init(el, null, { renderer: "svg" });
    chart.setOption(make(el, d));
    el.setAttribute("data-ready", "1");
    window.addEventListener("resize", function () { chart.resize(); });
  }

  function init() {
    draw("batch-chart", "batch-chart-data", batchChart);
    draw("oc-chart", "oc-chart-data", ocChart);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
