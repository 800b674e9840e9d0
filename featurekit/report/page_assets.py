"""The report page's style sheet and script, inlined into the page (it opens offline: no CDN, no network)."""

# Every request the page could make is refused by its own policy: styles, scripts and pictures are inline.
CONTENT_SECURITY_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                           "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")

STYLE = """
:root { --ink: #1b1f24; --muted: #57606a; --line: #d0d7de; --soft: #f6f8fa; --accent: #1f4e9c;
        --random: #d97706; --collapsed: #dc2626; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 60px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
p { margin: 6px 0; }
.muted { color: var(--muted); font-size: 13px; }
.warn { background: #fff8c5; border: 1px solid #e9c46a; padding: 8px 12px; border-radius: 6px; }
.alert { background: #ffebe9; border: 1px solid #ff8182; padding: 8px 12px; border-radius: 6px; }
.headline { background: var(--soft); border: 1px solid var(--line); border-radius: 10px; padding: 16px 20px;
            margin-top: 18px; }
.headline .what { font-size: 17px; font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 150px; }
.card .value { font-size: 24px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; }
.card .ci { font-size: 12px; color: var(--muted); font-variant-numeric: tabular-nums; }
figure { margin: 8px 0; }
.pair { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure img.plot { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { font-size: 13px; color: var(--muted); }
.key span { display: inline-block; margin-right: 14px; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px;
       vertical-align: middle; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; margin: 6px 0; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th:hover { background: #eaeef2; }
table.sortable th[aria-sort="ascending"]::after { content: " \\25B2"; font-size: 10px; }
table.sortable th[aria-sort="descending"]::after { content: " \\25BC"; font-size: 10px; }
.scroll { overflow-x: auto; }
tr.random td:first-child { border-left: 4px solid var(--random); }
tr.collapsed td:first-child { border-left: 4px solid var(--collapsed); }
.flag { font-size: 11px; font-weight: 700; padding: 1px 5px; border-radius: 4px; color: #fff; white-space: nowrap; }
.flag.random { background: var(--random); }
.flag.collapsed { background: var(--collapsed); }
.flag.other { background: #6e7781; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 12px; }
.gallery figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: #fff; }
.gallery img { width: 144px; height: 144px; object-fit: cover; display: block; margin: 0 auto 6px;
               border-radius: 4px; background: var(--soft); }
.gallery .score { font-weight: 650; }
.path { font-size: 11px; color: var(--muted); word-break: break-all; }
.nowrap { white-space: nowrap; }
.file { font-size: 11px; color: var(--muted); white-space: nowrap; }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace; background: var(--soft); padding: 0 3px;
       border-radius: 3px; }
.missing { width: 144px; height: 144px; margin: 0 auto 6px; display: flex; align-items: center;
           justify-content: center; background: var(--soft); color: var(--muted); font-size: 12px; }
footer { margin-top: 40px; font-size: 12px; color: var(--muted); }
"""

SCRIPT = """
(function () {
  function key(cell) {
    var raw = cell.getAttribute("data-sort");
    if (raw === null) { raw = cell.textContent; }
    var number = parseFloat(raw);
    return isNaN(number) ? { text: raw.toLowerCase() } : { number: number };
  }
  function compare(a, b) {
    if (a.number !== undefined && b.number !== undefined) { return a.number - b.number; }
    if (a.number !== undefined) { return -1; }
    if (b.number !== undefined) { return 1; }
    return a.text < b.text ? -1 : (a.text > b.text ? 1 : 0);
  }
  function sortBy(table, header, column) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    var headers = table.tHead.rows[0].cells;
    for (var i = 0; i < headers.length; i++) { headers[i].removeAttribute("aria-sort"); }
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (x, y) {
      var order = compare(key(x.cells[column]), key(y.cells[column]));
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  var tables = document.querySelectorAll("table.sortable");
  Array.prototype.forEach.call(tables, function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.setAttribute("tabindex", "0");
      header.setAttribute("title", "sort by this column");
      header.addEventListener("click", function () { sortBy(table, header, column); });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); sortBy(table, header, column); }
      });
    });
  });
})();
"""
