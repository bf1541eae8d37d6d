// Draws the dashboard's charts from the JSON the page embeds (see loop/dashboard.py).
document.addEventListener("DOMContentLoaded", () => {
  const charts = JSON.parse(document.getElementById("chart-data").textContent);
  const style = getComputedStyle(document.documentElement);
  const ink = style.getPropertyValue("--body-fg").trim() || "#333";
  for (const element of document.querySelectorAll("[data-chart]")) {
    const chart = charts[element.dataset.chart];
    const layout = {
      margin: { l: 55, r: 55, t: 10, b: 40 },
      paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)",
      font: { color: ink },
      legend: { orientation: "h", y: -0.2 },
      xaxis: { type: "date" },
      yaxis: { title: { text: chart.y_title }, rangemode: "tozero" },
      ...chart.layout,
    };
    Plotly.newPlot(element, chart.traces, layout, { displaylogo: false, responsive: true });
  }
});
