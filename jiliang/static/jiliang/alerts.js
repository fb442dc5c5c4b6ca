/* The alert page's chart of the instrument's telemetry around the alert.  The data comes from the page as
   JSON (Django's json_script, id "alert-chart-data"), so no inline script is needed under the content
   security policy.  Shape: {title, y_name, y2_name?, x_type: "time", y_categories?: [...],
   series: [{name, role: "main"|"alt"|"flag"|"diff", type: "line"|"scatter"|"bar", axis?: 0|1,
             data: [[time, value, seq], ...]}]}; a series with axis 1 is drawn against a second value axis.
   Times are wall-clock Beijing time without an offset, so the axis shows them as they are. */
(function () {
  "use strict";

  var FONT = "PingFang SC, Hiragino Sans GB, Microsoft YaHei, Noto Sans CJK SC, sans-serif";
  var COLOURS = { main: "#0b4a8b", alt: "#1e9e6a", flag: "#c8102e", diff: "#e0a100" };

  function seriesOption(s) {
    var flag = s.role === "flag";
    var out = {
      name: s.name, type: s.type, data: s.data, color: COLOURS[s.role] || COLOURS.main,
      encode: { x: 0, y: 1, tooltip: [1, 2] }, dimensions: ["time", s.name, "#"],
      emphasis: { focus: "none" }, animation: false, yAxisIndex: s.axis || 0
    };
    if (s.type === "bar") {
      out.barMaxWidth = 6;
      out.itemStyle = { opacity: 0.85 };
    } else if (s.type === "line") {
      out.showSymbol = s.data.length <= 60;
      out.symbolSize = 5;
      out.lineStyle = { width: 2 };
      if (s.role === "alt") { out.lineStyle.type = "dashed"; }
    } else {
      out.symbolSize = flag ? 12 : 8;
      out.z = flag ? 5 : 3;
      if (flag) { out.itemStyle = { borderColor: "#fff", borderWidth: 1.5 }; }
    }
    return out;
  }

  function option(chart) {
    var yAxis = { type: "value", name: chart.y_name, scale: true, nameTextStyle: { align: "left" },
                  splitLine: { lineStyle: { color: "#edf0f4" } } };
    if (chart.y_categories) {
      yAxis = { type: "category", name: chart.y_name, data: chart.y_categories, nameTextStyle: { align: "left" } };
    }
    var yAxes = [yAxis];
    if (chart.y2_name) {
      yAxes.push({ type: "value", name: chart.y2_name, position: "right", nameTextStyle: { align: "right" },
                   splitLine: { show: false } });
    }
    return {
      textStyle: { fontFamily: FONT },
      grid: { left: 12, right: 28, top: 44, bottom: 56, containLabel: true },
      legend: { top: 0, type: "scroll" },
      tooltip: { trigger: chart.y_categories ? "item" : "axis", axisPointer: { type: "cross" } },
      xAxis: { type: "time", splitLine: { show: false } },
      yAxis: yAxes,
      dataZoom: [{ type: "inside" }, { type: "slider", height: 18, bottom: 8 }],
      series: chart.series.map(seriesOption)
    };
  }

  function init() {
    var source = document.getElementById("alert-chart-data");
    var el = document.getElementById("alert-chart");
    if (!source || !el || typeof window.echarts === "undefined") { return; }
    var chart = window.echarts.init(el, null, { renderer: "canvas" });
    chart.setOption(option(JSON.parse(source.textContent)));
    el.setAttribute("data-ready", "true");
    window.addEventListener("resize", function () { chart.resize(); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
