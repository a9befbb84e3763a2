"""The HTML report in a real headless Chromium: loads with no console errors, every chart drew its SVG,
the screenshot is not blank, and hostile strings from results stay text."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import skip_or_fail
from tests.test_reports import _machine, full_set, llm_record
from tritbench.reports.html import render_html
from tritbench.reports.tables import from_records

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium: installed once when we are root with apt-get, else skipped (failed under CI)."""
    exe = shutil.which("chromium")
    if exe is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], capture_output=True, timeout=600,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        exe = shutil.which("chromium")
    if exe is None:
        skip_or_fail("chromium is not installed (and we are not root with apt-get to install it)")
    return exe


def _run(exe: str, page: Path, tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{len(list(tmp.glob('profile-*')))}"
    return subprocess.run([exe, *FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def png_rows(path: Path) -> np.ndarray:
    """A PNG's pixels (8-bit RGB/RGBA, not interlaced): enough of a decoder for Chromium's screenshots."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * bpp)
    out = np.zeros((height, width * bpp), dtype=np.int32)
    prev = np.zeros(width * bpp, dtype=np.int32)
    for y in range(height):
        ftype, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if ftype == 0:
            cur = line
        elif ftype == 2:
            cur = (line + prev) & 0xFF
        elif ftype == 1:
            cur = line.reshape(width, bpp).cumsum(axis=0).reshape(-1) & 0xFF
        else:  # average and paeth depend on the pixel to the left: one pixel at a time
            cur = np.zeros_like(line)
            for x in range(width * bpp):
                a = cur[x - bpp] if x >= bpp else 0
                b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
                if ftype == 3:
                    cur[x] = (line[x] + (a + b) // 2) & 0xFF
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                    cur[x] = (line[x] + pred) & 0xFF
        out[y], prev = cur, cur
    return out.reshape(height, width, bpp)


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> tuple[Path, int]:
    """A two-machine report with every section, a hostile model name and path; (file, number of charts)."""
    tmp = tmp_path_factory.mktemp("report")
    recs = full_set() + full_set(_machine("cccccccccccccccc", "Cortex-A76", "aarch64"), scale=0.3)
    evil = llm_record("f16", model="<img src=x onerror=\"document.title='pwned'\">",
                      energy={"source": "measured:rapl/package-0", "joules": 1.0, "joules_per_token": 0.001})
    evil["model"]["path"] = "</script><script>document.title='pwned2'</script>"
    recs.append(evil)
    text = render_html(from_records(recs))
    page = tmp / "report.html"
    page.write_text(text, encoding="utf-8")
    return page, text.count('class="figure"')


def test_page_loads_without_console_errors_and_draws_every_chart(chromium, report_page, tmp_path):
    page, n_charts = report_page
    assert n_charts >= 10
    res = _run(chromium, page, tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom")
    console = [line for line in res.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    dom = res.stdout
    for i in range(n_charts):
        m = re.search(rf'<div id="fig{i}"[^>]*>(.*?)</div>\s*<script', dom, re.S)
        assert m and 'class="main-svg"' in m.group(1), f"chart fig{i} did not render"
    # Hostile strings stayed text: no element was injected and no script ran.
    assert "<title>tritbench report</title>" in dom
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom).group(1)
    assert "<img src=\"x\"" not in dom
    assert "&lt;img src=x onerror=" in dom


def test_screenshot_is_not_blank(chromium, report_page, tmp_path):
    page, _ = report_page
    shot = tmp_path / "shot.png"
    _run(chromium, page, tmp_path, f"--screenshot={shot}", "--window-size=1000,1400")
    pixels = png_rows(shot)[..., :3]
    assert pixels.shape[:2] == (1400, 1000)
    assert pixels.std() > 10  # not a blank page
    # Colour beyond greys: the bars and markers drew.
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    assert saturated.mean() > 0.005
