"""Announcement merge tags in a Jinja sandbox: template payloads are refused
with a message the admin reads on the form, nothing is saved; valid tags
render; what a lead typed (a name) stays text in the HTML part."""

from __future__ import annotations

import re
from datetime import date, time
from email.message import EmailMessage
from html import unescape

import pytest
from markdown_it import MarkdownIt
from markupsafe import escape
from sqlalchemy import select

from extensions import db
from models import Announcement, MailKind, OutboxMessage
from services.campaigns import announcements
from services.mail import compose, templating
from services.mail.templating import MergeTagError
from tests.factories import SEPT_2026, make_class, make_lead
from tests.helpers import (
    announcement_form,
    count,
    create_announcement,
    csrf_token,
    drain,
    page_text,
    received,
    sign_in_admin,
    smtp_settings,
)

CONTEXT = {
    "first_name": "Ann",
    "email": "ann@example.com",
    "unsubscribe_url": "https://example.com/unsubscribe/t",
    "preferences_url": "https://example.com/preferences/t",
    "class": None,
}
OBJECTS = "tries to reach inside Python objects"
UNKNOWN = "Unknown merge tag"

PAYLOADS = [
    ("{{ ''.__class__.__mro__ }}", OBJECTS),
    ("{{ config }}", "Unknown merge tag: 'config' is undefined"),
    ("{{ self }}", "Unknown merge tag: 'self' is undefined"),
    ("{{ self._TemplateReference__context }}", UNKNOWN),
    ("{{ lipsum }}", "Unknown merge tag: 'lipsum' is undefined"),
    ("{{ cycler.__init__.__globals__ }}", "Unknown merge tag: 'cycler' is undefined"),
    ("{% for x in ().__class__.__base__.__subclasses__() %}{{ x }}{% endfor %}", OBJECTS),
    ("{{ first_name.__class__ }}", OBJECTS),
    ("{{ first_name|attr('__class__') }}", OBJECTS),
    ("{{ unsubscribe_url.format.__globals__ }}", OBJECTS),
    ("{{ '{0.__class__}'.format(first_name) }}", OBJECTS),
    ("{{ request }}", UNKNOWN),
    ("{{ range(10) }}", UNKNOWN),
    ("{% if false %}{{ config.SECRET_KEY }}{% endif %}", UNKNOWN),
    ("{% include 'base.html' %}", "{% include %} is not available"),
    ("{% extends 'base.html' %}", "{% extends %} is not available"),
    ("{% import 'base.html' as b %}", "{% import %} is not available"),
    ("{{ 'x' * 100000000 }}", "far too long"),
    ("{{ 1/0 }}", "cannot be rendered: division by zero"),
    ("{{ first_name|format(1, 2) }}", "cannot be rendered"),
    ("{{ first_name ", "do not parse"),
    ("{{ first_name|no_such_filter }}", "No filter named 'no_such_filter'"),
    ("{{ class.title }}", "need a linked class"),
    # A visitor's name must stay text in the HTML part (the email rules).
    ("{{ first_name|safe }}", "No filter named 'safe'"),
    ("{% autoescape false %}{{ first_name }}{% endautoescape %}", "{% autoescape %} is not"),
]
PAYLOAD_IDS = [
    "mro",
    "config",
    "self",
    "self-private",
    "lipsum",
    "cycler-globals",
    "subclasses-loop",
    "dunder-on-tag",
    "attr-filter",
    "format-globals",
    "format-string",
    "request",
    "range",
    "dead-branch",
    "include",
    "extends",
    "import",
    "huge-repeat",
    "zero-division",
    "bad-filter-args",
    "unclosed",
    "unknown-filter",
    "class-without-class",
    "safe-filter",
    "autoescape-off",
]


# --- The sandbox itself.


@pytest.mark.parametrize(("payload", "message"), PAYLOADS, ids=PAYLOAD_IDS)
def test_sandbox_refuses_payloads_with_a_readable_message(payload, message):
    with pytest.raises(MergeTagError) as caught:
        templating.render("Subject", payload, CONTEXT)
    assert message in str(caught.value)
    # The subject is a template too.
    with pytest.raises(MergeTagError):
        templating.render(payload, "Body", CONTEXT)


def test_merge_tags_render_with_fallbacks_loops_and_filters():
    body = (
        "Hi {{ first_name or 'there' }}!\n\n"
        "{% for step in ['one', 'two'] %}{{ loop.index }}. {{ step|upper }}\n{% endfor %}\n"
        "{% set n = 2 %}{{ n * 3 }} · {{ 'ab' * 2 }} · {{ email|replace('@', ' at ') }}"
    )
    out = templating.render("For {{ 'you'|upper }}", body, CONTEXT)
    assert out.subject == "For YOU"
    assert out.text.startswith("Hi Ann!")
    assert "1. ONE\n2. TWO" in out.text
    assert "6 · abab · ann at example.com" in out.text
    nameless = templating.render("x", body, {**CONTEXT, "first_name": ""})
    assert nameless.text.startswith("Hi there!")


