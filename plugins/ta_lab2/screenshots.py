"""``make screenshots``: PNGs of the real Airflow UI, taken with Debian's ``chromium``.

Python ``playwright`` drives the system browser (``/usr/bin/chromium``, headless, no sandbox, no
background networking); no browser is ever downloaded. :func:`browser_page` logs in through the
UI's own form and yields the page; :func:`shoot` opens a URL, waits until the expected texts
are on the page and writes the PNG (reuse both for other pages, e.g. a plugin view).
:func:`take_screenshots` writes the operator guide's pictures: the DAG page, the grid of a run
with a failed asset, the mapped-instance list with the asset labels and the trigger form.

Run against the local Airflow of ``make airflow``::

    make screenshots                    # python -m ta_lab2.screenshots --out docs/img
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from ta_lab2.local_airflow import StandaloneAirflow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ("--no-sandbox", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync")
VIEWPORT = {"width": 1440, "height": 900}
TIMEOUT_MS = 60_000
MAPPED_TASK = "asset.bars.1d"


class ScreenshotError(RuntimeError):
    """A page did not show what it should (the message names the page and the missing text)."""


@dataclass(frozen=True)
class Shot:
    name: str
    path: Path
    url: str
    expected: tuple[str, ...]
    text: str  # the page's visible text when the picture was taken


@contextmanager
def browser_page(base_url: str, user: str, password: str, *, executable: str = CHROMIUM) -> Generator[Page]:
    """A headless system Chromium logged in to the Airflow UI through its login form."""
    from playwright.sync_api import sync_playwright

    if not Path(executable).exists():
        raise ScreenshotError(f"no browser at {executable}: install Debian's chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=list(CHROMIUM_ARGS))
        try:
            page = browser.new_page(viewport=VIEWPORT)  # type: ignore[arg-type]
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(base_url.rstrip("/") + "/")
            page.wait_for_selector("input[name=username]")
            page.fill("input[name=username]", user)
            page.fill("input[name=password]", password)
            page.click("button[type=submit]")
            page.wait_for_url(lambda url: "/auth/login" not in url)
            yield page
        finally:
            browser.close()


def shoot(page: Page, url: str, path: Path, expected: Sequence[str], *, name: str | None = None,
          action: Any = None) -> Shot:
    """Open ``url`` (then run ``action(page)``, e.g. a click), wait until every expected text is
    visible, let the page settle and write a full-page PNG."""
    page.goto(url)
    if action is not None:
        action(page)
    for text in expected:
        try:
            page.get_by_text(text, exact=False).first.wait_for(state="visible")
        except Exception as exc:
            raise ScreenshotError(f"{name or path.name}: {text!r} not shown at {url} "
                                  f"({type(exc).__name__})") from None
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(800)  # charts and the grid animate in
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=False)
    return Shot(name or path.stem, path, url, tuple(expected), page.inner_text("body"))


def failed_run(af: StandaloneAirflow) -> str | None:
    """The newest run of the DAG that ended ``failed`` (None when there is none)."""
    runs = af.get(f"/api/v2/dags/{af.dag_id}/dagRuns", order_by="-run_after", limit=50)["dag_runs"]
    return next((r["dag_run_id"] for r in runs if r["state"] == "failed"), None)


def take_screenshots(af: StandaloneAirflow, out_dir: Path, run_id: str | None = None,
                     task_id: str = MAPPED_TASK) -> list[Shot]:
    """The operator guide's four pictures of run ``run_id`` (default: the newest failed run)."""
    run_id = run_id or failed_run(af)
    if run_id is None:
        raise ScreenshotError(f"no failed run of {af.dag_id} to show: trigger one whose asset fails first")
    tis = [t for t in af.task_instances(run_id) if t["task_id"] == task_id]
    labels = sorted({str(t["rendered_map_index"]) for t in tis if t.get("rendered_map_index")})
    base, dag, run = af.base_url, af.dag_id, quote(run_id, safe="")
    user, password = af.credentials()
    shots = []
    with browser_page(base, user, password) as page:
        shots.append(shoot(page, f"{base}/dags/{dag}", out_dir / "airflow_dag.png", [dag, "Trigger"],
                           name="DAG page"))
        shots.append(shoot(page, f"{base}/dags/{dag}/runs/{run}", out_dir / "airflow_run_failed_asset.png",
                           [run_id, "Failed", "bars", "emas"], name="grid of a run with a failed asset",
                           action=_expand_groups))
        shots.append(shoot(page, f"{base}/dags/{dag}/runs/{run}/tasks/{task_id}/mapped",
                           out_dir / "airflow_mapped_instances.png", labels or [task_id],
                           name="mapped instances with their asset labels"))
        shots.append(shoot(page, f"{base}/dags/{dag}", out_dir / "airflow_trigger_form.png",
                           [f"Trigger Dag - {dag}", "Run Parameters", "targets", "bars, emas or both"],
                           name="trigger form", action=_open_trigger_form))
    return shots


def _expand_groups(page: Page) -> None:
    """Expand the grid's task groups. The grid's toolbar can take long to appear on a busy
    machine (once: not within 60 s); the page is loaded again once before giving up, and groups
    already expanded (the button then reads "Collapse all task groups") are left as they are."""
    expand = page.get_by_role("button", name="Expand all task groups").first
    either = expand.or_(page.get_by_role("button", name="Collapse all task groups").first)
    for attempt in (1, 2):
        try:
            either.first.wait_for(state="visible", timeout=TIMEOUT_MS // 2)
            break
        except Exception:  # playwright's TimeoutError: reload once, then let the caller see it
            if attempt == 2:
                raise
            page.reload()
    if expand.is_visible():
        expand.click()


def _open_trigger_form(page: Page) -> None:
    page.get_by_role("button", name="Trigger").first.click()


def main(argv: Sequence[str] | None = None) -> int:
    from ta_lab2.local_airflow import StandaloneAirflow, local_home

    parser = argparse.ArgumentParser(prog="python -m ta_lab2.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder for the PNGs (docs/img)")
    parser.add_argument("--run-id", help="the run to show (default: the newest failed run)")
    args = parser.parse_args(argv)
    af = StandaloneAirflow.attach(local_home())
    if af is None:
        print("error: no local Airflow is running: start it with `make airflow`", file=sys.stderr)
        return 2
    try:
        shots = take_screenshots(af, args.out, args.run_id)
    except ScreenshotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for shot in shots:
        print(f"{shot.path}  {shot.name}  ({shot.url})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
