"""The docs pages people open, in a real Chromium (Playwright, the Debian `chromium`), served by a
real uvicorn: every route listed, "Try it out" on /predict answered, nothing fetched off-machine.

`BOSTON_DOCS_SCREENSHOT=docs/images/api-docs.png pytest tests/api/test_docs_browser.py` also
saves the screenshot docs/api.md shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, Route

from tests.conftest import running_api

LOCAL = ("http://127.0.0.1:", "data:", "blob:")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.conftest import export_tiny_model

    folder = tmp_path_factory.mktemp("docs")
    export_tiny_model(folder / "models")
    with running_api(folder / "models", folder / "log.jsonl") as url:
        yield url


def open_page(browser: Browser, url: str) -> tuple[Page, list[str]]:
    """`url` in a new page, with every request off this machine refused and recorded."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    fetched: list[str] = []

    def local_only(route: Route, request: Request) -> None:
        if request.url.startswith(LOCAL):
            route.continue_()
        else:
            fetched.append(request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(url, wait_until="networkidle")
    return page, fetched


def operations(url: str) -> set[tuple[str, str]]:
    document = httpx.get(f"{url}/openapi.json").json()
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


@pytest.mark.e2e
def test_swagger_ui_lists_every_route_and_runs_predict(browser: Browser, served: str) -> None:
    page, fetched = open_page(browser, f"{served}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    assert "Unable to render this definition" not in page.content()
    assert page.locator(".errors-wrapper").count() == 0
    listed = {
        (
            block.locator(".opblock-summary-method").inner_text().strip(),
            block.locator(".opblock-summary-path").get_attribute("data-path"),
        )
        for block in page.locator(".opblock").all()
    }
    assert listed == operations(served)

    predict = page.locator(".opblock-post", has=page.locator('[data-path="/predict"]')).first
    predict.locator(".opblock-summary").click()
    predict.locator(".try-out__btn").click()
    body = predict.locator("textarea.body-param__text")
    assert '"CRIM"' in body.input_value()  # the card's example, filled in
    predict.locator("button.execute").click()
    status = predict.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for(timeout=30_000)
    assert status.inner_text().strip() == "200"
    answer = predict.locator(
        ".live-responses-table tbody .response-col_description"
    ).first.inner_text()
    assert '"prediction"' in answer and '"model_version"' in answer
    if screenshot := os.environ.get("BOSTON_DOCS_SCREENSHOT"):
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        # the operation from its header down to the live answer: the example sent, the curl
        # line, the 200 and its body (the documented responses below it are left out)
        page.evaluate("window.scrollTo(0, 0)")  # so the boxes below are page coordinates
        top = predict.bounding_box()
        live = predict.locator(".live-responses-table").first.bounding_box()
        assert top is not None and live is not None
        clip = {
            "x": top["x"],
            "y": top["y"],
            "width": top["width"],
            "height": live["y"] + live["height"] - top["y"],
        }
        page.screenshot(path=screenshot, full_page=True, clip=clip, animations="disabled")  # type: ignore[arg-type]
    assert fetched == []
    page.close()


@pytest.mark.e2e
def test_redoc_lists_every_route_offline(browser: Browser, served: str) -> None:
    page, fetched = open_page(browser, f"{served}/redoc")
    page.wait_for_selector("[data-section-id^='operation/']", timeout=30_000)
    # ReDoc shows a document it cannot read as a "Something went wrong" box instead
    assert "Something went wrong" not in page.content()
    # ReDoc names each operation's section after its operationId, and shows method and path in it
    document = httpx.get(f"{served}/openapi.json").json()
    for path, item in document["paths"].items():
        for method, operation in item.items():
            section = page.locator(f"[data-section-id='operation/{operation['operationId']}']")
            assert section.count() == 1, (method, path)
            assert method in (section.locator("span.http-verb").first.text_content() or "").lower()
            assert path in (section.text_content() or "")
    assert fetched == []
    page.close()


@pytest.mark.e2e
def test_swagger_ui_authorises_once_and_then_runs_predict(browser: Browser, tmp_path: Path) -> None:
    from tests.conftest import export_tiny_model

    export_tiny_model(tmp_path / "models")
    with running_api(tmp_path / "models", tmp_path / "log.jsonl", api_key="docs-key") as url:
        page, fetched = open_page(browser, f"{url}/docs")
        page.wait_for_selector(".opblock", timeout=30_000)
        predict = page.locator(".opblock-post", has=page.locator('[data-path="/predict"]')).first
        assert predict.locator(".authorization__btn").count() == 1  # the route shows its lock

        predict.locator(".opblock-summary").click()
        predict.locator(".try-out__btn").click()

        def run_predict() -> str:
            predict.locator("button.execute").click()
            status = predict.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for(timeout=30_000)
            answer = status.inner_text().strip()
            predict.locator("button.btn-clear").click()  # so the next answer is a fresh one
            status.wait_for(state="detached", timeout=30_000)
            return answer

        assert run_predict() == "401"  # not authorised yet: the key is required
        page.locator("button.authorize").first.click()  # Swagger UI's Authorize button
        dialog = page.locator(".modal-ux")
        dialog.locator("input[type=text], input[type=password]").first.fill("docs-key")
        dialog.locator("button.authorize").click()
        dialog.locator("button.btn-done, button.close-modal").first.click()
        assert run_predict() == "200"
        assert fetched == []
        page.close()