def test_subject_stays_one_line_whatever_the_tags_produce():
    out = templating.render("Hello\r\n{{ 'x' }}\nBcc: x@evil.example", "b", CONTEXT)
    assert out.subject == "Hello x Bcc: x@evil.example"
    assert "\n" not in out.subject and "\r" not in out.subject


def test_subject_cannot_carry_what_a_visitor_typed():
    for subject in ("Hi {{ first_name }}", "{{ email }}", "{% if first_name %}x{% endif %}"):
        with pytest.raises(templating.MergeTagError, match="never goes into a mail header"):
            templating.render(subject, "body", CONTEXT)


def test_admin_markdown_cannot_inject_html_or_script_links():
    body = '<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror="y">'
    html = templating.render("s", body, CONTEXT).html
    assert "<script" not in html and "<img" not in html
    assert 'href="javascript' not in html
    assert "&lt;script&gt;" in html


# --- Markdown rendered once per text into a template; values filled in as text.

BODIES = [
    "Hello {{ first_name }},\n\n[Unsubscribe]({{ unsubscribe_url }}) or <{{ unsubscribe_url }}>",
    # A bare URL tag becomes a link (test_a_bare_url_tag_...): here an autolink.
    "**{{ first_name }}**, *{{ first_name }}* and `{{ first_name }}`: <{{ unsubscribe_url }}>",
    '- {{ first_name }}\n- [prefs]({{ preferences_url }} "{{ first_name }}")\n\n> {{ email }}',
    "# {{ first_name }}{{ first_name }}\n\n![x]({{ unsubscribe_url }}) {{ class.title }}",
    "{% if first_name %}Hi {{ first_name|upper }}{% endif %} on{{ first_name }}line",
    "| who | link |\n|---|---|\n| {{ first_name|upper }} | [go]({{ class.register_url }}) |",
]
PLAIN_NAMES = ["Ann", "A", "ann", "Chloé", "x", "merge", "Ann Lee"]
# The reference: Markdown parsed afresh for each recipient's merged text.
FRESH = MarkdownIt("commonmark", {"html": False, "typographer": True}).enable(
    ["table", "strikethrough"]
)


def _context(i: int, name: str) -> dict:
    return {
        **CONTEXT,
        "first_name": name,
        "unsubscribe_url": f"https://example.com/unsubscribe/tok{i}.AbC9-x",
        "preferences_url": f"https://example.com/preferences/tok{i}.Zz",
        "class": {"title": "CSPO Online", "register_url": f"https://example.com/r/{i}"},
    }


@pytest.mark.parametrize("body", BODIES)
def test_markdown_rendered_once_gives_the_html_a_fresh_parse_gives(body):
    """For values Markdown would leave alone, the template filled in is the
    HTML that parsing each recipient's own merged Markdown gives."""
    for i, name in enumerate(PLAIN_NAMES):
        out = templating.render("s", body, _context(i, name))
        assert out.html == FRESH.render(out.text), name


@pytest.mark.parametrize(
    "name",
    [
        "[Win](//evil.example/prize)",
        "<b>Ann</b>",
        "**Ann**",
        "O'Brien",
        "Ann_Lee_",
        "# Ann",
        "<https://evil.example>",
        '"><script>x</script>',
        "a--b...",
        "",
    ],
)
def test_a_merge_value_is_text_in_the_html_never_markup(name):
    body = "Hello {{ first_name }}, [unsubscribe]({{ unsubscribe_url }})."
    out = templating.render("s", body, {**CONTEXT, "first_name": name})
    assert out.html == (
        f'<p>Hello {escape(name)}, <a href="https://example.com/unsubscribe/t">unsubscribe</a>.</p>\n'
    )
    assert out.text == f"Hello {name}, [unsubscribe](https://example.com/unsubscribe/t)."


def test_a_link_merge_value_is_never_read_as_markdown():
    # Signed tokens may hold `--`, `+-` or `_x_`: parsed as text, typographer
    # and emphasis rules would turn them into a dash, a ± or <em>.
    url = "https://example.com/unsubscribe/a--b+-c._d_.e"
    context = {**CONTEXT, "unsubscribe_url": url}
    html = templating.render("s", "Unsubscribe: {{ unsubscribe_url }}", context).html
    assert f'Unsubscribe: <a href="{url}">{url}</a>' in html
    assert "–" not in html and "±" not in html and "<em>" not in html


