"""The drawing page in headless Chromium, drawn on with real pointer events: against mnist_style, and end to end."""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from service.client.images import mnist_style
from service.rest import CSP
from tests.conftest import REPO, DefaultRun, free_port, wait_until
from tests.service.certificates import make_certificates
from tests.service.conftest import MODEL, BackgroundService, Registry, config_for, set_alias
from tests.service.page_strokes import BAR, DOT, HATCH, OFF_EDGE, SEVEN, THREE, Stroke

try:
    from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright
except ImportError:
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)

CHROMIUM = Path("/usr/bin/chromium")  # Debian's; Playwright's own browser download is not reachable
# Without the background-networking flags Chromium keeps calling home, which a closed network turns into noise.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE = REPO / "service" / "page"
TOKEN = "page-test-token"
# The browser's 28×28 against mnist_style on the same canvas pixels, in grey levels: page.js follows Pillow
# 13's LANCZOS in its own integer arithmetic and pass order, and numpy's float32 steps, so the images are
# equal. Measured on the six drawings below and 40 random images: max 0, mean 0.
PARITY_MAX, PARITY_MEAN = 0, 0.0
# PAGE_SCREENSHOT=docs/page.png: the page after drawing a 3 is saved there (relative to the checkout).
SCREENSHOT = os.environ.get("PAGE_SCREENSHOT", "")
ANSWER_MS = 15_000  # how long the page may take to show an answer on a busy machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page, and what it did: requests to other origins, console errors, and each infer request's body."""

    page: Page
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def assert_clean(self, expected_errors: str = "") -> None:
        """No other origin asked, no CSP violation nor script error; other console errors only if `expected_errors`."""
        assert self.foreign == []
        assert [e for e in self.errors if "Content Security Policy" in e] == []
        assert [e for e in self.errors if not expected_errors or expected_errors not in e] == []


