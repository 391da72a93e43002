"""What the web page's tests share: reading a form's CSRF token and registering through the page (no browser), and
for the real-browser tests: where Chromium is, where screenshots go, a page that records its own errors, and
axe-core's verdict on a page."""

from __future__ import annotations

import io
import os
import re
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import Harness

PASSWORD = "correct horse 1"
CHROMIUM = Path("/usr/bin/chromium")
# axe-core for tests only (never served): injected through the DevTools protocol, so the page's CSP does not apply.
AXE = Path(__file__).parent / "fixtures" / "vendor" / "axe-core" / "axe.min.js"
SERIOUS = ("serious", "critical")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def register(h: Harness, email: str = "ann@example.com") -> str:
    """Register and stay logged in; the CSRF token of the logged-in session."""
    token = csrf_of(h.client.get("/register").text)
    data = {"csrf_token": token, "name": "Ann", "email": email, "password": PASSWORD, "password_confirmation": PASSWORD}
    r = h.client.post("/register", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    return csrf_of(h.client.get("/").text)


def qc_submission(dataset: Path, levels: dict[str, float]) -> bytes:
    """A Quality Checker zip for `dataset`: each song's reference stems plus white noise at `levels` × their RMS,
    named `<song>_<stem>.wav` (a lower level scores higher)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, song in enumerate(sorted(p.name for p in dataset.iterdir() if p.is_dir())):
            for stem, level in levels.items():
                ref, rate = sf.read(dataset / song / f"{stem}.wav", dtype="int16", always_2d=True)
                noise = np.random.default_rng(i).standard_normal(ref.shape) * level * np.sqrt(np.mean(ref**2.0))
                out = io.BytesIO()
                sf.write(out, np.clip(ref + noise, -32768, 32767).astype(np.int16), rate, format="WAV")
                z.writestr(f"{song}_{stem}.wav", out.getvalue())
    return buf.getvalue()


# ---------------------------------------------------------------- real-browser tests


def screenshots(default: Path) -> Path:
    """$OPENMVSEP_SCREENSHOTS when set (CI keeps it as an artifact), else `default` (the test's temporary folder)."""
    shots = Path(os.environ.get("OPENMVSEP_SCREENSHOTS") or default)
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def watch(page) -> list[str]:
    """The page's script errors, console errors (CSP violations are reported there) and failed responses, as they
    happen; the returned list fills while the page is used."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.set_default_timeout(30_000)
    return errors


def serious_violations(page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2 A/AA and best practices), one
    line each with the elements it found them on; an empty list when there are none."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text("utf-8"))
    found, passes = page.evaluate(
        "async () => { const r = await axe.run(document); return [r.violations, r.passes.length]; }"
    )
    assert passes > 10  # axe did check the page
    return [
        f"{v['id']} ({v['impact']}): {v['help']}: {[n['target'] for n in v['nodes']][:5]}"
        for v in found
        if v["impact"] in SERIOUS
    ]


def log_in(page, base_url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(base_url + "/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base_url + "/")


def register_in_browser(page, base_url: str, email: str = "ann@example.com", shot: Path | None = None) -> None:
    """Register as Ann through the form and end up logged in on the Separate page (`shot`: a screenshot of the
    filled-in form)."""
    page.goto(base_url + "/register")
    page.get_by_label("Name").fill("Ann")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    if shot is not None:
        page.screenshot(path=str(shot), full_page=True)
    page.get_by_role("button", name="Register").click()
    page.wait_for_url(base_url + "/")