def test_link_targets_keep_the_url_as_it_is_and_autolinks_stay_links():
    url = "https://example.com/unsubscribe/a~b.c%41?x=1&y=2"
    body = "[a]({{ unsubscribe_url }}) <{{ unsubscribe_url }}> [b](mailto:{{ email }})"
    html = templating.render("s", body, {**CONTEXT, "unsubscribe_url": url}).html
    href = url.replace("&", "&amp;")
    assert html == (
        f'<p><a href="{href}">a</a> <a href="{href}">{href}</a>'
        ' <a href="mailto:ann@example.com">b</a></p>\n'
    )


@pytest.mark.parametrize(
    "body",
    [
        "[x]({{ first_name }})",
        "![x]({{ first_name }})",
        "<{{ email }}>",
        "[x]({{ first_name }}.example)",
        "[x]({% if first_name %}//evil.example{% endif %})",
    ],
)
def test_a_link_target_made_by_tags_must_be_a_web_or_mail_address(body):
    with pytest.raises(MergeTagError, match="never becomes a link"):
        templating.check("s", body, CONTEXT)
    # Nor when a lead's value looks like one.
    for name in ("//evil.example", "javascript:alert(1)", "[Win](//evil.example)"):
        with pytest.raises(MergeTagError):
            templating.render("s", body, {**CONTEXT, "first_name": name})


def test_block_tags_on_lines_of_their_own_leave_no_empty_paragraphs():
    body = "{% if first_name %}\n\nHello {{ first_name }}.\n\n{% endif %}\n\nBye."
    html = templating.render("s", body, CONTEXT).html
    assert html.split() == ["<p>Hello", "Ann.</p>", "<p>Bye.</p>"]
    nameless = templating.render("s", body, {**CONTEXT, "first_name": ""})
    assert nameless.html.split() == ["<p>Bye.</p>"]


def test_tags_are_found_whole_with_strings_and_raw_blocks_inside():
    body = '{{ "}} **not bold**" ~ first_name }} **bold** {% raw %}{{ kept }}{% endraw %}'
    html = templating.render("s", body, CONTEXT).html
    assert html == "<p>}} **not bold**Ann <strong>bold</strong> {{ kept }}</p>\n"


def test_each_text_is_compiled_once_not_per_recipient():
    templating.compile_announcement.cache_clear()
    body = "Hi {{ first_name }}: [unsubscribe]({{ unsubscribe_url }})"
    for i in range(50):
        context = {**CONTEXT, "unsubscribe_url": f"https://example.com/u/{i}"}
        html = templating.render("s", body, context).html
        assert f'href="https://example.com/u/{i}"' in html
    info = templating.compile_announcement.cache_info()
    assert (info.misses, info.hits) == (1, 49)


# --- On the admin's form: 400, the message on the page, nothing saved.


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("payload", "message"), PAYLOADS, ids=PAYLOAD_IDS)
def test_payload_in_the_body_is_shown_on_the_form_and_nothing_is_saved(
    app, client, payload, message
):
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/announcements/new")
    r = client.post("/admin/announcements/new", data=announcement_form(token, body=payload))
    assert r.status_code == 400
    html = page_text(r)
    alert = re.search(r'<div class="form-alert" role="alert">.*?</div>', html, re.S)
    assert alert, html
    assert message in alert.group(0)
    # The admin's text is kept in the editor, to fix it.
    assert payload in html
    assert count(app, Announcement) == 0


def test_payload_in_the_subject_or_an_edit_is_refused_too(app, client):
    sign_in_admin(app, client)
    token = csrf_token(client, "/admin/announcements/new")
    r = client.post(
        "/admin/announcements/new",
        data=announcement_form(token, subject="Hi {{ ''.__class__.__mro__ }}"),
    )
    assert r.status_code == 400
    assert OBJECTS in page_text(r)
    assert count(app, Announcement) == 0

    public_id = create_announcement(client, body="Fine, {{ first_name or 'there' }}.")
    r = client.post(
        f"/admin/announcements/{public_id}/edit",
        data=announcement_form(token, body="{{ config.items() }}"),
    )
    assert r.status_code == 400
    assert "Unknown merge tag: 'config' is undefined" in page_text(r)
    with app.app_context():
        row = db.session.execute(select(Announcement)).scalar_one()
        assert row.body == "Fine, {{ first_name or 'there' }}."


# --- A valid template, as a lead receives it.


