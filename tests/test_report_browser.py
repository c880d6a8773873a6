"""The HTML report renders in a real browser without a network connection.

Headless Chromium (Debian package ``chromium``; ``.ci/run`` installs it) opens the report
from a ``file://`` URL with networking features off, dumps the DOM after layout and takes
a screenshot: the DOM holds every figure as a decoded image and the page is not blank.
Skipped where Chromium is absent.
"""

from __future__ import annotations

import shutil
import subprocess

import matplotlib

matplotlib.use("Agg")

import pytest
from outputs_data import agencies_estimate, agency_frame, national_estimate

from satsample.outputs.report import build_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]


def _chromium(tmp_path, *args):
    base = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-extensions", "--no-proxy-server",
            "--proxy-server=http://127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
            f"--user-data-dir={tmp_path / 'profile'}"]
    return subprocess.run(base + list(args), capture_output=True, timeout=180, check=False)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser")
    ag = agency_frame(100)
    files = build_report(agencies_estimate(0), national=national_estimate(),
                         previous=agencies_estimate(1, shift=-0.02), names=ag["name"],
                         tier=ag["tier"], html_path=out / "report.html")
    return out, files.html


def test_report_renders_offline_with_every_figure(report, tmp_path):
    _, html = report
    # every network request goes to a dead proxy: anything that needs the network fails
    res = _chromium(tmp_path, "--virtual-time-budget=5000", "--dump-dom", html.as_uri())
    dom = res.stdout.decode("utf-8", "replace")
    assert res.returncode == 0, res.stderr.decode("utf-8", "replace")[-2000:]
    assert "<h1>" in dom and "Executive summary" in dom
    assert dom.count('src="data:image/png;base64,') == 4
    assert "One-stop shop of commune COM23" in dom  # listed as not published
    assert "Not published: too few respondents (fewer than 30) (n = 26)." in dom
    # nothing in the page asks for the network
    assert "http://" not in dom and "https://" not in dom


def test_report_screenshot_is_not_blank(report, tmp_path):
    _, html = report
    shot = tmp_path / "shot.png"
    res = _chromium(tmp_path, "--window-size=1100,2600", f"--screenshot={shot}",
                    "--virtual-time-budget=5000", html.as_uri())
    assert shot.exists(), res.stderr.decode("utf-8", "replace")[-2000:]
    img = matplotlib.image.imread(shot)
    assert img.shape[0] >= 2000 and img.shape[1] >= 1000
    gray = img[..., :3].mean(axis=2)
    # text and figures: a good share of pixels are not background white
    assert (gray < 0.9).mean() > 0.03
    # the figures are painted: the dark blue of the markers and bands appears
    blue = (img[..., 2] > img[..., 0] + 0.2)
    assert blue.mean() > 0.002
