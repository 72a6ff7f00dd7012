"""`labels`: a printable page of QR labels, one per basket, each opening that basket's shopper
page (`<SHOP_URL>/shop/<n>`, docs/shopper.md). The QR codes are segno's (SVG, drawn here, no
network). The label proves nothing by itself: the PIN on the basket's display does."""

from __future__ import annotations

import html

import segno

MAX_LABELS = 2000

PAGE = """<!doctype html>
<html lang="ko">
<head>
<meta charset="utf-8">
<title>Basket labels</title>
<style>
  @page { size: A4; margin: 10mm; }
  body { font-family: system-ui, "Noto Sans CJK KR", sans-serif; margin: 0; }
  .sheet { display: grid; grid-template-columns: repeat(3, 1fr); gap: 6mm; }
  .label { border: 1px dashed #999; padding: 4mm; text-align: center; break-inside: avoid; }
  .label svg { width: 45mm; height: 45mm; }
  .no { font-size: 16pt; font-weight: 700; margin: 1mm 0; }
  .how { font-size: 9pt; }
  .url { font-size: 7pt; color: #555; overflow-wrap: anywhere; }
</style>
</head>
<body>
<div class="sheet">
%s
</div>
</body>
</html>
"""

LABEL = """<div class="label">
<div class="no">바구니 %(n)d · Basket %(n)d</div>
%(qr)s
<div class="how">QR을 스캔하고 바구니 화면의 PIN을 입력하세요<br>
Scan, then type the PIN shown on the basket</div>
<div class="url">%(url)s</div>
</div>"""


def shop_link(base: str, basket: int) -> str:
    return "%s/shop/%d" % (base.rstrip("/"), basket)


def page(base: str, baskets: list[int]) -> str:
    """The labels of `baskets` as one HTML page (print it; 3 labels a row)."""
    if not baskets:
        raise ValueError("no baskets to make labels for")
    if len(baskets) > MAX_LABELS:
        raise ValueError("at most %d labels in one page, got %d" % (MAX_LABELS, len(baskets)))
    parts = []
    for n in baskets:
        url = shop_link(base, n)
        qr = segno.make(url, error="m").svg_inline(scale=4, omitsize=True)
        parts.append(LABEL % {"n": n, "qr": qr, "url": html.escape(url)})
    return PAGE % "\n".join(parts)