def _parts(app, lead_email: str, public_id: str) -> tuple[str, str, str]:
    with app.app_context():
        ann = db.session.execute(
            select(Announcement).where(Announcement.public_id == public_id)
        ).scalar_one()
        lead = db.session.execute(
            select(announcements.Lead).where(announcements.Lead.email == lead_email)
        ).scalar_one()
        row = OutboxMessage(
            id=1,
            kind=MailKind.ANNOUNCEMENT,
            announcement_id=ann.id,
            lead_id=lead.id,
            created_at=SEPT_2026,
        )
        return compose.render_parts(row, lead)


def test_valid_template_renders_name_fallback_class_fields_and_unsubscribe_link(
    app, client, frozen
):
    frozen.set(SEPT_2026)
    sign_in_admin(app, client)
    with app.app_context():
        make_lead("ann@example.com", name="Ann Smith")
        make_lead("anon@example.com")
        make_class(
            title="CSPO October",
            start=(date(2026, 10, 12), time(9, 0)),
            trainer="Dana",
            seats=10,
            seats_taken=4,
        )
        db.session.commit()
        class_id = db.session.execute(select(announcements.TrainingClass.public_id)).scalar_one()
    public_id = create_announcement(
        client,
        training_class=class_id,
        subject="{{ class.title }}: seats open",
        body=(
            "Hello {{ first_name or 'there' }},\n\n"
            "**{{ class.title }}** starts {{ class.start }} ({{ class.timezone }}), "
            "{{ class.where }}, with {{ class.trainer }}; {{ class.seats_left }} seats left.\n\n"
            "[Register]({{ class.register_url }}) · [Calendar]({{ class.calendar_url }})\n\n"
            "[Unsubscribe]({{ unsubscribe_url }})"
        ),
    )

    subject, text, html = _parts(app, "ann@example.com", public_id)
    assert subject == "CSPO October: seats open"
    assert text.startswith("Hello Ann,")
    assert "starts Monday 12 October 2026, 09:00 (Europe/Berlin), Online, with Dana; " in text
    assert "6 seats left" in text
    assert re.search(r"\[Register\]\(http://localhost/register/[\w.-]+\)", text)
    assert (
        f"[Calendar](http://localhost/certified-scrum-product-owner-cspo-training/{class_id}.ics)"
        in text
    )
    unsubscribe = re.search(r"\[Unsubscribe\]\((http://localhost/unsubscribe/[\w.-]+)\)", text)
    assert unsubscribe
    assert f'<a href="{unsubscribe.group(1)}">Unsubscribe</a>' in html
    assert "<strong>CSPO October</strong>" in html

    subject, text, _ = _parts(app, "anon@example.com", public_id)
    assert subject == "CSPO October: seats open"
    assert text.startswith("Hello there,")


NAMES = [
    "[Win](//evil.example/prize)",
    "<https://evil.example/x>",
    '<a href="https://evil.example">Ann</a>',
    "<img src=x onerror=alert(1)>",
    "**Ann**",
    "#Ann",
    "&lt;b&gt;Ann",
]


def test_markup_in_a_lead_name_is_escaped_in_the_html_and_never_a_link(app, client, smtp_server):
    """Names arrive through more than the signup form (imports, older
    versions); whatever is stored, the HTML part shows it as text."""
    sign_in_admin(app, client)
    with app.app_context():
        for i, name in enumerate(NAMES):
            make_lead(f"lead{i}@example.com", name=name)
        db.session.commit()
    app.config.update(smtp_settings(smtp_server))
    public_id = create_announcement(
        client,
        subject="News for you",
        body="Hello {{ first_name or 'there' }}, new dates are out.",
    )
    token = csrf_token(client, f"/admin/announcements/{public_id}")
    client.post(
        f"/admin/announcements/{public_id}/schedule",
        data={"csrf_token": token, "send_now": "1", "timezone": "UTC"},
    )
    assert drain(app)["sent"] == len(NAMES)

    by_rcpt = received(smtp_server)
    for i, name in enumerate(NAMES):
        msg: EmailMessage = by_rcpt[f"lead{i}@example.com"][0]
        first = name.split(" ")[0]
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert f"Hello {first}, new dates are out." in text
        body = re.search(r"<p>Hello (.*?), new dates are out\.</p>", html)
        assert body, html
        shown = body.group(1)
        assert "<" not in shown, shown  # no tag of any kind from the name
        assert not [h for h in re.findall(r'href="([^"]*)"', html) if "evil.example" in h]
        # What the reader sees is what the lead typed.
        assert unescape(shown) == first
        # Only the address reaches a header besides the one-line subject.
        assert msg["To"] == f"lead{i}@example.com"
        assert "\n" not in msg["Subject"]
