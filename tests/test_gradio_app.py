"""The Gradio demo served on 127.0.0.1 with tiny random models, driven by headless Debian Chromium (Playwright)."""
from __future__ import annotations

import os
import shutil
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ._grounding_fixtures import make_tiny_hf_grounding_dino

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("REPVIT_SCREENSHOT_DIR", "")) if os.environ.get("REPVIT_SCREENSHOT_DIR") else None
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 120_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real page with a tiny hf Grounding DINO and a small random RepViT-SAM."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (tools/setup_env.sh installs it as root)")
    from repvit_plugins.app import DemoModels, build_app, launch
    from repvit_plugins.grounding import build_detector
    from repvit_plugins.models import build_repvit_sam
    from repvit_plugins.sam import SamSegmenter

    tmp = tmp_path_factory.mktemp("app")
    detector = build_detector("hf", model=str(make_tiny_hf_grounding_dino(tmp / "gdino")), max_detections=5)
    segmenter = SamSegmenter(sam=build_repvit_sam(arch="m0_6", img_size=256))
    models = DemoModels(detector=detector, segmenter=segmenter)
    page = build_app(models, max_side=320)
    port = _free_port()
    launch(page, port=port, max_file_size="200kb", block=False)
    url = f"http://127.0.0.1:{port}/"
    rng = np.random.default_rng(0)
    photo = Path(__file__).resolve().parents[1] / "demo" / "images" / "chelsea.jpg"  # a real photograph
    big = tmp / "big.png"  # > 200 kB of incompressible pixels
    Image.fromarray(rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)).save(big)
    not_image = tmp / "notes.png"
    not_image.write_text("this is not an image")
    yield {"url": url, "photo": photo, "big": big, "not_image": not_image, "tmp": tmp, "segmenter": segmenter}
    page.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 1500})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#text-image")
    return page


def _shot(page, name: str, tmp: Path) -> Path:
    folder = SCREENSHOTS or tmp
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"gradio_{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    return path


def _upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.wait_for_selector(f"#{elem_id} img")


def test_three_modes_in_a_real_browser(server, browser):
    page = _open(browser, server["url"])
    # Text mode
    _upload(page, "text-image", server["photo"])
    page.locator("#text-prompt textarea").fill("a cat. a dog.")
    page.locator("#text-run").click()
    page.wait_for_selector("#text-output img")
    page.wait_for_function("document.querySelectorAll('#text-table tbody tr').length > 0")
    cells = [c.strip() for c in page.locator("#text-table tbody tr").first.locator("td").all_text_contents()]
    assert {"a cat", "a dog"} & set(cells), cells
    page.wait_for_selector("#text-files a")
    _shot(page, "text", server["tmp"])
    # Click mode: one point -> a mask; the embedding is reused for the second click
    page.get_by_role("tab", name="Click").click()
    _upload(page, "click-image", server["photo"])
    box = page.locator("#click-image img").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_selector("#click-output img")
    page.wait_for_function("document.querySelector('#click-note').innerText.includes('1 point')")
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.wait_for_function("document.querySelector('#click-note').innerText.includes('2 point')")
    _shot(page, "click", server["tmp"])
    # Everything mode with few points
    page.get_by_role("tab", name="Everything").click()
    _upload(page, "every-image", server["photo"])
    page.locator("#every-points input[type=number]").fill("4")
    page.locator("#every-points input[type=number]").press("Enter")
    page.locator("#every-iou input[type=number]").fill("0")
    page.locator("#every-iou input[type=number]").press("Enter")
    page.locator("#every-stability input[type=number]").fill("0")
    page.locator("#every-stability input[type=number]").press("Enter")
    page.locator("#every-run").click()
    page.wait_for_selector("#every-output img")
    page.wait_for_function("document.querySelector('#every-note').innerText.includes('segment')")
    _shot(page, "everything", server["tmp"])
    page.close()


def test_bad_uploads_show_errors_and_the_server_keeps_answering(server, browser):
    page = _open(browser, server["url"])
    page.locator("#text-image input[type=file]").set_input_files(str(server["big"]))
    page.wait_for_selector("text=/exceed|too large|maximum/i")
    page.reload()
    page.wait_for_selector("#text-image")
    page.locator("#text-image input[type=file]").set_input_files(str(server["not_image"]))
    page.locator("#text-prompt textarea").fill("a cat.")
    page.locator("#text-run").click()
    page.wait_for_selector("text=/could not be read as an image/")
    _shot(page, "error", server["tmp"])
    with urllib.request.urlopen(server["url"], timeout=30) as response:  # loopback only
        assert response.status == 200
    page.close()