@contextmanager
def opened(browser: Browser, origin: str, token: str = "", **options: Any) -> Iterator[Watched]:
    """The page at origin/ in a fresh context (with Playwright's context `options`), served under the
    service's CSP; with `token` already in the tab's sessionStorage, as after a person entered it there."""
    context = browser.new_context(viewport={"width": 760, "height": 620}, **options)
    if token:
        context.add_init_script(f"sessionStorage.setItem('mnist37-token', {json.dumps(token)})")
    watched = Watched(context.new_page())

    def requested(request: Request) -> None:
        if not request.url.startswith(f"{origin}/"):
            watched.foreign.append(request.url)
        elif request.url.endswith("/infer"):
            watched.sent.append(request.post_data_json or {})

    def logged(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    watched.page.on("request", requested)
    watched.page.on("console", logged)
    watched.page.on("pageerror", lambda e: watched.errors.append(f"uncaught: {e}"))
    try:
        response = watched.page.goto(f"{origin}/")
        assert response is not None and response.headers["content-security-policy"] == CSP
        yield watched
    finally:
        context.close()


def on_pad(page: Page, stroke: Stroke) -> Stroke:
    """(x, y) points in [0, 1] of the drawing pad → the page's CSS pixels."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    return [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]


def draw(page: Page, strokes: list[Stroke]) -> None:
    """Each stroke as a person draws it: press, move through its points (several events each), lift; then
    wait until the answer to the finished drawing is shown."""
    for stroke in strokes:
        points = on_pad(page, stroke)
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=4)
        page.mouse.up()
    expect(page.locator("#result")).to_have_attribute("aria-busy", "false", timeout=ANSWER_MS)


def redraw(page: Page, strokes: list[Stroke]) -> dict[str, str]:
    """Clear, draw, and read the answer's fields off the page."""
    page.click("#clear")
    draw(page, strokes)
    fields = ("digit", "p-three", "verdict", "version", "status")
    return {name: page.text_content(f"#{name}") or "" for name in fields}


def canvas_pixels(page: Page, selector: str) -> np.ndarray:
    """A canvas's pixels as the page reads them (getImageData): (H, W, 4) uint8 RGBA."""
    width, height, data = page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector);
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
            let bytes = "";
            for (const byte of pixels.data) bytes += String.fromCharCode(byte);
            return [pixels.width, pixels.height, btoa(bytes)];
        }""",
        selector,
    )
    return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)


# --- The page's own preprocessing, against a stand-in server ---------------------------------------


class StandIn(BaseHTTPRequestHandler):
    """The page's files as the service serves them, and a fixed answer: isolates the browser's pixels."""

    index = (PAGE / "index.html").read_text().replace("{{MODEL_NAME}}", MODEL).encode()
    answer = json.dumps(
        {
            "model_name": MODEL,
            "model_version": "9",
            "outputs": [
                {"name": "digit", "datatype": "INT32", "shape": [1], "data": [3]},
                {"name": "p_three", "datatype": "FP32", "shape": [1], "data": [0.9]},
            ],
        }
    ).encode()
    metadata = json.dumps({"name": MODEL, "versions": ["9"], "parameters": {"ood_threshold": None}}).encode()

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(self.index, "text/html")
        elif self.path in ("/page/page.js", "/page/page.css"):
            kind = "text/javascript" if self.path.endswith(".js") else "text/css"
            self._send((PAGE / self.path.removeprefix("/page/")).read_bytes(), kind)
        elif self.path == f"/v2/models/{MODEL}":
            self._send(self.metadata, "application/json")
        else:
            self._send(b'{"error": "no such route"}', "application/json", 404)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send(self.answer, "application/json")

    def _send(self, body: bytes, kind: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests read what the browser saw, not the server's log


@pytest.fixture(scope="module")
def stand_in() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    thread = threading.Thread(target=server.serve_forever, name="page-stand-in", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_page_sends_what_the_cli_client_makes_of_the_same_drawing(browser: Browser, stand_in: str) -> None:
    drawings = {"three": THREE, "seven": SEVEN, "hatch": HATCH, "bar": BAR, "dot": DOT, "off the edge": OFF_EDGE}
    with opened(browser, stand_in) as watched:
        for name, strokes in drawings.items():
            redraw(watched.page, strokes)
            rgba = canvas_pixels(watched.page, "#pad")
            expected = mnist_style(np.asarray(Image.fromarray(rgba, "RGBA").convert("L"))).astype(int)
            tensor = watched.sent[-1]["inputs"][0]
            assert (tensor["datatype"], tensor["shape"]) == ("UINT8", [1, 784])
            difference = np.abs(np.array(tensor["data"]) - expected)
            assert difference.max() <= PARITY_MAX and difference.mean() <= PARITY_MEAN, name
            shown = canvas_pixels(watched.page, "#seen")[..., 0].reshape(784)
            assert np.array_equal(shown, tensor["data"]), f"{name}: #seen is not what was sent"
        watched.assert_clean()


def test_the_page_resizes_and_centres_any_image_as_mnist_style_does(browser: Browser, stand_in: str) -> None:
    """Gray images of many sizes, both polarities, ink of any level: exercises each branch of mnist_style."""
    rng = np.random.default_rng(0)
    with opened(browser, stand_in) as watched:
        for case in range(40):
            height, width = (int(n) for n in rng.integers(8, 160, 2))
            gray = np.full((height, width), rng.integers(0, 256), np.uint8)
            top, left = rng.integers(0, height), rng.integers(0, width)
            bottom, right = rng.integers(top + 1, height + 1), rng.integers(left + 1, width + 1)
            gray[top:bottom, left:right] = rng.integers(0, 256, (bottom - top, right - left))
            rgba = np.dstack([gray, gray, gray, np.full_like(gray, 255)])
            made = watched.page.evaluate(
                """([width, height, data]) => {
                    const rgba = Uint8ClampedArray.from(atob(data), (c) => c.charCodeAt(0));
                    return Array.from(window.mnist37.mnistStyle(new ImageData(rgba, width, height)));
                }""",
                [width, height, base64.b64encode(rgba.tobytes()).decode()],
            )
            expected = mnist_style(gray)
            assert np.array_equal(np.array(made, np.uint8), expected), f"case {case}: {height}×{width}"
        watched.assert_clean()


def test_the_page_answers_while_the_pen_is_down_and_again_once_it_lifts(browser: Browser, stand_in: str) -> None:
    with opened(browser, stand_in) as watched:
        page, (first, *rest) = watched.page, on_pad(watched.page, THREE[0])
        page.mouse.move(*first)
        page.mouse.down()
        with page.expect_request(lambda r: r.url.endswith("/infer")):
            page.mouse.move(*rest[0], steps=4)
        expect(page.locator("#version")).to_have_text("9")  # the stand-in's answer, the pen still down
        for point in rest[1:]:
            page.mouse.move(*point, steps=4)
        page.mouse.up()
        expect(page.locator("#result")).to_have_attribute("aria-busy", "false", timeout=ANSWER_MS)
        final = page.evaluate(
            """() => {
                const pad = document.getElementById("pad");
                const pixels = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height);
                return Array.from(window.mnist37.mnistStyle(pixels));
            }"""
        )
        assert len(watched.sent) >= 2 and watched.sent[-1]["inputs"][0]["data"] == final
        watched.assert_clean()


def test_every_control_is_labelled_and_reachable_by_keyboard(browser: Browser, stand_in: str) -> None:
    with opened(browser, stand_in) as watched:
        page = watched.page
        expect(page.get_by_role("img", name="Drawing pad")).to_have_id("pad")
        expect(page.get_by_role("button", name="Clear the drawing")).to_have_id("clear")
        expect(page.get_by_label("Access token")).to_have_id("token")
        focused = []
        for _ in range(3):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.id"))
        assert focused == ["pad", "clear", "token"]
        draw(page, THREE)
        page.focus("#pad")
        page.keyboard.press("Escape")  # clears, as the pad's label says
        expect(page.locator("#digit")).to_have_text("–")
        assert canvas_pixels(page, "#pad")[..., :3].min() == 255  # all paper again
        expect(page.locator("#pad")).to_have_css("touch-action", "none")
        watched.assert_clean()


# --- End to end: the real service over HTTP, the default recipe's CNN and the registry's MLPs -------


def http_ready(origin: str, tls: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(f"{origin}/v2/health/ready", timeout=2, context=tls) as r:
            return r.status == 200
    except OSError:
        return False


@contextmanager
def serving(uri: str, ca: Path | None = None, **overrides: object) -> Iterator[tuple[BackgroundService, str]]:
    """The real service on free ports, its HTTP side ready; and the page's origin (https when `ca`
    signed the service's certificate)."""
    service = BackgroundService(config_for(uri, http_port=free_port(), **overrides))  # 0 turns HTTP off
    service.start()
    origin = f"{'https' if ca else 'http'}://127.0.0.1:{service.http_port}"
    tls = ssl.create_default_context(cafile=ca) if ca else None
    try:
        wait_until(lambda: http_ready(origin, tls), 60, f"the service ready at {origin}")
        yield service, origin
    finally:
        service.shutdown(grace=1)


