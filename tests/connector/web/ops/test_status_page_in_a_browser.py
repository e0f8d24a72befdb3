"""The status page in a real headless Chromium (Debian's chromium + chromedriver, via Selenium)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from connector.core import deadletters
from tests.support.helpers import ROOT, dt_body, queued_ids
from tests.support.samples import push_of
from tests.support.servers import gunicorn, post

pytestmark = pytest.mark.browser
TOKEN = "status-token-0123456789abcdef-test-only"
README_SCREENSHOT = ROOT / "docs" / "status-page.png"
"""Refreshed by running this test with UPDATE_SCREENSHOT=1."""


@pytest.fixture
def browser() -> Iterator[object]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("CI"):
            pytest.fail("CI must provide chromium and chromedriver (.ci/run installs them)")
        pytest.skip("chromium/chromedriver not installed (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_status_page_shows_the_pipeline_and_replays_failures(browser, redis: Redis, redis_server, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    with gunicorn(redis_server.url, METRICS_TOKEN=TOKEN) as (base, _):
        for n in range(4):
            assert post(base, dt_body(event_id=f"page{n}")).status_code == 200
        post(base, dt_body(event_id="page0"))  # a duplicate
        for n in range(3):  # three events MOOST refused for good
            push = push_of("temperature", event_id=f"dead{n}")
            deadletters.record(redis, key=f"moost-dead{n}", destination="moost", push=push, received_at=time.time(),
                               reason="http-400", status=400, excerpt="bad building", now=time.time())  # fmt: skip
        last = {"eventType": "temperature", "at": time.time(), "name": "Fridge 3"}
        redis.hset("dt:devices", "bchonod7rihjtvdmd2vg", json.dumps(last))

        authed = base.replace("http://", f"http://operator:{TOKEN}@")
        driver.get(f"{authed}/status")
        assert driver.title == "dt-connector status"
        assert driver.find_element(By.ID, "accepted").text == "4"
        assert driver.find_element(By.ID, "received").text == "5"
        assert driver.find_element(By.ID, "queue-depth").text == "4"
        [failure] = driver.find_elements(By.CSS_SELECTOR, "tr.failure")
        assert "moost" in failure.text and "http-400" in failure.text and "3" in failure.text
        assert "Fridge 3" in driver.find_element(By.CSS_SELECTOR, "tr.device").text
        shot = README_SCREENSHOT if os.environ.get("UPDATE_SCREENSHOT") else tmp_path / "status.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        failure.find_element(By.TAG_NAME, "button").click()  # replay the three
        WebDriverWait(driver, 10).until(expected_conditions.staleness_of(failure))  # the page reloaded
        WebDriverWait(driver, 10).until(lambda d: d.find_elements(By.ID, "accepted"))
        assert driver.find_elements(By.CSS_SELECTOR, "tr.failure") == []
        assert redis.zcard("dt:dead") == 0
        replayed = [i for i in queued_ids(redis) if i.startswith("moost_r") and "_moost-dead" in i]  # replay ids
        assert len(replayed) == 3


def test_replay_needs_the_form_token(redis: Redis, redis_server):
    import requests

    with gunicorn(redis_server.url, METRICS_TOKEN=TOKEN) as (base, _):
        response = requests.post(f"{base}/status/replay", data={"destination": "moost", "reason": "x", "form": "guess"},
                                 auth=("a", TOKEN), timeout=5)  # fmt: skip
        assert response.status_code == 403 and response.json()["error"] == "bad-form"
        assert requests.get(f"{base}/status", timeout=5).status_code == 401
        assert requests.get(f"{base}/status", auth=("a", "wrong"), timeout=5).status_code == 401
    with gunicorn(redis_server.url) as (base, _):  # no METRICS_TOKEN: page open, replay off
        assert requests.get(f"{base}/status", timeout=5).status_code == 200
        assert requests.post(f"{base}/status/replay", data={}, timeout=5).status_code == 403
