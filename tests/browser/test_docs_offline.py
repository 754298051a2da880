"""/docs works on an air-gapped network: Swagger UI comes from the service, not a CDN."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Route

from tests.browser.conftest import Service
from tests.browser.pages import VIEWPORT

pytestmark = pytest.mark.browser


def test_docs_assets_are_same_origin_and_load(service: Service) -> None:
    page = httpx.get(f"{service.url}/docs", timeout=10)
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)=["\']([^"\']+)["\']', page.text)
    assert any(u.endswith(".js") for u in urls) and any(u.endswith(".css") for u in urls), urls
    for url in urls:
        absolute = urljoin(f"{service.url}/docs", url)
        assert urlsplit(absolute).netloc == urlsplit(service.url).netloc, url
        assert httpx.get(absolute, timeout=10).status_code == 200, url


def test_docs_render_with_every_other_origin_blocked(browser: Browser, service: Service) -> None:
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    elsewhere: list[str] = []

    def only_the_service(route: Route) -> None:
        if route.request.url.startswith(service.url):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_service)
    page = context.new_page()
    page.goto(f"{service.url}/docs")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "medverse" in page.locator(".swagger-ui .info .title").inner_text()
    assert page.locator(".opblock-tag").count() >= 5, "the route groups are listed"
    context.close()
    assert elsewhere == [], elsewhere
