/* Dashboard charts.  The data comes from the page as JSON (Django's json_script), so no inline script is
   needed under the content security policy.  Each <div data-chart="bar|hbar|pie" data-series="key"> gets
   one chart of series[key] = [{key, label, value}, ...]. */
(function () {
  "use strict";

  var PALETTE = ["#0b4a8b", "#2f80d1", "#1e9e6a", "#e0a100", "#c8102e", "#7a52c7", "#12a4b5", "#8a94a6"];
  var STATUS_COLOURS = {
    in_stock: "#8a94a6", installed: "#2f80d1", in_service: "#1e9e6a", suspended: "#e0a100", retired: "#b7bec9"
  };
  var FONT = "PingFang SC, Hiragino Sans GB, Microsoft YaHei, Noto Sans CJK SC, sans-serif";

  function option(kind, rows, name, seriesKey) {
    var labels = rows.map(function (r) { return r.label; });
    var values = rows.map(function (r) { return r.value; });
    var base = {
      color: PALETTE,
      textStyle: { fontFamily: FONT },
      tooltip: { trigger: kind === "pie" ? "item" : "axis", axisPointer: { type: "shadow" } },
      animationDuration: 400
    };
    if (kind === "pie") {
      base.legend = { bottom: 0, type: "scroll" };
      base.series = [{
        name: name, type: "pie", radius: ["42%", "68%"], center: ["50%", "45%"],
        itemStyle: { borderColor: "#fff", borderWidth: 2 },
        label: { formatter: "{b}\n{c}" },
        data: rows.map(function (r) {
          var item = { name: r.label, value: r.value };
          if (seriesKey === "by_status" && STATUS_COLOURS[r.key]) { item.itemStyle = { color: STATUS_COLOURS[r.key] }; }
          return item;
        })
      }];
      return base;
    }
    var categoryAxis = { type: "category", data: labels, axisTick: { alignWithLabel: true },
                         axisLabel: { interval: 0, hideOverlap: true } };
    var valueAxis = { type: "value", minInterval: 1, splitLine: { lineStyle: { color: "#edf0f4" } } };
    base.grid = { left: 8, right: 24, top: 16, bottom: 8, containLabel: true };
    if (kind === "hbar") {
      categoryAxis.inverse = true;
      base.xAxis = valueAxis;
      base.yAxis = categoryAxis;
    } else {
      categoryAxis.axisLabel.rotate = labels.length > 4 ? 30 : 0;
      base.xAxis = categoryAxis;
      base.yAxis = valueAxis;
    }
    base.series = [{ name: name, type: "bar", data: values, barMaxWidth: 36,
                     itemStyle: { borderRadius: kind === "hbar" ? [0, 4, 4, 0] : [4, 4, 0, 0] },
                     label: { show: true, position: kind === "hbar" ? "right" : "top" } }];
    return base;
  }

  function init() {
    var source = document.getElementById("dashboard-data");
    if (!source || typeof window.echarts === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    var charts = [];
    document.querySelectorAll("[data-chart]").forEach(function (el) {
      var rows = data[el.dataset.series] || [];
      var chart = window.echarts.init(el, null, { renderer: "canvas" });
      chart.setOption(option(el.dataset.chart, rows, el.dataset.name || "", el.dataset.series));
      el.setAttribute("data-ready", "true");
      charts.push(chart);
    });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
