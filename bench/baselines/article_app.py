"""Baseline article: bare Flask returning the same bytes, from a plain view.

The bytes are the page our app served for the article, saved verbatim at
bench time into the file BENCH_ARTICLE_FILE and read once at import. No
ETag, caching headers or conditional answers: the view returns the bytes."""

import os
from pathlib import Path

from flask import Flask

PAGE = Path(os.environ["BENCH_ARTICLE_FILE"]).read_bytes()

app = Flask(__name__)


@app.get("/cspo-certification-benefits")
def article():
    return PAGE


@app.get("/healthz")
def healthz():
    return "ok"
