"""Articles: parsing, the pages that show them, and `flask content check`."""

from __future__ import annotations

import html
import math
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from app import create_app
from services.content import (
    TRAINING_PATH,
    ArticleStore,
    ContentError,
    _markdown,
    parse_article,
)

ROOT = Path(__file__).resolve().parent.parent
ARTICLE = ROOT / "content" / "cspo-certification-benefits.md"
SLUG = "cspo-certification-benefits"
DANGLING = ("/how-hard-is-the-cspo", "/how-long-does-a-cspo-certification-last")


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def _words(markdown: str) -> int:
    body = markdown.split("---", 2)[2]
    body = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", body)  # links: keep their text
    return len([w for w in body.split() if not set(w) <= set("#*-")])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# --- Parsing


def test_front_matter_gives_slug_title_and_date():
    article = parse_article(ARTICLE)
    assert article.slug == SLUG
    assert article.path == f"/{SLUG}"
    assert article.title == "CSPO Certification Benefits"
    assert article.published == date(2023, 9, 6)


def test_reading_time_counts_the_words_at_230_a_minute():
    article = parse_article(ARTICLE)
    words = _words(ARTICLE.read_text(encoding="utf-8"))
    assert 600 < words < 800  # the article as published
    assert article.reading_minutes == math.ceil(words / 230)


def test_description_defaults_to_the_opening_words_of_the_first_paragraph():
    article = parse_article(ARTICLE)
    assert article.description.startswith("Things change so quickly in our world today")
    assert len(article.description) <= 160
    assert article.description.endswith("…")
    assert "  " not in article.description


def test_description_from_front_matter_wins(tmp_path):
    path = write(
        tmp_path / "a.md",
        '---\ntitle: A\ndescription: "Short and sweet."\n---\n\nBody text here.\n',
    )
    assert parse_article(path).description == "Short and sweet."


def test_description_drops_markdown_link_syntax_and_line_breaks(tmp_path):
    path = write(
        tmp_path / "a.md",
        "---\ntitle: A\n---\n\nRead [our course](/training) and\nlearn **a lot**.\n",
    )
    assert parse_article(path).description == "Read our course and learn a lot."


def test_inline_form_goes_before_the_heading_nearest_a_third_of_the_text():
    article = parse_article(ARTICLE)
    assert article.html_rest.startswith("<h2>")
    assert article.html_intro.rstrip().endswith("</p>")
    intro, rest = len(_text(article.html_intro)), len(_text(article.html_rest))
    share = intro / (intro + rest)
    assert 0.2 < share < 0.45, share
    # Nothing is lost or duplicated at the cut.
    body = ARTICLE.read_text(encoding="utf-8").split("---", 2)[2]
    assert article.html_intro + article.html_rest == _markdown().render(body)


def test_article_without_headings_is_cut_after_a_paragraph(tmp_path):
    paragraphs = "\n\n".join(f"Paragraph {i} " + "word " * 40 for i in range(6))
    article = parse_article(write(tmp_path / "a.md", f"---\ntitle: A\n---\n\n{paragraphs}\n"))
    assert article.html_intro.count("<p>") == 2
    assert article.html_rest.count("<p>") == 4


def test_raw_html_in_markdown_is_escaped(tmp_path):
    article = parse_article(
        write(tmp_path / "a.md", "---\ntitle: A\n---\n\nHi <script>alert(1)</script>\n")
    )
    assert "<script>" not in article.html_intro + article.html_rest


def test_internal_links_are_collected_without_fragment_or_query():
    article = parse_article(ARTICLE)
    assert set(article.internal_links) == {*DANGLING, TRAINING_PATH}


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.md", "No front matter at all.\n", "front matter"),
        ("a.md", "---\ndate: 2024-01-01\n---\n\nBody\n", "title"),
        ("Bad Slug.md", "---\ntitle: A\n---\n\nBody\n", "slug"),
        ("a.md", "---\ntitle: A\nslug: Not/A Slug\n---\n\nBody\n", "slug"),
        ("a.md", "---\ntitle: A\ndate: 'someday'\n---\n\nBody\n", "date"),
        ("a.md", "---\ntitle: A\ndate: 2024\n---\n\nBody\n", "date"),
        ("a.md", "---\ntitle: [unclosed\n---\n\nBody\n", "front matter"),
    ],
)
def test_broken_articles_are_refused_with_a_reason(tmp_path, name, text, message):
    with pytest.raises(ContentError, match=message):
        parse_article(write(tmp_path / name, text))


def test_store_refuses_two_articles_with_one_slug(tmp_path):
    write(tmp_path / "a.md", "---\ntitle: A\nslug: same\n---\n\nBody\n")
    write(tmp_path / "b.md", "---\ntitle: B\nslug: same\n---\n\nBody\n")
    with pytest.raises(ContentError, match="same"):
        ArticleStore(tmp_path)


def test_store_lists_newest_first(tmp_path):
    write(tmp_path / "old.md", "---\ntitle: Old\ndate: 2020-01-01\n---\n\nBody\n")
    write(tmp_path / "new.md", "---\ntitle: New\ndate: 2024-01-01\n---\n\nBody\n")
    write(tmp_path / "undated.md", "---\ntitle: Undated\n---\n\nBody\n")
    write(tmp_path / "timed.md", "---\ntitle: Timed\ndate: 2022-05-01 10:00:00\n---\n\nBody\n")
    assert [a.slug for a in ArticleStore(tmp_path).all()] == ["new", "timed", "old", "undated"]


