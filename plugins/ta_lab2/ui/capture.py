"""Screenshots of pages (the Airflow UI included) with the system's Debian Chromium, headless,
through Python Playwright; never downloads a browser. Used by the e2e test of the Warehouse
page and to refresh docs/img (docs/operations/DAILY_REFRESH.md, "Warehouse page").

Logged-in pages: pass the JWT of ``POST /auth/token``; it is set as the UI's session cookie
(``_token``) for the page's origin, which is what Airflow's login form does.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-dev-shm-usage")


def screenshot(url: str, out: Path, *, token: str | None = None, wait_for_text: str | None = None,
               frame_url_part: str | None = None, width: int = 1440, height: int = 900,
               timeout_s: float = 60.0) -> Path:
    """Open ``url`` and save a PNG of the viewport to ``out``.

    ``wait_for_text``: wait until this text is visible (in the iframe whose URL contains
    ``frame_url_part`` when given, e.g. a plugin view inside the Airflow UI)."""
    from playwright.sync_api import sync_playwright

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            if token:
                origin = "{0.scheme}://{0.netloc}".format(urlsplit(url))
                context.add_cookies([{"name": "_token", "value": token, "url": origin}])
            page = context.new_page()
            page.set_default_timeout(timeout_s * 1000)
            page.goto(url, wait_until="networkidle")
            if wait_for_text:
                if frame_url_part:
                    page.wait_for_function(
                        "part => Array.from(document.querySelectorAll('iframe')).some(f => f.src.includes(part))",
                        arg=frame_url_part)
                    frame = page.frame_locator(f"iframe[src*='{frame_url_part}']")
                    frame.get_by_text(wait_for_text).first.wait_for(state="visible")
                else:
                    page.get_by_text(wait_for_text).first.wait_for(state="visible")
            page.wait_for_timeout(500)  # let the last paint land
            page.screenshot(path=str(out))
        finally:
            browser.close()
    return out
