// p1-exporter live page: polls api/v1/live and draws each meter as a card.
// Charts are SVG drawn here by hand (no library, nothing fetched from elsewhere).
// Every text that comes from a meter is set with textContent, never as markup.
"use strict";
(function () {
  var POLL_MS = 2000;
  var MAX_RETRY_MS = 10000;
  var SVG = "http://www.w3.org/2000/svg";
  var main = document.getElementById("meters");
  var conn = document.getElementById("conn");
  var template = document.getElementById("card-template");
  var cards = new Map(); // meter name -> {el, power: Map slot->W, gas: Map slot->m3}
  var started = null;
  var since = null;
  var gasSince = null;
  var failures = 0;
  var last = null; // the latest document, for redraws on resize

  function liveUrl() {
    // Built from origin + path, never from location.href: a page opened as
    // http://user:pass@host/ must not put credentials into fetch().
    var url = new URL("api/v1/live", location.origin + location.pathname);
    if (since !== null) url.searchParams.set("since", String(since));
    if (gasSince !== null) url.searchParams.set("gas_since", String(gasSince));
    return url.toString();
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function svgEl(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    for (var key in attrs) node.setAttribute(key, String(attrs[key]));
    return node;
  }

  // -- formatting ------------------------------------------------------------------------
  var offset = 0; // the exporter's UTC offset in seconds: its local time is the page's

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localDate(t) { return new Date((t + offset) * 1000); }
  function hhmm(t) { var d = localDate(t); return pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()); }
  var MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function dayTime(t) { var d = localDate(t); return d.getUTCDate() + " " + MONTHS[d.getUTCMonth()] + " " + hhmm(t); }
  function watts(w) {
    if (w === null || w === undefined) return "–";
    if (Math.abs(w) >= 10000) return (w / 1000).toFixed(1) + " kW";
    return Math.round(w) + " W";
  }
  function kw(w) { return w === null || w === undefined ? "–" : (w / 1000).toFixed(3) + " kW"; }
  function kwh(j, digits) { return j === null || j === undefined ? "–" : (j / 3.6e6).toFixed(digits) + " kWh"; }
  function reading(value, unit) {
    if (value === null || value === undefined) return "no reading";
    if (unit === "m3") return value.toFixed(3) + " m³";
    if (unit === "J") return (value / 1e9).toFixed(3) + " GJ";
    return value + " " + (unit || "");
  }

  function fillDl(dl, rows) {
    dl.replaceChildren();
    rows.forEach(function (row) {
      dl.appendChild(el("dt", "", row[0]));
      var dd = el("dd", row[2] || "", row[1]);
      dl.appendChild(dd);
    });
  }

  // -- one card --------------------------------------------------------------------------
  function card(name) {
    var entry = cards.get(name);
    if (entry) return entry;
    var node = template.content.firstElementChild.cloneNode(true);
    node.dataset.meter = name;
    node.querySelector(".name").textContent = name;
    entry = { el: node, power: new Map(), gas: new Map(), step: 10, slots: 2160, gasStep: 300, gasSlots: 289 };
    cards.set(name, entry);
    main.appendChild(node);
    return entry;
  }

  function q(node, selector) { return node.querySelector(selector); }

  function renderHead(node, m, v) {
    node.classList.toggle("stale", !m.fresh);
    node.dataset.fresh = m.fresh ? "true" : "false";
    q(node, ".badge").textContent = m.fresh ? "live" : "stale";
    q(node, ".tariff").textContent = v && v.tariff ? "tariff " + v.tariff : "";
    q(node, ".age").textContent = m.age_seconds === null ? "no telegram yet"
      : "telegram " + Math.round(m.age_seconds) + " s ago";
    var message = q(node, ".message");
    message.hidden = !(v && v.message);
    message.textContent = v && v.message ? "Message from the meter: " + v.message : "";
  }

  function renderNow(node, m, v) {
    var imp = q(node, '[data-field="import"]');
    var exp = q(node, '[data-field="export"]');
    imp.textContent = watts(v ? v.import_w : null);
    exp.textContent = watts(v ? v.export_w : null);
    imp.dataset.w = v && v.import_w !== null ? String(v.import_w) : "";
    exp.dataset.w = v && v.export_w !== null ? String(v.export_w) : "";
    node.dataset.meterTime = v && v.meter_time !== null ? String(v.meter_time) : "";
    node.dataset.receivedAt = m.received_at === null ? "" : String(m.received_at);
  }

  function renderPhases(node, v) {
    var table = q(node, ".phases");
    var body = q(table, "tbody");
    var phases = v ? v.phases : [];
    table.hidden = phases.length === 0;
    body.replaceChildren();
    var closest = v ? v.closest_phase : null;
    phases.forEach(function (p) {
      var row = el("tr");
      row.dataset.phase = p.phase;
      if (closest && closest.phase === p.phase) {
        row.className = "closest";
        row.title = closest.basis === "limit"
          ? "closest to its fuse limit (" + Math.round(closest.load * 100) + " %)"
          : "highest current: closest to the fuse limit if the fuses are equal";
      }
      var power = null;
      if (p.import_w !== null || p.export_w !== null) power = (p.import_w || 0) - (p.export_w || 0);
      var current = p.current_a === null ? "–" : p.current_a.toFixed(1) + " A";
      if (p.limit_a !== null) current += " / " + Math.round(p.limit_a) + " A";
      [p.phase, power === null ? "–" : watts(power),
        p.voltage_v === null ? "–" : p.voltage_v.toFixed(1) + " V", current].forEach(function (text) {
        row.appendChild(el("td", "", text));
      });
      body.appendChild(row);
    });
    var note = q(node, ".phases-note");
    if (!note) {
      note = el("p", "note phases-note");
      table.after(note);
    }
    note.hidden = !closest;
    note.textContent = !closest ? "" : closest.basis === "limit"
      ? "▲ " + closest.phase + " is closest to its fuse limit (" + Math.round(closest.load * 100) + " %)"
      : "▲ " + closest.phase + " carries the highest current (closest to its fuse, if the fuses are equal)";
  }

  function renderPeriod(box, p, label) {
    var title = q(box, "h3");
    var dl = q(box, "dl");
    if (!p || p.since === null) {
      title.textContent = label;
      fillDl(dl, [["", "no readings yet"]]);
      return;
    }
    title.textContent = p.complete ? label : label + ", since " + hhmm(p.since);
    box.dataset.complete = p.complete ? "true" : "false";
    var rows = [["import", kwh(p.import_j, 2)], ["export", kwh(p.export_j, 2)]];
    if (p.import_j !== null && p.export_j !== null) rows.push(["net", kwh(p.import_j - p.export_j, 2)]);
    if (p.gas_m3 !== null) {
      var gasLabel = p.gas_complete ? "gas" : "gas since " + hhmm(p.gas_since);
      rows.push([gasLabel, p.gas_m3.toFixed(3) + " m³"]);
    }
    fillDl(dl, rows);
  }

  function renderRegisters(node, v) {
    var rows = [];
    if (v) {
      v.registers.forEach(function (r) {
        var label = r.direction + (r.tariff === null ? " total" : " tariff " + r.tariff);
        rows.push([label, kwh(r.joules, 3)]);
      });
      v.devices.forEach(function (d) {
        var text = reading(d.value, d.unit);
        if (d.reading_time !== null) text += " at " + hhmm(d.reading_time);
        rows.push([d.kind + " (channel " + d.channel + ")", text]);
      });
    }
    var box = q(node, ".registers");
    box.hidden = rows.length === 0;
    fillDl(q(box, "dl"), rows);
    var demand = q(node, ".demand");
    var dem = v ? v.demand : null;
    demand.hidden = !dem;
    if (dem) {
      var peak = kw(dem.month_peak_w);
      if (dem.month_peak_time !== null) peak += " on " + dayTime(dem.month_peak_time);
      fillDl(q(demand, "dl"), [["this quarter hour (average)", kw(dem.average_w)], ["peak this month", peak]]);
    }
  }

  function renderState(node, m) {
    var strip = q(node, ".state");
    strip.replaceChildren();
    function add(text, cls) { strip.appendChild(el("span", cls || "", text)); }
    add(m.fresh ? "fresh" : "stale: " + m.reason, m.fresh ? "" : "bad");
    add("source " + m.source);
    if (m.values) {
      add("meter " + m.values.header + (m.values.equipment_id ? " · " + m.values.equipment_id : "") +
        (m.values.dsmr_version ? " · DSMR " + m.values.dsmr_version : ""));
    }
    if (m.settings) add("serial " + m.settings);
    add(m.connected ? "connected" : "not connected", m.connected ? "" : "bad");
    var t = m.telegrams;
    var counts = t.ok + " telegrams ok, " + t.crc_error + " CRC errors, " + t.malformed + " malformed";
    if (t.too_large) counts += ", " + t.too_large + " too large";
    if (t.rejected) counts += ", " + t.rejected + " rejected";
    add(counts);
    if (m.last_error) add("last error: " + m.last_error, "bad");
    m.diagnostics.forEach(function (d) { add(d, "bad"); });
    var links = q(node, ".card-links");
    links.replaceChildren();
    if (m.values) {
      var a = el("a", "raw", "raw telegram");
      a.href = "api/v1/meters/" + encodeURIComponent(m.name) + "/telegram";
      links.appendChild(a);
    }
  }

  // -- charts ----------------------------------------------------------------------------
  function box(svg) {
    var width = Math.max(200, Math.round(svg.getBoundingClientRect().width) || 600);
    var height = Math.round(svg.getBoundingClientRect().height) || 160;
    svg.setAttribute("viewBox", "0 0 " + width + " " + height);
    svg.replaceChildren();
    return { w: width, h: height };
  }

  function hourTicks(svg, size, start, end, x, bottom) {
    var span = end - start;
    var every = size.w < 420 ? 7200 : 3600;
    if (span > 12 * 3600) every = size.w < 420 ? 6 * 3600 : 3 * 3600;
    var first = Math.ceil((start + offset) / every) * every - offset;
    for (var t = first; t <= end; t += every) {
      var px = x(t);
      if (px < 16 || px > size.w - 16) continue; // a label there would be cut off
      svg.appendChild(svgEl("line", { x1: px, x2: px, y1: 0, y2: bottom, "class": "axis" }));
      var label = svgEl("text", { x: px, y: size.h - 2, "text-anchor": "middle" });
      label.textContent = hhmm(t);
      svg.appendChild(label);
    }
  }

  function drawPower(entry, now) {
    var svg = q(entry.el, ".power-chart svg");
    var size = box(svg);
    var step = entry.step;
    var endSlot = Math.floor(now / step);
    var startSlot = endSlot - entry.slots + 1;
    var top = 4, bottom = size.h - 16, left = 0, width = size.w;
    var maxImp = 100, maxExp = 0, points = 0;
    entry.power.forEach(function (w, slot) {
      if (slot < startSlot || w === null) return;
      points += 1;
      if (w > maxImp) maxImp = w;
      if (-w > maxExp) maxExp = -w;
    });
    var room = Math.max(maxExp, maxImp * 0.12);
    var zero = top + (bottom - top) * maxImp / (maxImp + room);
    var scale = (bottom - top) / (maxImp + room);
    function x(t) { return left + (t - startSlot * step) / (entry.slots * step) * width; }
    hourTicks(svg, size, startSlot * step, (endSlot + 1) * step, x, bottom);
    var imp = "", exp = "";
    var dx = width / entry.slots;
    for (var slot = startSlot; slot <= endSlot; slot++) {
      var w = entry.power.get(slot);
      if (w === undefined || w === null) continue;
      var px = x(slot * step);
      var y = zero - w * scale;
      var rect = "M" + px.toFixed(1) + " " + zero.toFixed(1) + "V" + y.toFixed(1) + "h" + dx.toFixed(2) + "V" + zero.toFixed(1) + "Z";
      if (w >= 0) imp += rect; else exp += rect;
    }
    if (imp) svg.appendChild(svgEl("path", { d: imp, "class": "imp" }));
    if (exp) svg.appendChild(svgEl("path", { d: exp, "class": "exp" }));
    svg.appendChild(svgEl("line", { x1: 0, x2: width, y1: zero, y2: zero, "class": "zero" }));
    var high = svgEl("text", { x: 2, y: top + 10 });
    high.textContent = "▲ " + watts(maxImp) + " import";
    svg.appendChild(high);
    if (maxExp > 0) {
      var low = svgEl("text", { x: 2, y: bottom - 3 });
      low.textContent = "▼ " + watts(maxExp) + " export";
      svg.appendChild(low);
    }
    svg.dataset.points = String(points);
  }

  function drawGas(entry, now, show) {
    var figure = q(entry.el, ".gas-chart");
    figure.hidden = !show;
    if (!show) return;
    var svg = q(figure, "svg");
    var size = box(svg);
    var end = (Math.floor((now + offset) / 3600) + 1) * 3600 - offset; // end of this local hour
    var start = end - 24 * 3600;
    var bars = new Map();
    var slots = Array.from(entry.gas.keys()).sort(function (a, b) { return a - b; });
    var previous = null;
    slots.forEach(function (slot) {
      var value = entry.gas.get(slot);
      if (value === null) return;
      var t = slot * entry.gasStep;
      if (previous && t - previous.t <= 2 * 3600 && value >= previous.v) {
        var hour = Math.floor((t - 1 + offset) / 3600) * 3600 - offset; // a reading at 10:00 closes 09-10
        bars.set(hour, (bars.get(hour) || 0) + value - previous.v);
      }
      previous = { t: t, v: value };
    });
    var bottom = size.h - 16;
    var max = 0.1;
    bars.forEach(function (m3, hour) { if (hour >= start && m3 > max) max = m3; });
    function x(t) { return (t - start) / (end - start) * size.w; }
    hourTicks(svg, size, start, end, x, bottom);
    var d = "", count = 0, barWidth = size.w / 24;
    bars.forEach(function (m3, hour) {
      if (hour < start || hour >= end || m3 <= 0) return;
      var h = m3 / max * (bottom - 14);
      d += "M" + (x(hour) + 1).toFixed(1) + " " + bottom + "v" + (-h).toFixed(1) + "h" + (barWidth - 2).toFixed(1) + "v" + h.toFixed(1) + "Z";
      count += 1;
    });
    if (d) svg.appendChild(svgEl("path", { d: d, "class": "bar" }));
    svg.appendChild(svgEl("line", { x1: 0, x2: size.w, y1: bottom, y2: bottom, "class": "zero" }));
    var label = svgEl("text", { x: 2, y: 11 });
    label.textContent = "max " + max.toFixed(3) + " m³/h";
    svg.appendChild(label);
    svg.dataset.bars = String(count);
  }

  // -- merging chart points --------------------------------------------------------------
  // A series is base64 of little-endian float32 (power) or float64 (gas); NaN is a gap.
  function decode(series) {
    var text = atob(series.data);
    var view = new DataView(new ArrayBuffer(text.length));
    for (var i = 0; i < text.length; i++) view.setUint8(i, text.charCodeAt(i));
    var wide = series.type === "float64";
    var values = [];
    for (var n = 0; n < series.count; n++) {
      var v = wide ? view.getFloat64(n * 8, true) : view.getFloat32(n * 4, true);
      values.push(isNaN(v) ? null : v);
    }
    return values;
  }

  function merge(map, series, keepFrom) {
    if (!series) return null;
    decode(series).forEach(function (value, i) { map.set(series.first + i, value); });
    map.forEach(function (_, slot) { if (slot < keepFrom) map.delete(slot); });
    return series.count ? series.first + series.count - 1 : null;
  }

  function render(doc) {
    last = doc;
    offset = doc.utc_offset;
    document.getElementById("version").textContent =
      "· p1-exporter " + doc.version + " · times in " + doc.timezone;
    var names = new Set();
    var lastPower = [], lastGas = [];
    doc.meters.forEach(function (m) { card(m.name); }); // all cards first: charts measure their width
    doc.meters.forEach(function (m) {
      names.add(m.name);
      var entry = card(m.name);
      var node = entry.el;
      var v = m.values;
      renderHead(node, m, v);
      renderNow(node, m, v);
      renderPhases(node, v);
      renderPeriod(q(node, '[data-period="today"]'), m.today, "Today");
      renderPeriod(q(node, '[data-period="hour"]'), m.hour, "This hour");
      renderRegisters(node, v);
      renderState(node, m);
      if (m.power) {
        entry.step = m.power.step;
        entry.slots = m.power.slots;
        var p = merge(entry.power, m.power, Math.floor(doc.now / entry.step) - entry.slots);
        if (p !== null) lastPower.push(p);
      }
      if (m.gas) {
        entry.gasStep = m.gas.step;
        entry.gasSlots = m.gas.slots;
        var g = merge(entry.gas, m.gas, Math.floor(doc.now / entry.gasStep) - entry.gasSlots);
        if (g !== null) lastGas.push(g);
      }
      drawPower(entry, doc.now);
      var hasGas = !!(v && v.devices.some(function (d) { return d.kind === "gas"; })) || entry.gas.size > 0;
      drawGas(entry, doc.now, hasGas);
    });
    cards.forEach(function (entry, name) {
      if (!names.has(name)) { entry.el.remove(); cards.delete(name); }
    });
    // Next time, only the points after the oldest "newest point" (its slot may still change).
    if (lastPower.length) since = Math.min.apply(null, lastPower) - 1;
    if (lastGas.length) gasSince = Math.min.apply(null, lastGas) - 1;
  }

  function reset() {
    cards.forEach(function (entry) { entry.el.remove(); });
    cards.clear();
    since = null;
    gasSince = null;
  }

  // -- polling ---------------------------------------------------------------------------
  function setConn(text, cls) {
    conn.textContent = text;
    conn.className = "conn " + cls;
    document.body.classList.toggle("offline", cls === "down");
  }

  function schedule(ms) { setTimeout(poll, ms); }

  function poll() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, 8000);
    fetch(liveUrl(), { cache: "no-store", credentials: "same-origin", signal: controller.signal })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (doc) {
        clearTimeout(timer);
        failures = 0;
        if (started !== null && doc.started !== started) {
          reset(); // the exporter restarted: its history starts again
          started = doc.started;
          schedule(0);
          return;
        }
        started = doc.started;
        render(doc);
        setConn("live", "live");
        document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
        schedule(document.hidden ? 4 * POLL_MS : POLL_MS);
      })
      .catch(function (error) {
        clearTimeout(timer);
        failures += 1;
        setConn("reconnecting… (" + (error && error.message ? error.message : "no answer") + ")", "down");
        schedule(Math.min(MAX_RETRY_MS, POLL_MS * failures));
      });
  }

  var resizeTimer = null;
  window.addEventListener("resize", function () {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(function () { if (last) render(last); }, 150);
  });
  poll();
})();