# --- Pages


def test_index_lists_the_articles(client):
    r = client.get("/")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert f'<a href="/{SLUG}">CSPO Certification Benefits</a>' in page
    assert "Things change so quickly" in page
    assert "min read" in page


def _meta(page: str, attr: str, name: str) -> str:
    match = re.search(rf'<meta {attr}="{re.escape(name)}" content="([^"]*)">', page)
    assert match, f"no <meta {attr}={name!r}>"
    return html.unescape(match.group(1))


def test_article_page_has_title_description_and_open_graph(client):
    r = client.get(f"/{SLUG}")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    article = parse_article(ARTICLE)
    assert "<title>CSPO Certification Benefits · " in page
    assert "<h1>CSPO Certification Benefits</h1>" in page
    assert '<time datetime="2023-09-06">6 September 2023</time>' in page
    assert f"{article.reading_minutes} min read" in page
    assert _meta(page, "name", "description") == article.description
    assert _meta(page, "property", "og:title") == "CSPO Certification Benefits"
    assert _meta(page, "property", "og:description") == article.description
    assert _meta(page, "property", "og:type") == "article"
    assert _meta(page, "property", "og:url") == f"http://localhost/{SLUG}"
    assert f'<link rel="canonical" href="http://localhost/{SLUG}">' in page


def test_article_page_has_an_inline_and_an_end_form_with_distinct_ids(client):
    page = client.get(f"/{SLUG}").get_data(as_text=True)
    forms = re.findall(r'<form class="signup".*?</form>', page, re.S)
    assert len(forms) == 2
    placements = [re.search(r'name="placement" value="(\w+)"', f).group(1) for f in forms]
    assert placements == ["inline", "end"]
    for form in forms:
        assert f'name="source" value="{SLUG}"' in form
        assert 'name="email"' in form
        assert 'name="started"' in form  # the time trap's stamp
        assert "csrf_token" not in form  # the same page for everyone: no token
        assert "checked" not in form  # consent by an affirmative act: nothing pre-ticked
    ids = re.findall(r'\bid="([^"]+)"', page)
    duplicates = [i for i, n in Counter(ids).items() if n > 1]
    assert not duplicates
    # Every label points at a control on the page, every description exists.
    for target in re.findall(r'<label for="([^"]+)"', page):
        assert target in ids
    for described in re.findall(r'aria-(?:describedby|labelledby)="([^"]+)"', page):
        assert all(i in ids for i in described.split())


def test_inline_form_sits_between_the_intro_and_the_rest(client):
    page = client.get(f"/{SLUG}").get_data(as_text=True)
    article = parse_article(ARTICLE)
    first_rest_heading = re.match(r"<h2>(.*?)</h2>", article.html_rest).group(1)
    inline = page.index('value="inline"')
    assert page.index("Things change so quickly") < inline
    assert inline < page.index(f"<h2>{first_rest_heading}</h2>") < page.index('value="end"')


@pytest.mark.parametrize("path", DANGLING)
def test_dangling_internal_link_gets_the_helpful_404(client, path):
    r = client.get(path)
    assert r.status_code == 404
    page = r.get_data(as_text=True)
    assert "We could not find that page" in page
    assert f'<a href="/{SLUG}">CSPO Certification Benefits</a>' in page
    assert '<form class="signup"' in page
    assert 'name="email"' in page
    assert 'class="site-header"' in page
    assert f'href="{TRAINING_PATH}"' in page


def test_content_check_warns_of_links_to_pages_not_written_yet(runner):
    # The article's two links are to articles still to come, not typos: a
    # warning each, and `make test` goes on.
    result = runner.invoke(args=["content", "check"])
    assert result.exit_code == 0, result.output
    for link in DANGLING:
        assert f"warning: {SLUG}: {link} does not exist (yet)" in result.output
    assert TRAINING_PATH not in result.output
    assert "2 dangling link(s), none a misspelt slug" in result.output


def test_content_check_fails_on_a_misspelt_slug_of_another_article(app_config, tmp_path):
    content = tmp_path / "content"
    write(
        content / "one.md",
        "---\ntitle: One\n---\n\nSee [two](/cspo-certification-benefit), "
        "and [later](/an-article-to-come).\n",
    )
    write(content / "cspo-certification-benefits.md", "---\ntitle: Two\n---\n\nText.\n")
    app = create_app({**app_config, "CONTENT_DIR": str(content)})
    result = app.test_cli_runner().invoke(args=["content", "check"])
    assert result.exit_code == 1, result.output
    assert (
        "error: one: /cspo-certification-benefit does not exist; "
        "did you mean /cspo-certification-benefits?" in result.output
    )
    assert "warning: one: /an-article-to-come does not exist (yet)" in result.output
    assert "1 misspelt link(s), 2 dangling in all" in result.output


def test_content_check_passes_when_every_link_resolves(app_config, tmp_path):
    content = tmp_path / "content"
    write(
        content / "one.md",
        f"---\ntitle: One\n---\n\nSee [two](/two#part), [home](/) and "
        f"[classes]({TRAINING_PATH}?utm_source=x), or [elsewhere](https://example.com/x).\n",
    )
    write(content / "two.md", "---\ntitle: Two\n---\n\nBack to [one](/one).\n")
    app = create_app({**app_config, "CONTENT_DIR": str(content)})
    result = app.test_cli_runner().invoke(args=["content", "check"])
    assert result.exit_code == 0, result.output
    assert "all internal links resolve" in result.output
