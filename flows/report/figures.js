// The report's figures, drawn in the browser from the data the page carries (the JSON of
// <script id="report-data">, written by flows/report/render.py) with plotly.js, which the page
// loads from beside itself (<script id="plotly-js">). Python writes the numbers; how they look
// is decided here. Every string of the data arrives HTML-escaped: plotly.js renders some HTML
// in names and hover labels, and nothing here puts a string of the data into the page as HTML.
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("report-data").textContent);
  var CONFIG = { displaylogo: false, responsive: true };
  // plotly.py's "plotly_white" template (the parts these figures use), the look they had when
  // Python drew them: plotly.js knows no template by name, but takes one as an object.
  var COLOURWAY = [
    "#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A",
    "#19d3f3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52",
  ];

  var AXIS = {
    gridcolor: "#EBF0F8",
    linecolor: "#EBF0F8",
    zerolinecolor: "#EBF0F8",
    zerolinewidth: 2,
    ticks: "",
    automargin: true,
    title: { standoff: 15 },
  };
  var TEMPLATE = {
    data: { bar: [{ marker: { line: { color: "white", width: 0.5 } } }] },
    layout: {
      autotypenumbers: "strict",
      colorway: COLOURWAY,
      font: { color: "#2a3f5f" },
      hovermode: "closest",
      hoverlabel: { align: "left" },
      paper_bgcolor: "white",
      plot_bgcolor: "white",
      xaxis: AXIS,
      yaxis: AXIS,
    },
  };

  function layout(yTitle, extra) {
    var base = {
      template: TEMPLATE,
      height: 420,
      margin: { l: 60, r: 60, t: 20, b: 40 },
      hovermode: "closest",
      legend: { orientation: "h", y: -0.15 },
      yaxis: { title: { text: yTitle } },
    };
    return Object.assign(base, extra || {});
  }

  // One trace per line of `figure.series` ({name, x, y}), lines and markers.
  function lines(figure, hover) {
    return figure.series.map(function (line) {
      return {
        type: "scatter",
        x: line.x,
        y: line.y,
        name: line.name,
        mode: "lines+markers",
        marker: { size: 4 },
        hovertemplate: hover,
      };
    });
  }

  var DRAW = {
    // (a) Each run's duration, one trace per outcome in its colour; a point's request is an
    // index into `figure.requests`.
    durations: function (figure) {
      var traces = figure.series.map(function (outcome) {
        return {
          type: "scatter",
          x: outcome.x,
          y: outcome.y,
          customdata: outcome.request.map(function (request, i) {
            return [figure.requests[request], outcome.run[i]];
          }),
          mode: "markers",
          name: outcome.name,
          marker: { color: outcome.colour, size: 6 },
          hovertemplate:
            "%{x} UTC<br>%{customdata[0]}<br>%{y:.1f} s<br>" +
            "run %{customdata[1]}<extra>%{fullData.name}</extra>",
        };
      });
      return [traces, layout("seconds")];
    },
    // (b) The slowest models' durations over the runs.
    slowest: function (figure) {
      var hover = "%{x} UTC<br>%{y:.2f} s<extra>%{fullData.name}</extra>";
      return [lines(figure, hover), layout("seconds")];
    },
    // (d) Per day: the share of nodes failed and warned (lines), the runs failed (bars).
    failures: function (figure) {
      var traces = [
        {
          type: "bar",
          x: figure.days,
          y: figure.runs_failed,
          customdata: figure.runs,
          name: "runs failed",
          yaxis: "y2",
          marker: { color: "rgba(198, 40, 40, 0.25)" },
          hovertemplate: "%{x}<br>%{y} of %{customdata} runs failed<extra></extra>",
        },
      ];
      [
        ["failed_pct", "nodes failed", "#c62828"],
        ["warned_pct", "nodes warned", "#f9a825"],
      ].forEach(function (line) {
        traces.push({
          type: "scatter",
          x: figure.days,
          y: figure[line[0]],
          mode: "lines+markers",
          name: line[1],
          line: { color: line[2] },
          hovertemplate: "%{x}<br>%{y:.2f}%<extra>" + line[1] + "</extra>",
        });
      });
      var most = Math.max.apply(null, [0].concat(figure.runs_failed));
      return [
        traces,
        layout("% of nodes", {
          xaxis: { type: "date" },
          yaxis: { title: { text: "% of nodes" }, rangemode: "tozero", ticksuffix: "%" },
          yaxis2: {
            title: { text: "runs failed" },
            overlaying: "y",
            side: "right",
            rangemode: "tozero",
            showgrid: false,
            // whole runs: a tick every run up to 5, then every few
            dtick: Math.max(1, Math.ceil(most / 5)),
          },
        }),
      ];
    },
    // (e) Rows affected by the models with the most rows, over the runs.
    rows: function (figure) {
      var hover = "%{x} UTC<br>%{y:,.0f} rows<extra>%{fullData.name}</extra>";
      return [lines(figure, hover), layout("rows")];
    },
  };

  // plotly.js did not load (the page was copied without the assets folder beside it): each
  // figure's place says so, and which file it needs, instead of staying blank.
  function missing() {
    var path = document.getElementById("plotly-js").getAttribute("src");
    data.figures.forEach(function (figure) {
      var place = document.getElementById(figure.id);
      var text = document.createElement("p");
      text.className = "note missing-plotly";
      text.textContent =
        "This figure needs plotly.js, the file " + path + " beside this page, which did " +
        "not load: open the page from its folder, or copy the whole folder (the page and " +
        "its assets folder) before opening it.";
      place.style.height = "auto";
      place.appendChild(text);
    });
  }

  if (typeof Plotly === "undefined") {
    missing();
    return;
  }
  data.figures.forEach(function (figure) {
    var drawn = DRAW[figure.kind](figure);
    Plotly.newPlot(figure.id, drawn[0], drawn[1], CONFIG);
  });
})();
