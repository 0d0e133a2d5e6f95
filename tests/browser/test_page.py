"""The ask-a-question page in a real browser: Debian's Chromium driven by Playwright.

``python -m api`` runs as its own process on localhost (English BBC and Japanese livedoor
bundles); the test types a held-out text, clicks Ask, sees the category the bundle gives it,
clicks Explain and sees highlighted words. Chromium is ``/usr/bin/chromium``
(``$CHROMIUM`` to override; ``.ci/run`` installs it with apt): Playwright's own browser
download is not used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from model import Bundle, load_bundle
from tests.integration.streaming import held_out_articles
from tests.net import free_port
from training.datasets import load_named

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where the page's screenshot goes (the README's copy lives in docs/).
SCREENSHOTS = REPO / "artifacts" / "screenshots"


def _serve(bundle_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "api", "--bundle", str(bundle_dir), "--port", str(port),
        "--reload-interval-s", "0",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.5)
        if proc.poll() is not None:
            break
    proc.kill()
    pytest.fail(f"python -m api did not become ready:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: apt-get install chromium (or set $CHROMIUM)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


def _correctly_classified(bundle: Bundle, texts: list[str], labels: list[str]) -> tuple[str, str]:
    """The first text the bundle classifies right, and its label."""
    predicted = bundle.predict_proba(texts).argmax(axis=1)
    for text, label, index in zip(texts, labels, predicted, strict=True):
        if bundle.labels[int(index)] == label:
            return text, label
    pytest.fail("the bundle classifies none of the texts right")


def _ask_and_explain(page: Page, url: str, text: str, label: str) -> None:
    page.goto(url)
    expect(page.locator("#model")).to_contain_text("held-out accuracy")
    page.get_by_label("Text or question").fill(text)
    page.get_by_role("button", name="Ask").click()
    expect(page.locator("#label")).to_have_text(label, timeout=30_000)
    expect(page.locator("#bars li")).to_have_count(3)
    expect(page.locator("#confidence")).to_contain_text("%")
    page.get_by_role("button", name="Explain").click()
    expect(page.locator("#highlighted mark").first).to_be_visible(timeout=60_000)
    assert page.locator("#weights li").count() >= 3


def test_an_english_article_is_classified_and_explained(
    browser: Browser, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)[:20]
    bundle = load_bundle(bbc_bundle)
    text, label = _correctly_classified(
        bundle, [a[1][:1500] for a in articles], [a[2] for a in articles]
    )
    proc, url = _serve(bbc_bundle, tmp_path / "api.log")
    try:
        page = browser.new_page(viewport={"width": 900, "height": 1100})
        _ask_and_explain(page, url, text, label)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "ask-the-model.png"), full_page=True)
        # Keyboard only: focus the text area, type, Ctrl+Enter asks.
        page.goto(url)
        page.keyboard.press("Tab")
        page.keyboard.type("The prime minister called an election")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#answer")).to_be_visible(timeout=30_000)
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_japanese_question_is_classified_and_explained(
    browser: Browser, livedoor_bundle: Bundle, data_dir: Path, tmp_path: Path
) -> None:
    data = load_named("livedoor", data_dir).train  # livedoor has no test split of its own
    rows = np.random.default_rng(0).choice(len(data.texts), size=60, replace=False)
    text, label = _correctly_classified(
        livedoor_bundle, [data.texts[i][:400] for i in rows], [data.labels[i] for i in rows]
    )
    proc, url = _serve(livedoor_bundle.path, tmp_path / "api.log")
    try:
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        _ask_and_explain(page, url, text, label)
        page.screenshot(path=str(SCREENSHOTS / "ask-the-model-ja.png"), full_page=True)
        answer = json.loads(
            page.evaluate(
                "async (t) => JSON.stringify(await (await fetch('/v1/classify', {method: 'POST',"
                " headers: {'content-type': 'application/json'},"
                " body: JSON.stringify({id: 'ja', text: t})})).json())",
                text,
            )
        )
        assert answer["label"] == label
    finally:
        proc.terminate()
        proc.wait(30)
