"""The series explorer in a real browser: a 3,000,000-point series loads and zooms fetching only small views;
gaps stay gaps; channels toggle; the overlay hook draws what the lead's labeling code will give it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
from sqlalchemy import event

from app.datasets import service
from tests.browser.conftest import BIG_POINTS, login, shot

MAX_VIEW_BYTES = 200_000


class Views:
    """Every /view response the page receives: query, JSON body and size in bytes."""

    def __init__(self, page) -> None:  # type: ignore[no-untyped-def]
        self._responses: list = []
        page.on("response", lambda r: self._responses.append(r) if "/view?" in r.url else None)

    def __len__(self) -> int:
        return len(self._responses)

    def get(self, k: int) -> tuple[dict, dict, int]:
        response = self._responses[k]
        assert response.status == 200, response.text()
        body = response.body()
        query = {key: v[0] for key, v in parse_qs(urlparse(response.url).query).items()}
        return query, json.loads(body), len(body)


def wait_view(page, condition: str = "true") -> None:  # type: ignore[no-untyped-def]
    """Wait until the explorer has drawn a view ``v`` (its own record, set after Plotly drew) with ``condition``:
    a JS expression over ``v = {start, end, width, channels, bytes, ...}``."""
    page.wait_for_function(
        f"() => {{ const v = window.explorerStats && window.explorerStats.views.at(-1); "
        f"return !!v && ({condition}); }}",
        timeout=20_000,
    )


def drawn_range(page) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    last = page.evaluate("() => window.explorerStats.views.at(-1)")
    return last["start"], last["end"]


@pytest.mark.browser
def test_three_million_points_load_zoom_and_pan_with_small_views(page, live_server) -> None:
    views = Views(page)
    login(page, "analyst")
    page.goto(f"/series/{live_server.series['walk3m']}")
    wait_view(page)
    shot(page, "explorer-3m-overview")

    query, first, size = views.get(0)
    assert (first["start"], first["end"], first["n_points"]) == (0, BIG_POINTS, BIG_POINTS)
    width = int(query["width"])
    assert 600 < width <= 1440, "the request asks for the plot's width in pixels"
    assert 0.5 * width <= len(first["channels"][0]["y"]) <= 2 * width, "about two points per pixel"
    assert size <= MAX_VIEW_BYTES
    assert len(first["truth"]) == 12, "the 12 imported anomaly segments come with the overview"
    assert page.locator("#chart path.js-line").count() == 1, "one channel, one line"
    assert page.locator("#chart .legend").text_content().strip() == "imported ground truth"
    assert page.locator("#chart .layer-below .shapelayer path").count() == 12, "ground truth shaded"
    assert page.locator("#strip path.js-line").count() == 1, "the overview strip is drawn from the same view"
    assert page.evaluate("() => window.explorerStats.firstChartMs") < 10_000

    # '+' zooms in around the centre: half the span, fetched for that range only.
    page.keyboard.press("+")
    wait_view(page, "v.start === 750000 && v.end === 2250000")
    query, zoomed, size = views.get(1)
    assert (zoomed["start"], zoomed["end"]) == (750_000, 2_250_000)
    assert (int(query["start"]), int(query["end"])) == (750_000, 2_250_000), "only the visible range is asked for"
    assert size <= MAX_VIEW_BYTES
    shot(page, "explorer-3m-zoom-key")

    # A drag over the middle fifth of the plot zooms to about that fifth.
    box = page.locator("#chart .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, y, steps=5)
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    wait_view(page, "v.end - v.start < 1000000")
    start, end = drawn_range(page)
    assert 1_250_000 < start < end < 1_750_000 and 250_000 < end - start < 350_000
    _, dragged, size = views.get(len(views) - 1)
    assert (dragged["start"], dragged["end"]) == (start, end) and size <= MAX_VIEW_BYTES
    shot(page, "explorer-3m-drag-zoom")

    # Deep zoom to a few hundred points: every point is sent, nothing is invented.
    for _ in range(10):
        span = end - start
        page.keyboard.press("+")
        wait_view(page, f"v.end - v.start < {span}")
        start, end = drawn_range(page)
    start, end = drawn_range(page)
    assert end - start < 400
    _, deep, _ = views.get(len(views) - 1)
    assert deep["channels"][0]["i"] == list(range(start, end))
    shot(page, "explorer-3m-deep-zoom")

    # Arrow keys pan by a quarter of the view.
    page.keyboard.press("ArrowRight")
    wait_view(page, f"v.start > {start}")
    moved = drawn_range(page)
    assert moved[0] - start == pytest.approx((end - start) / 4, abs=1) and moved[1] - moved[0] == end - start
    assert f"range={moved[0]}-{moved[1]}" in page.url, "the address keeps the range for reload and sharing"

    sizes = [views.get(k)[2] for k in range(len(views))]
    assert max(sizes) <= MAX_VIEW_BYTES, sizes


@pytest.mark.browser
def test_gaps_channels_datetime_axis_and_truth(page, live_server) -> None:
    views = Views(page)
    login(page, "analyst")
    page.goto(f"/series/{live_server.series['gappy']}")
    wait_view(page)
    shot(page, "explorer-gaps-three-channels")

    _, view, _ = views.get(0)
    assert view["x_kind"] == "datetime"
    b = view["channels"][1]
    missing = [y for i, y in zip(b["i"], b["y"], strict=True) if 2_000 <= i < 2_500]
    assert missing and all(y is None for y in missing), "missing values come as null, never as a number"
    assert all(y is not None for i, y in zip(b["i"], b["y"], strict=True) if not 2_000 <= i < 2_500)
    assert view["truth"] == [[3_600, 3_700]]

    assert page.locator("#chart .cartesianlayer .subplot").count() == 3, "one panel per channel"
    segments = page.evaluate("""() => [...document.querySelectorAll('#chart .scatterlayer .trace')]
        .map((t) => [...t.querySelectorAll('path.js-line')]
                    .reduce((s, p) => s + p.getAttribute('d').split('M').length - 1, 0))
        .filter((k) => k > 0)""")
    assert segments == [1, 2, 1], f"three channels stacked, and only b is broken, by its gap: {segments}"
    assert "Mar 1, 2024" in page.locator("#chart .xtick").all_text_contents()[0], "a date axis"

    # Hiding channel c asks the server for channels 0 and 1 only and draws two panels.
    page.locator("#channels input[value='2']").uncheck()
    wait_view(page, "v.channels.join() === '0,1'")
    query, view, _ = views.get(len(views) - 1)
    assert query["channels"] == "0,1" and [c["index"] for c in view["channels"]] == [0, 1]
    assert page.locator("#chart .cartesianlayer .subplot").count() == 2
    assert "ch=0,1" in page.url
    shot(page, "explorer-gaps-channel-hidden")

    # Zooming into the gap: still a gap, with the points around it.
    page.evaluate("() => window.explorer.show(1900, 2600)")
    wait_view(page, "v.start === 1900 && v.end === 2600")
    _, view, _ = views.get(len(views) - 1)
    b = view["channels"][1]
    assert b["i"] == list(range(1_900, 2_600)), "a 700-point range is sent whole"
    assert all((y is None) == (2_000 <= i < 2_500) for i, y in zip(b["i"], b["y"], strict=True))
    shot(page, "explorer-gaps-zoomed")

    # A drag on a date axis maps times back to point indices: the middle fifth of 1,900-2,600 is ~2,180-2,320.
    box = page.locator("#chart .nsewdrag").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=6)
    page.mouse.up()
    wait_view(page, "v.end - v.start < 700")
    start, end = drawn_range(page)
    assert abs(start - 2_180) <= 3 and abs(end - 2_320) <= 3, (start, end)

    # A click on the overview strip centres the window there, keeping its width.
    strip = page.locator("#strip .nsewdrag").first.bounding_box()
    page.mouse.click(strip["x"] + strip["width"] * 0.8, strip["y"] + strip["height"] / 2)
    wait_view(page, "v.start > 3000")
    moved = drawn_range(page)
    assert moved[1] - moved[0] == end - start and abs((moved[0] + moved[1]) / 2 - 0.8 * 4_999) < 15, moved
    shot(page, "explorer-gaps-strip-click")


@pytest.mark.browser
def test_overlay_hook_draws_scores_threshold_and_labels(page, live_server) -> None:
    # What the lead's labeling code will plug in: a score panel, a threshold line, an analyst label.
    page.add_init_script("""
        window.overlayCalls = [];
        window.explorerOverlays = async (start, end, width, ctx) => {
            window.overlayCalls.push([start, end, width, ctx.seriesId]);
            const x = [], y = [];
            for (let k = 0; k <= 200; k++) { const i = Math.round(start + (end - 1 - start) * k / 200); x.push(i);
                y.push(Math.abs(Math.sin(i / 300))); }
            return {
                panelTitle: "score",
                traces: [{type: "scatter", mode: "lines", name: "score (v3)", x, y, yaxis: "overlay",
                          line: {color: "#6941c6", width: 1}}],
                shapes: [
                    {type: "line", xref: "paper", x0: 0, x1: 1, yref: "overlay", y0: 0.8, y1: 0.8,
                     line: {color: "#6941c6", dash: "dash", width: 1}},
                    {type: "rect", xref: "x", yref: "paper", x0: 1000, x1: 1200, y0: 0, y1: 1,
                     fillcolor: "rgba(31,157,85,0.18)", line: {width: 0}, layer: "below"},
                ],
            };
        };
    """)
    login(page, "analyst")
    page.goto(f"/series/{live_server.series['gappy']}")
    wait_view(page)
    calls = page.evaluate("() => window.overlayCalls")
    assert calls and calls[0][:2] == [0, 5_000] and calls[0][3] == live_server.series["gappy"]
    assert page.locator("#chart .cartesianlayer .subplot").count() == 4, "three channels and a score panel"
    assert "score (v3)" in page.locator("#chart .legend").text_content()
    assert page.locator("#chart .shapelayer path").count() >= 3, "truth, label and threshold"
    shot(page, "explorer-overlay-hook")


def test_wide_views_use_the_summary_and_keep_the_shape(live_server) -> None:
    """Server side, no browser: a wide view of the 3M series reads no chunk once the summary is built, and draws
    each pixel's extremes as well as MinMaxLTTB on every raw point does."""
    database = live_server.database
    chunk_reads = []

    def count(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if "FROM series_chunk" in statement:
            chunk_reads.append(statement)

    with database.session_scope() as session:
        series = service.get_series(session, live_server.series["walk3m"])
        raw = service.read_values(session, series)[:, 0].astype(np.float64)
        service.series_view(session, series, 0, None, 1200, None)  # builds the summary if no test did
        event.listen(database.engine, "before_cursor_execute", count)
        try:
            views = {
                (a, b): service.series_view(session, series, a, b, 1200, None)
                for a, b in [(0, BIG_POINTS), (123_456, 2_345_678), (1_000_000, 1_400_000)]
            }
        finally:
            event.remove(database.engine, "before_cursor_execute", count)
    assert chunk_reads == [], "wide views come from the cached summary"
    for (a, b), view in views.items():
        i = np.array(view.channels[0]["i"])
        y = np.array(view.channels[0]["y"], dtype=np.float64)
        assert len(i) == 2_400 and np.all(np.diff(i) > 0) and a <= i[0] and i[-1] < b
        assert np.allclose(y, raw[i], rtol=1e-6), "every drawn point is a real point"
        reference = service.downsample_indices(raw[a:b], 2_400) + a
        edges = np.linspace(a, b, 1201).astype(np.int64)
        span = np.ptp(raw[a:b])

        def envelope_error(
            idx: np.ndarray, edges: np.ndarray = edges, a: int = a, b: int = b, span: float = span
        ) -> float:
            pixel = np.searchsorted(edges, idx, side="right") - 1
            top, bottom = np.full(1200, -np.inf), np.full(1200, np.inf)
            np.maximum.at(top, pixel, raw[idx])
            np.minimum.at(bottom, pixel, raw[idx])
            true_top = np.maximum.reduceat(raw[a:b], edges[:-1] - a)
            true_bottom = np.minimum.reduceat(raw[a:b], edges[:-1] - a)
            return float(np.mean(np.maximum(true_top - top, bottom - true_bottom)) / span)

        assert envelope_error(i) <= envelope_error(reference) + 0.002
