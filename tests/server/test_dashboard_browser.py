"""The dashboard in headless Chromium (Debian's package, driven by Playwright) against a real
`qrng serve`: it loads cleanly, draws live charts that follow the pool, fits a phone, works
from the keyboard, asks for a key under required auth and says when the server is gone.

Screenshots go to ``$QRNG_TEST_ARTIFACTS/screenshots`` (default ``<repo>/artifacts``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from quantumrng.config import load_settings
from quantumrng.server.keys import open_key_store
from tests.server.process import Server, run_server
from tests.tools import debian_program

playwright_api = pytest.importorskip("playwright.sync_api")

REPO = Path(__file__).resolve().parents[2]
WAIT_MS = 20_000  # longest wait for the page to show what the server changed
SETTINGS = {
    "pool_low_water": "16",
    "pool_high_water": "64",
    "allow_uncredited_raw": "true",
    "dashboard_battery_seconds": "10",
    "beacon_period": "1",
}
WIDE = {"width": 1366, "height": 900}
NARROW = {"width": 375, "height": 740}


def screenshot_dir() -> Path:
    root = Path(os.environ.get("QRNG_TEST_ARTIFACTS") or REPO / "artifacts")
    path = root / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = debian_program("chromium", "chromium")
    with playwright_api.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_server(tmp_path_factory.mktemp("dashboard"), settings=SETTINGS) as running:
        yield running


class Watched:
    """A page with every console error, page error, failed request and error status kept."""

    def __init__(self, browser: Any, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        page = self.page
        page.on(
            "console",
            lambda m: (
                self.problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        page.on(
            "response",
            lambda r: self.problems.append(f"{r.status}: {r.url}") if r.status >= 400 else None,
        )

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def wide(browser: Any) -> Iterator[Watched]:
    watched = Watched(browser, WIDE)
    yield watched
    watched.close()


@pytest.fixture
def narrow(browser: Any) -> Iterator[Watched]:
    watched = Watched(browser, NARROW)
    yield watched
    watched.close()


def _open(w: Watched, server: Server, path: str = "/") -> Any:
    page = w.page
    page.goto(server.base_url + path)
    page.wait_for_function(
        "() => /^[0-9,]+ blocks$/.test(document.getElementById('t-pool').textContent)"
        " && Number(document.getElementById('chart-pool').dataset.points) >= 2",
        timeout=WAIT_MS,
    )
    return page


_PAINTED = """(name) => {
  const canvas = document.querySelector('#chart-' + name + ' canvas');
  if (!canvas || canvas.width === 0) return 0;
  const px = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < px.length; i += 4) {
    const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
    if (a > 200 && b > 150 && r < 120 && Math.abs(g - 99) < 60) n += 1;  // the series blue
  }
  return n;
}"""


def _pool_tile(page: Any) -> int:
    return int(page.text_content("#t-pool").split()[0].replace(",", ""))


def test_the_page_loads_cleanly_and_the_charts_follow_the_pool(
    server: Server, wide: Watched
) -> None:
    page = _open(wide, server)
    assert page.evaluate(_PAINTED, "pool") > 50, "the pool chart draws no level line"
    page.wait_for_function(
        "() => Number(document.getElementById('chart-bias').dataset.points) >= 8", timeout=WAIT_MS
    )
    assert page.evaluate(_PAINTED, "entropy") > 50, "the min-entropy chart draws no bars"
    assert page.text_content("#t-source") == "OK"
    assert page.text_content("#overall") in ("Healthy", "Pool below low water")
    assert "getrandom" in page.text_content("#harvests")
    page.wait_for_function(
        "() => /pulse [0-9]/.test(document.getElementById('beacon-facts').textContent)"
        " && /size [0-9]/.test(document.getElementById('log-facts').textContent)",
        timeout=WAIT_MS,
    )
    before = _pool_tile(page)
    assert before > 30
    points = int(page.get_attribute("#chart-pool", "data-points") or 0)
    taken = before - 20  # stays above the low-water mark: the harvester leaves it there
    r = httpx.get(f"{server.base_url}/api/v2/bytes", params={"n": taken * 64, "mode": "raw"})
    assert r.status_code == 200, r.text
    page.wait_for_function(
        f"() => Number(document.getElementById('chart-pool').dataset.last) <= {before - taken}"
        f" && Number(document.getElementById('chart-pool').dataset.points) > {points}",
        timeout=WAIT_MS,
    )
    assert _pool_tile(page) <= before - taken
    page.wait_for_function(
        "() => Number(document.getElementById('chart-rates').dataset.points) > 2 &&"
        " !/^0 B\\/s$/.test(document.getElementById('t-bytes').textContent) ||"
        " /raw [1-9]/.test(document.getElementById('t-bytes-sub').textContent)",
        timeout=WAIT_MS,
    )
    page.screenshot(path=str(screenshot_dir() / "dashboard-wide.png"), full_page=True)
    assert wide.problems == []


def test_the_quality_page_shows_the_battery_with_p_values(server: Server, wide: Watched) -> None:
    page = _open(wide, server, "/#quality")
    assert page.is_visible("#quality") and not page.is_visible("#live")
    page.wait_for_function(
        "() => /passed, [0-9]+ failed/"
        ".test(document.getElementById('battery-summary').textContent)",
        timeout=60_000,
    )
    rows = page.locator("#battery tbody tr")
    assert rows.count() >= 10
    assert re.fullmatch(r"0\.[0-9]{6}|1\.000000", rows.first.locator("td").nth(3).inner_text())
    assert "earns no credit" in page.text_content("#assess-progress")
    page.screenshot(path=str(screenshot_dir() / "dashboard-quality.png"), full_page=True)
    assert wide.problems == []


def test_a_phone_gets_one_column_and_no_horizontal_scroll(server: Server, narrow: Watched) -> None:
    page = _open(narrow, server)
    scroll = page.evaluate(
        "() => [document.scrollingElement.scrollWidth, document.scrollingElement.clientWidth]"
    )
    assert scroll[0] <= scroll[1], scroll
    lefts = page.evaluate(
        "() => [...document.querySelectorAll('#live .card, #live .tile')]"
        ".map(c => c.getBoundingClientRect().left)"
    )
    assert len(lefts) >= 14 and len(set(lefts)) == 1, lefts  # one column
    widths = page.evaluate(
        "() => [...document.querySelectorAll('.chart canvas')]"
        ".map(c => c.getBoundingClientRect().right)"
    )
    assert widths and max(widths) <= NARROW["width"], widths
    page.screenshot(path=str(screenshot_dir() / "dashboard-narrow.png"), full_page=True)
    assert narrow.problems == []


def test_the_keyboard_reaches_every_control(server: Server, wide: Watched) -> None:
    page = _open(wide, server)
    reached: list[str] = []
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement === document.body"):
            break  # past the last control
        reached.append(page.evaluate("() => document.activeElement.textContent.trim()"))
        outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", f"no visible focus on {reached[-1]!r}"
    assert {"Skip to content", "Live", "Quality", "API docs", "Pause updates"} <= set(reached)
    page.focus("#tab-quality")
    page.keyboard.press("Enter")
    page.wait_for_selector("#quality", state="visible")
    assert page.get_attribute("#tab-quality", "aria-current") == "page"
    page.focus("#pause")
    page.keyboard.press("Space")
    assert page.get_attribute("#pause", "aria-pressed") == "true"
    assert page.text_content("#pause") == "Resume updates"
    assert page.get_attribute("#overall", "aria-live") == "polite"
    assert page.get_attribute("#banner", "role") == "alert"
    assert wide.problems == []


def test_under_required_auth_the_page_asks_for_an_admin_key_then_says_when_the_server_is_gone(
    tmp_path: Path, wide: Watched
) -> None:
    settings = load_settings(overrides={"data_dir": tmp_path / "data"}, environ={})
    keys = open_key_store(settings)
    admin = keys.create("ops", {"admin"}, None, None)[0]
    drbg = keys.create("app", {"drbg"}, None, None)[0]
    with run_server(tmp_path, "--require-auth", settings=SETTINGS) as server:
        page = wide.page
        page.goto(server.base_url + "/")
        page.wait_for_selector("#auth", state="visible")
        assert page.is_hidden("#main")
        assert page.evaluate("() => document.activeElement.id") == "key"
        page.fill("#key", drbg)
        page.keyboard.press("Enter")
        page.wait_for_function(
            "() => /admin scope/.test(document.getElementById('auth-error').textContent)",
            timeout=WAIT_MS,
        )
        assert page.is_hidden("#main")
        page.fill("#key", admin)
        page.click("#auth button[type=submit]")
        page.wait_for_function(
            "() => /^[0-9,]+ blocks$/.test(document.getElementById('t-pool').textContent)",
            timeout=WAIT_MS,
        )
        assert page.is_hidden("#auth") and page.is_visible("#forget")
        assert page.evaluate("() => sessionStorage.length") == 1
        wide.problems = [p for p in wide.problems if not re.search(r"\b40[13]\b", p)]
        assert wide.problems == []
        server.proc.terminate()
        server.proc.wait(20)
        stopped = time.monotonic()
        page.wait_for_selector("#banner", state="visible", timeout=WAIT_MS)
        assert time.monotonic() - stopped < 10
        banner = page.text_content("#banner") or ""
        assert re.match(r"Server unreachable since \d\d:\d\d:\d\d", banner), banner
        assert page.text_content("#overall") == "Offline"
        page.screenshot(path=str(screenshot_dir() / "dashboard-down.png"), full_page=True)


def test_the_page_recovers_by_itself_when_the_server_answers_again(
    server: Server, wide: Watched
) -> None:
    page = _open(wide, server)
    page.route("**/api/v2/dashboard*", lambda route: route.abort())
    page.wait_for_selector("#banner", state="visible", timeout=WAIT_MS)
    page.unroute("**/api/v2/dashboard*")
    page.wait_for_selector("#banner", state="hidden", timeout=WAIT_MS)
    page.wait_for_function(
        "() => document.getElementById('overall').textContent !== 'Offline'", timeout=WAIT_MS
    )
