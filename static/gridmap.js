/* gridmap map client: choropleth with a metric switcher and legend, clustered scored sites.
 *
 * All data arrives in one JSON block (see gridmap/maps.py). Every text that may come from a user
 * (site names, ids, extra columns, region names) is put into the page with textContent, never
 * innerHTML, so markup in a name shows as text.
 */
(function () {
  "use strict";

  var SCORE_BINS = [20, 40, 60, 80];
  var SCORE_COLOURS = ["#d7191c", "#fdae61", "#ffffbf", "#a6d96a", "#1a9641"];
  var GOOD_COLOURS = ["#edf8e9", "#bae4b3", "#74c476", "#31a354", "#006d2c"];
  var BAD_COLOURS = ["#fee5d9", "#fcae91", "#fb6a4a", "#de2d26", "#a50f15"];
  var NO_DATA = "#bdbdbd";
  var COMPONENTS = [
    ["renewable", "Renewable share"], ["carbon", "Low CO2 rate"],
    ["stress", "Low load stress"], ["price", "Low price"]
  ];
  var SITE_FIGURES = [
    ["it_load_mw", "IT load", "MW"], ["pue", "PUE", ""], ["load_factor", "Load factor", ""],
    ["facility_load_mw", "Facility load", "MW"], ["annual_energy_mwh", "Annual energy", "MWh"],
    ["annual_co2_tonnes", "Annual CO2", "t"], ["annual_energy_cost_usd", "Annual energy cost", "USD"],
    ["demand_growth_share", "Demand growth share", "%"],
    ["cumulative_demand_growth_share", "Cumulative demand growth", "%"],
    ["load_stress", "Load stress (with these sites)", ""]
  ];
  var REGION_FIGURES = [
    ["renewable_share", "Renewable share", "%"], ["carbon_free_share", "Carbon-free share", "%"],
    ["co2_kg_per_mwh", "CO2 rate", "kg/MWh"], ["price_cents_per_kwh", "Industrial price", "¢/kWh"],
    ["load_stress", "Load stress (before new sites)", ""], ["retail_sales_mwh", "Retail sales", "MWh/yr"],
    ["summer_capacity_mw", "Net summer capacity", "MW"], ["net_generation_mwh", "Net generation", "MWh/yr"]
  ];

  // built once: a new Intl.NumberFormat per number made a popup take ~60 ms
  var NUMBER_FORMATS = [0, 1, 2, 3].map(function (d) {
    return new Intl.NumberFormat("en-US", {maximumFractionDigits: d});
  });

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function fmt(value, unit) {
    if (value === null || value === undefined || (typeof value === "number" && isNaN(value))) { return "n/a"; }
    if (typeof value !== "number") { return String(value); }
    if (unit === "%") { return (value * 100).toFixed(1) + " %"; }
    var digits = Math.abs(value) >= 100 ? 0 : (Math.abs(value) >= 1 ? 2 : 3);
    var text = NUMBER_FORMATS[digits].format(value);
    return unit ? text + " " + unit : text;
  }

  function scoreBin(score) {
    if (score === null || score === undefined) { return SCORE_COLOURS.length; }
    var i = 0;
    while (i < SCORE_BINS.length && score >= SCORE_BINS[i]) { i += 1; }
    return i;
  }

  function scoreColour(score) {
    var i = scoreBin(score);
    return i < SCORE_COLOURS.length ? SCORE_COLOURS[i] : NO_DATA;
  }

  function table(rows) {
    var t = el("table", null, "gm-figures");
    rows.forEach(function (row) {
      var tr = el("tr");
      row.forEach(function (cell, i) { tr.appendChild(el(i === 0 ? "th" : "td", cell)); });
      t.appendChild(tr);
    });
    return t;
  }

  function Scale(values, higherIsBetter) {
    var finite = values.filter(function (v) { return typeof v === "number" && isFinite(v); });
    this.lo = finite.length ? Math.min.apply(null, finite) : 0;
    this.hi = finite.length ? Math.max.apply(null, finite) : 1;
    this.colours = higherIsBetter ? GOOD_COLOURS : BAD_COLOURS;
  }
  Scale.prototype.colour = function (v) {
    if (typeof v !== "number" || !isFinite(v)) { return NO_DATA; }
    var span = this.hi - this.lo;
    var i = span > 0 ? Math.floor((v - this.lo) / span * this.colours.length) : 0;
    return this.colours[Math.max(0, Math.min(this.colours.length - 1, i))];
  };
  Scale.prototype.breaks = function () {
    var n = this.colours.length, out = [];
    for (var i = 0; i < n; i += 1) {
      out.push([this.lo + (this.hi - this.lo) * i / n, this.lo + (this.hi - this.lo) * (i + 1) / n, this.colours[i]]);
    }
    return out;
  };

  function View(map, data) {
    this.map = map;
    this.data = data;
    this.ready = false;
    this.metrics = {};
    var self = this;
    data.metrics.forEach(function (m) { self.metrics[m.key] = m; });
    this.regionsById = {};
    (data.regions.features || []).forEach(function (f) { self.regionsById[f.properties.region_id] = f.properties; });
    map.getContainer().classList.add("gm-map");
    this.drawRegions();
    this.addControls();
    this.setMetric(data.metric);
    this.drawSites();
  }

  View.prototype.drawRegions = function () {
    var self = this;
    this.regionLayer = L.geoJSON(this.data.regions, {
      style: function () { return {weight: 1, color: "#555", fillOpacity: 0.8, className: "gm-region"}; },
      onEachFeature: function (feature, layer) {
        layer.on("mouseover", function () { layer.setStyle({weight: 3}); self.info.show(feature.properties); });
        layer.on("mouseout", function () { layer.setStyle({weight: 1}); self.info.show(null); });
        layer.bindPopup(function () { return self.regionPopup(feature.properties); });
      }
    }).addTo(this.map);
  };

  View.prototype.regionPopup = function (p) {
    var box = el("div", null, "gm-popup");
    box.appendChild(el("h3", p.region_name + " (" + p.region_id + ")"));
    box.appendChild(table(REGION_FIGURES.map(function (f) { return [f[1], fmt(p[f[0]], f[2])]; })));
    var year = this.data.layer.data_year;
    box.appendChild(el("p", "Data: " + this.data.layer.name + (year ? ", " + year : ""), "gm-source"));
    return box;
  };

  View.prototype.setMetric = function (key) {
    var meta = this.metrics[key];
    if (!meta) { return; }
    this.metric = key;
    var values = (this.data.regions.features || []).map(function (f) { return f.properties[key]; });
    var scale = new Scale(values, meta.higher_is_better);
    this.regionLayer.setStyle(function (f) { return {fillColor: scale.colour(f.properties[key])}; });
    this.legend.show(meta, scale);
    this.select.value = key;
  };

  View.prototype.addControls = function () {
    var self = this;
    var Picker = L.Control.extend({
      onAdd: function () {
        var box = el("div", null, "gm-control gm-picker");
        var label = el("label", "Colour regions by ");
        self.select = el("select");
        self.select.id = "gm-metric";
        self.data.metrics.forEach(function (m) {
          var option = el("option", m.label);
          option.value = m.key;
          self.select.appendChild(option);
        });
        self.select.addEventListener("change", function () { self.setMetric(self.select.value); });
        label.appendChild(self.select);
        box.appendChild(label);
        L.DomEvent.disableClickPropagation(box);
        return box;
      }
    });
    var Legend = L.Control.extend({
      onAdd: function () { this.box = el("div", null, "gm-control gm-legend"); return this.box; },
      show: function (meta, scale) {
        var box = this.box, pct = meta.unit && meta.unit.indexOf("fraction") === 0;
        box.textContent = "";
        box.appendChild(el("h4", meta.label + (meta.unit ? " (" + (pct ? "%" : meta.unit) + ")" : "")));
        scale.breaks().forEach(function (b) {
          var row = el("div", null, "gm-legend-row");
          var swatch = el("i", null, "gm-swatch");
          swatch.style.background = b[2];
          row.appendChild(swatch);
          row.appendChild(el("span", fmt(b[0], pct ? "%" : "") + " – " + fmt(b[1], pct ? "%" : "")));
          box.appendChild(row);
        });
        var none = el("div", null, "gm-legend-row");
        var grey = el("i", null, "gm-swatch");
        grey.style.background = NO_DATA;
        none.appendChild(grey);
        none.appendChild(el("span", "no data"));
        box.appendChild(none);
        if (self.data.sites) { box.appendChild(self.scoreLegend()); }
        var year = self.data.layer.data_year;
        box.appendChild(el("p", "Source: " + (meta.source || "n/a"), "gm-source"));
        box.appendChild(el("p", "Layer: " + self.data.layer.name + (year ? " · data year " + year : ""), "gm-source"));
        if (self.data.note) { box.appendChild(el("p", self.data.note, "gm-note")); }
      }
    });
    var Info = L.Control.extend({
      onAdd: function () { this.box = el("div", null, "gm-control gm-info"); this.show(null); return this.box; },
      show: function (p) {
        this.box.textContent = "";
        if (!p) { this.box.appendChild(el("span", "Hover over a region")); return; }
        var m = self.metrics[self.metric];
        this.box.appendChild(el("strong", p.region_name));
        var pct = m.unit && m.unit.indexOf("fraction") === 0;
        this.box.appendChild(el("div", m.label + ": " + fmt(p[self.metric], pct ? "%" : m.unit)));
      }
    });
    new Picker({position: "topright"}).addTo(this.map);
    this.info = new Info({position: "topright"}).addTo(this.map);
    this.legend = new Legend({position: "bottomright"}).addTo(this.map);
  };

  View.prototype.scoreLegend = function () {
    // one compact row: the region legend above matters more on a small screen
    var box = el("div", null, "gm-score-legend");
    box.appendChild(el("h4", "Site score 0-100 (higher is better)"));
    var row = el("div", null, "gm-legend-row");
    row.appendChild(el("span", "0"));
    SCORE_COLOURS.forEach(function (colour, i) {
      var dot = el("i", null, "gm-dot");
      dot.style.background = colour;
      dot.title = (i * 20) + "–" + (i * 20 + 20);
      row.appendChild(dot);
    });
    row.appendChild(el("span", "100"));
    box.appendChild(row);
    return box;
  };

  View.prototype.drawSites = function () {
    var self = this, sites = this.data.sites;
    if (!sites) { this.markReady(); return; }
    var col = {};
    sites.columns.forEach(function (name, i) { col[name] = i; });
    this.col = col;
    var icons = SCORE_COLOURS.concat([NO_DATA]).map(function (colour, i) {
      return L.divIcon({className: "gm-site gm-bin-" + i, iconSize: [14, 14], html: ""});
    });
    var rows = sites.data, markers = new Array(rows.length);
    for (var i = 0; i < rows.length; i += 1) {
      var r = rows[i];
      var marker = L.marker([r[col.lat], r[col.lon]], {icon: icons[scoreBin(r[col.score])], keyboard: false});
      marker.gmIndex = i;
      markers[i] = marker;
    }
    this.markers = markers;
    this.popup = L.popup({maxWidth: 360, maxHeight: 420, autoPanPadding: [20, 20]});
    this.cluster = L.markerClusterGroup({
      chunkedLoading: true,
      // no split/merge animations: with thousands of sites they cost frames, and a zoom that lands
      // mid-animation (showSite right after a click) can leave the clusters unsplit
      animate: false,
      showCoverageOnHover: false,
      maxClusterRadius: 50,
      iconCreateFunction: function (cluster) {
        var n = cluster.getChildCount();
        var size = n < 100 ? 30 : (n < 10000 ? 38 : 46);
        return L.divIcon({html: "<span>" + n + "</span>", className: "gm-cluster", iconSize: [size, size]});
      },
      chunkProgress: function (done, total) {
        if (done >= total) { self.markReady(); }
      }
    });
    this.cluster.on("click", function (e) { self.openSite(e.layer.gmIndex); });
    this.map.addLayer(this.cluster);
    this.cluster.addLayers(markers);
    if (!markers.length) { this.markReady(); }
  };

  View.prototype.markReady = function () {
    // benchmarks read readyAt: ms from navigation start until every site is in the cluster layer
    this.readyAt = performance.now();
    this.ready = true;
    this.map.fire("gridmap:ready");
  };

  View.prototype.openSite = function (i) {
    var marker = this.markers[i];
    this.popup.setLatLng(marker.getLatLng()).setContent(this.sitePopup(i)).openOn(this.map);
  };

  View.prototype.showSite = function (i) {
    // zoom to the level where the site leaves its cluster, without animation: markercluster's
    // zoomToShowLayer waits for a moveend that never comes if called while the clusters settle
    var marker = this.markers[i], parent = marker.__parent, map = this.map;
    var zoom = parent && typeof parent._zoom === "number" ? parent._zoom + 1 : map.getZoom();
    map.setView(marker.getLatLng(), Math.min(Math.max(zoom, map.getZoom()), map.getMaxZoom()), {animate: false});
    this.openSite(i);
  };

  View.prototype.sitePopup = function (i) {
    var r = this.data.sites.data[i], col = this.col, weights = this.data.weights || {};
    var get = function (name) { return col[name] === undefined ? null : r[col[name]]; };
    var box = el("div", null, "gm-popup gm-site-popup");
    box.appendChild(el("h3", get("name") || get("site_id")));
    box.appendChild(el("div", "Site id: " + get("site_id"), "gm-id"));
    var score = get("score");
    var head = el("div", "Score " + (score === null ? "n/a" : score.toFixed(1)) +
      (get("rank") === null ? "" : " · rank " + get("rank")), "gm-score");
    head.style.borderLeftColor = scoreColour(score);
    box.appendChild(head);
    box.appendChild(el("h4", "Score components (0-100) and weights"));
    box.appendChild(table(COMPONENTS.map(function (c) {
      var v = get("score_" + c[0]);
      return [c[1], v === null ? "n/a" : (v * 100).toFixed(1), "weight " + fmt(weights[c[0]], "")];
    })));
    box.appendChild(el("h4", "Site"));
    box.appendChild(table(SITE_FIGURES.map(function (f) { return [f[1], fmt(get(f[0]), f[2])]; })));
    var region = this.regionsById[get("region_id")];
    box.appendChild(el("h4", "Region: " + (region ? region.region_name + " (" + region.region_id + ")" : "none") +
      " · " + get("assignment")));
    if (region) {
      box.appendChild(table(REGION_FIGURES.map(function (f) { return [f[1], fmt(region[f[0]], f[2])]; })));
    }
    var extras = this.data.sites.columns.filter(function (c) { return c.indexOf("extra:") === 0; });
    if (extras.length) {
      box.appendChild(el("h4", "Your columns"));
      box.appendChild(table(extras.map(function (c) { return [c.slice(6), fmt(get(c), "")]; })));
    }
    var year = this.data.layer.data_year;
    box.appendChild(el("p", "Data: " + this.data.layer.name + (year ? ", " + year : "") + " · " +
      this.data.method_version, "gm-source"));
    return box;
  };

  function bindTable(view) {
    // rows of a ranked table beside the map (upload page) open their site on the map
    document.querySelectorAll("[data-gm-site]").forEach(function (row) {
      row.addEventListener("click", function () { view.showSite(Number(row.getAttribute("data-gm-site"))); });
    });
  }

  window.gridmap = {
    init: function (map, block) {
      var view = new View(map, JSON.parse(block.textContent));
      bindTable(view);
      return view;
    }
  };
}());
