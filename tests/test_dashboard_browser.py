"""The dashboard in headless Debian Chromium: the power chart updates and an event created through
the API appears without a reload. GRIDFLEX_UPDATE_SCREENSHOT=1 refreshes docs/dashboard.png."""

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from gridflex.service.config import TOKEN_ENV
from tests.service_support import TOKEN, dispatch_now, free_port, serve_argv

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DOCS = Path(__file__).resolve().parents[1] / "docs"
pytestmark = pytest.mark.slow


def _serve(tmp_path, **config):
    port = free_port()
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump({"store": {"url": f"sqlite:///{tmp_path}/gf.db"}, "control": {"interval_s": 1.0},
                                   **config}))
    proc = subprocess.Popen(
        serve_argv(cfg, port),
        stdout=open(tmp_path / "serve.log", "wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, TOKEN_ENV: TOKEN},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=2).json()["t_s"]:
                break
        except httpx.HTTPError:
            time.sleep(0.3)
    return base, proc


@pytest.fixture
def service_url(tmp_path):
    base, proc = _serve(tmp_path)
    yield base
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture
def protected_url(tmp_path):
    base, proc = _serve(tmp_path, api={"protect_reads": True})
    yield base
    proc.terminate()
    proc.wait(timeout=30)


def _browser(pw):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Debian chromium not found at {CHROMIUM}; run scripts/ci/service.sh")
    return pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)


def test_dashboard_login_keeps_the_token_out_of_urls(protected_url, tmp_path):
    """With protect_reads the page asks for the token once, posts it, and reads with an HttpOnly cookie."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        page = browser.new_page()
        urls = []
        page.on("request", lambda req: urls.append(req.url))
        page.goto(protected_url)
        page.wait_for_selector("#login:not([hidden])", timeout=20000)
        page.fill("#login-token", "wrong-token-0123456789")
        page.click("#login button")
        page.wait_for_function("document.getElementById('login-error').textContent === 'wrong token'", timeout=20000)
        page.fill("#login-token", TOKEN)
        page.click("#login button")
        page.wait_for_function("document.getElementById('site-power').textContent.includes('kW')", timeout=30000)
        assert page.is_hidden("#login")
        cookies = page.context.cookies()
        assert [c["httpOnly"] for c in cookies] == [True] and TOKEN not in cookies[0]["value"]
        assert page.evaluate("document.cookie") == ""  # not readable by scripts
        browser.close()
    assert urls and not any(TOKEN in u for u in urls)


def test_dashboard_updates_live(service_url, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    screenshot = os.environ.get("GRIDFLEX_UPDATE_SCREENSHOT") == "1"
    with sync_api.sync_playwright() as pw:
        browser = _browser(pw)
        page = browser.new_page(viewport={"width": 1200, "height": 1100})
        page.goto(service_url)
        page.wait_for_function("Number(document.getElementById('power-chart').dataset.points) >= 2", timeout=20000)
        points = int(page.get_attribute("#power-chart", "data-points"))
        page.wait_for_function(
            f"Number(document.getElementById('power-chart').dataset.points) > {points}", timeout=20000
        )
        assert "kW" in page.inner_text("#site-power")
        assert page.locator("#jobs tbody tr").count() == 6

        event = dispatch_now("browser-dispatch", 30, {"power_w": 72000})
        r = httpx.post(f"{service_url}/api/v1/events", json=event, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 201
        page.wait_for_selector("#events tbody tr:has-text('browser-dispatch')", timeout=15000)
        page.wait_for_function("document.getElementById('site-state').textContent === 'under event'", timeout=15000)
        page.wait_for_function("document.getElementById('target').textContent === '72.0 kW'", timeout=15000)
        if screenshot:
            time.sleep(20)  # let the chart show the cut
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        browser.close()
    if screenshot:
        shutil.copy(tmp_path / "dashboard.png", DOCS / "dashboard.png")