@pytest.fixture(scope="module")
def champion(default_run: DefaultRun, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The default recipe's version 1 (a CNN that can say neither) served with a token; the page's origin."""
    assert default_run.returncode == 0, default_run.stderr[-2000:]
    token_file = tmp_path_factory.mktemp("page-token") / "token"
    token_file.write_text(TOKEN)
    with serving(default_run.uri, token_file=str(token_file)) as (_, origin):
        yield origin


@pytest.mark.slow
def test_drawn_threes_and_sevens_read_as_such_with_the_serving_version(browser: Browser, champion: str) -> None:
    with opened(browser, champion, TOKEN) as watched:
        three = redraw(watched.page, THREE)
        if SCREENSHOT:
            watched.page.screenshot(path=REPO / SCREENSHOT)
        seven = redraw(watched.page, SEVEN)
        assert (three["digit"], three["version"], three["status"]) == ("3", "1", ""), three
        assert float(three["p-three"]) > 0.5 and "Looks like a 3" in three["verdict"], three
        assert (seven["digit"], seven["version"], seven["status"]) == ("7", "1", ""), seven
        assert float(seven["p-three"]) < 0.5 and "Looks like a 7" in seven["verdict"], seven
        watched.assert_clean()


@pytest.mark.slow
def test_a_cross_hatch_reads_as_neither_against_the_versions_threshold(browser: Browser, champion: str) -> None:
    with opened(browser, champion, TOKEN) as watched:
        hatch = redraw(watched.page, HATCH)
        assert "neither 3 nor 7" in hatch["verdict"] and "threshold" in hatch["verdict"], hatch
        assert hatch["version"] == "1"
        expect(watched.page.locator("#result")).to_have_class("abstained")
        watched.assert_clean()


@pytest.mark.slow
def test_without_the_token_the_page_asks_for_it_and_answers_once_given(browser: Browser, champion: str) -> None:
    with opened(browser, champion) as watched:
        refused = redraw(watched.page, THREE)
        assert "token" in refused["status"] and refused["version"] == "–", refused
        watched.page.fill("#token", TOKEN)  # the same drawing is asked again with it
        expect(watched.page.locator("#version")).to_have_text("1", timeout=ANSWER_MS)
        expect(watched.page.locator("#status")).to_have_text("")
        watched.assert_clean(expected_errors="status of 401")  # Chromium logs each refused fetch


@pytest.mark.slow
def test_the_page_shows_the_new_version_once_the_alias_moves(browser: Browser, registry: Registry) -> None:
    set_alias(registry.uri, registry.good)
    try:
        with serving(registry.uri) as (service, origin), opened(browser, origin) as watched:
            before = redraw(watched.page, THREE)
            set_alias(registry.uri, registry.other_good)
            wait_until(lambda: getattr(service.follower.current(), "version", None) == registry.other_good, 30)
            after = redraw(watched.page, THREE)
            assert (before["version"], after["version"]) == (registry.good, registry.other_good)
            assert before["digit"] in ("3", "7") and after["digit"] in ("3", "7")
            watched.assert_clean()
    finally:
        set_alias(registry.uri, registry.good)


@pytest.mark.slow
def test_the_page_answers_over_tls_with_the_token(browser: Browser, registry: Registry, tmp_path: Path) -> None:
    """The page and its infer calls over HTTPS with the bearer token. The service's certificate is checked
    against the test CA by the readiness probe; Chromium, which cannot be given a test CA here, is told
    to accept any certificate."""
    certs = make_certificates(tmp_path)
    (tmp_path / "token").write_text(TOKEN)
    tls = {"tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key), "token_file": str(tmp_path / "token")}
    set_alias(registry.uri, registry.good)
    with (
        serving(registry.uri, ca=certs.ca, **tls) as (_, origin),
        opened(browser, origin, TOKEN, ignore_https_errors=True) as watched,
    ):
        assert origin.startswith("https://")
        assert watched.page.evaluate("window.isSecureContext && location.protocol") == "https:"
        three = redraw(watched.page, THREE)
        assert (three["version"], three["status"]) == (registry.good, ""), three
        assert three["digit"] in ("3", "7"), three  # an MLP of the registry's: no "neither"
        assert watched.sent and all(body["inputs"][0]["name"] == "image" for body in watched.sent)
        watched.assert_clean()
