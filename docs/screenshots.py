"""Screenshots of the HTML pages for the README: a packet trace, a reachability matrix and a lab.

    .venv/bin/python docs/screenshots.py          (writes docs/images/{trace,matrix,lab}.png)

Each page comes from the installed ``calico-trace`` with ``--output html`` and is shot in
Debian's chromium, headless, driven by playwright (the system chromium as its executable: no
browser download). A console error on a page fails the script, so a broken page is never
pictured.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 1200, "height": 800}
PROGRAM = Path(sys.executable).parent / "calico-trace"      # the venv's entry point

# Scenario paths are relative to the repository (the pages quote them back).
# name -> (calico-trace arguments, what to click before the shot, so the picture shows detail)
PAGES = {
    "trace": (["packet", "-f", "scenarios/backend-from-frontend", "--from", "myns/other",
               "--to", "myns/backend", "--protocol", "tcp", "--port", "6379"],
              []),
    "matrix": (["matrix", "-f", "scenarios/calico-tiers", "--port", "6379"],
               ['a.cell[href="#pair-0-1"]']),
    "lab": (["lab", "show", "1"], []),
}


def render(argv: list[str]) -> str:
    done = subprocess.run([str(PROGRAM), *argv, "--output", "html"], capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"calico-trace {' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def main() -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (Debian: apt-get install chromium)")
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="calico-trace-shots-") as tmp, \
            sync_playwright() as playwright:
        # --no-sandbox: chromium's sandbox refuses to start as root.
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=["--no-sandbox"])
        for name, (argv, clicks) in PAGES.items():
            page_file = Path(tmp) / f"{name}.html"
            page_file.write_text(render(argv))
            page = browser.new_page(viewport=VIEWPORT)
            errors: list[str] = []
            page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error"
                    else None)
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(page_file.as_uri())
            for selector in clicks:
                page.locator(selector).click()
            if errors:
                sys.exit(f"{name}: the page logged errors: {errors}")
            out = IMAGES / f"{name}.png"
            # The viewport, cut short where the page ends (no empty band under a short page).
            bottom = page.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom)")
            height = min(VIEWPORT["height"], bottom + 16)
            page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": VIEWPORT["width"],
                                                 "height": height})
            print(f"{out.relative_to(ROOT)}: {out.stat().st_size // 1024} KB")
            page.close()
        browser.close()


if __name__ == "__main__":
    main()
