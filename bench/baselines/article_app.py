"""Baseline article: bare Flask returning the same HTML through render_template.

The template is the page our app served for the article, saved at bench time
into BENCH_ARTICLE_TEMPLATES/article.html."""

import os

from flask import Flask, render_template

app = Flask(__name__, template_folder=os.environ["BENCH_ARTICLE_TEMPLATES"])


@app.get("/cspo-certification-benefits")
def article():
    return render_template("article.html")


@app.get("/healthz")
def healthz():
    return "ok"
