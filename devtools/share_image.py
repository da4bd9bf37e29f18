"""Renders static/img/share.png, the 1200x630 card shown when a page is
shared (og:image), from an HTML card in the site's colours, in Chromium.

    .venv/bin/python -m devtools.share_image [--name "Scrum Academy"]

Run it again after a change of name or colours, and commit the PNG.
"""

from __future__ import annotations

import argparse
from html import escape
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent.parent / "static" / "img" / "share.png"
CHROMIUM = "/usr/bin/chromium"
WIDTH, HEIGHT = 1200, 630

CARD = """<!doctype html><html><head><meta charset="utf-8"><style>
:root {{ --ink: #1d2430; --brand: #0b5cad; --brand-dark: #084a8c; --soft: #f4f6f9; }}
html, body {{ margin: 0; width: {w}px; height: {h}px; }}
body {{ font-family: "DejaVu Sans", system-ui, sans-serif; color: #fff;
  background: linear-gradient(135deg, var(--brand) 0%, var(--brand-dark) 100%);
  display: flex; flex-direction: column; justify-content: space-between;
  padding: 72px 88px; box-sizing: border-box; position: relative; overflow: hidden; }}
.ring {{ position: absolute; right: -140px; top: -140px; width: 520px; height: 520px;
  border-radius: 50%; border: 56px solid rgba(255,255,255,.09); }}
.ring.two {{ right: 120px; top: 330px; width: 260px; height: 260px; border-width: 36px; }}
.name {{ font-size: 34px; font-weight: 700; letter-spacing: .02em; display: flex;
  align-items: center; gap: 18px; }}
.mark {{ width: 46px; height: 46px; border-radius: 10px; background: #fff; color: var(--brand);
  display: grid; place-items: center; font-size: 28px; font-weight: 800; }}
h1 {{ font-size: 72px; line-height: 1.08; margin: 0; max-width: 900px; font-weight: 800; }}
p {{ font-size: 30px; margin: 0; color: rgba(255,255,255,.86); }}
.bar {{ height: 10px; width: 160px; background: #fff; border-radius: 5px; }}
</style></head><body>
<div class="ring"></div><div class="ring two"></div>
<div class="name"><span class="mark">{initial}</span>{name}</div>
<div><h1>Certified Scrum Product Owner training &amp; articles</h1></div>
<div><div class="bar"></div>
<p style="margin-top:22px">Practical product ownership, from backlog to stakeholders</p></div>
</body></html>"""


def render(name: str, out: Path = OUT) -> Path:
    html = CARD.format(w=WIDTH, h=HEIGHT, name=escape(name), initial=escape(name[:1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
        page.set_content(html)
        page.screenshot(path=str(out), full_page=False)
        browser.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="Scrum Academy")
    print(render(parser.parse_args().name))


if __name__ == "__main__":
    main()
