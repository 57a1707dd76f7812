"""A real browser on the served app: upload a clip, press Explain, see a playable video and the plots.

Needs Debian's ``chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python package (no
``playwright install``: we drive the system browser). In CI (``CI`` set) a missing browser is a failure;
locally the test is skipped. The app runs as ``python app.py`` in a subprocess, as on a Space, so this also
checks that the script starts offline. A screenshot is saved in pytest's tmp folder and copied to
``/tmp/app_screenshot.png``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
ITERATIONS = "20"   # typed into the Advanced settings: a real optimisation, kept short for CI
SCREENSHOT_COPY = Path("/tmp/app_screenshot.png")


@pytest.fixture(scope="module")
def chromium():
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: the browser test needs Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    return CHROMIUM


def _served_url(log: Path) -> str | None:
    """The address ``python app.py`` printed once it was serving (Gradio chose the port itself, binding it)."""
    found = re.search(r"Running on local URL:\s*(http://\S+?)/?\s*$", log.read_text(errors="replace"), re.M)
    return found.group(1) + "/" if found else None


@pytest.fixture(scope="module")
def server(chromium, tmp_path_factory):
    """``python app.py`` on 127.0.0.1; yields its URL. No port is chosen here: Gradio takes the first one it can
    bind (from 7860), so another process taking "our" free port between a check and the bind cannot happen."""
    tmp = tmp_path_factory.mktemp("served")
    env = dict(os.environ, GRADIO_SERVER_NAME="127.0.0.1", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", VAE_TMP=str(tmp / "requests"),
               GRADIO_EXAMPLES_CACHE=str(tmp / "examples_cache"), GRADIO_TEMP_DIR=str(tmp / "gradio"),
               VAE_CURVE_STEPS="32")
    env.pop("PORT", None)
    env.pop("GRADIO_SERVER_PORT", None)
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-u", "app.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 600  # a hang guard, not a speed limit: importing torch + gradio under load is slow
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"python app.py exited with {proc.returncode}:\n{(tmp / 'server.log').read_text()[-3000:]}")
            url = _served_url(tmp / "server.log")
            if url:
                try:
                    urllib.request.urlopen(url, timeout=30).close()
                    break
                except OSError:
                    pass
            if time.time() > deadline:
                pytest.fail(f"python app.py never answered:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from attribution.video import write_video
    from model_zoo.toy import generate
    path = tmp_path_factory.mktemp("clip") / "toy_clip.mp4"
    write_video(generate(1, seed=11)[0].frames, path, fps=8, crf=12)
    return str(path)


def test_upload_explain_and_watch(server, chromium, clip, tmp_path):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server, wait_until="domcontentloaded")
            page.locator("input[type=file]").first.wait_for(state="attached", timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(clip)
            page.locator("video").first.wait_for(state="attached", timeout=30_000)  # the upload is shown

            page.get_by_text("Advanced settings").click()
            iterations = page.get_by_role("spinbutton", name="Iterations", exact=True)
            iterations.fill(ITERATIONS)
            iterations.press("Tab")
            t0 = time.time()
            page.get_by_role("button", name="Explain", exact=True).click()

            video = page.locator("video[src*='overlay.mp4']")
            video.wait_for(state="attached", timeout=120_000)
            page.wait_for_function("""() => { const v = document.querySelector("video[src*='overlay.mp4']");
                                             return v && v.readyState >= 2; }""", timeout=30_000)
            seconds = time.time() - t0
            state = video.evaluate("v => ({ready: v.readyState, duration: v.duration, width: v.videoWidth,"
                                   " height: v.videoHeight, error: v.error && v.error.code})")
            assert state["ready"] >= 2 and state["error"] is None, state
            assert state["duration"] > 0.5 and state["width"] > 3 * state["height"] / 2, state  # three panels

            for name in ("temporal.png", "curves.png"):
                img = page.locator(f"img[src*='{name}']")
                img.wait_for(state="visible", timeout=30_000)
                page.wait_for_function(f"""() => {{ const i = document.querySelector("img[src*='{name}']");
                                                   return i && i.complete && i.naturalWidth > 400; }}""",
                                       timeout=30_000)
            assert page.get_by_role("heading", name="The model sees").is_visible()
            assert page.locator("a[href*='.zip']").count() >= 1  # the download of everything
            page.wait_for_timeout(800)  # let the video show a frame and the layout settle for the picture
            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)
            shutil.copy(shot, SCREENSHOT_COPY)
            assert shot.stat().st_size > 50_000
            # The same request again is answered from the result cache, and the summary says so.
            page.get_by_role("button", name="Explain", exact=True).click()
            page.get_by_text("shown from the result cache").wait_for(timeout=120_000)
            assert not errors, errors
            print(f"explain in the browser: {seconds:.1f} s; screenshot {shot}")
        finally:
            browser.close()


def test_stop_a_long_job_then_run_a_short_one(server, chromium, clip):
    """Stop ends a running explanation (the engine's cancel), frees the queue, and the next request runs."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.goto(server, wait_until="domcontentloaded")
            page.locator("input[type=file]").first.wait_for(state="attached", timeout=60_000)
            page.locator("input[type=file]").first.set_input_files(clip)
            page.locator("video").first.wait_for(state="attached", timeout=30_000)
            page.get_by_text("Advanced settings").click()
            iterations = page.get_by_role("spinbutton", name="Iterations", exact=True)
            iterations.fill("1000000")          # hours on any machine: only Stop can end it
            iterations.press("Tab")
            page.get_by_role("button", name="Explain", exact=True).click()
            page.get_by_text("iterations").first.wait_for(state="visible", timeout=120_000)  # the progress bar
            page.get_by_role("button", name="Stop", exact=True).first.click()

            iterations.fill("3")
            iterations.press("Tab")
            page.get_by_role("button", name="Explain", exact=True).click()
            video = page.locator("video[src*='overlay.mp4']")
            video.wait_for(state="attached", timeout=120_000)   # would wait for hours if Stop had not worked
            assert page.get_by_role("heading", name="The model sees").is_visible()
        finally:
            browser.close()
