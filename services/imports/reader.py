"""Reading a CSV file of leads: its encoding, the mapping of its columns,
and its records with the line each starts on, checked one by one.

The file is read as a stream (csv over a decoded text stream), so a
million-row file takes the memory of one record at a time.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from services.leads import topics
from services.leads.addresses import InvalidAddress
from services.reporting.export import DANGEROUS_PREFIXES

# What a column can be mapped to; anything else is left out of the import.
FIELDS = {
    "email": "Email",
    "first_name": "First name",
    "last_name": "Last name",
    "name": "Name",
    "topics": "Topics",
    "source": "Source",
}
# Header spellings seen in spreadsheets and CRM exports (lower case, letters only).
_GUESSES = {
    "email": "email",
    "emailaddress": "email",
    "mail": "email",
    "email1": "email",
    "firstname": "first_name",
    "givenname": "first_name",
    "forename": "first_name",
    "lastname": "last_name",
    "surname": "last_name",
    "familyname": "last_name",
    "name": "name",
    "fullname": "name",
    "contactname": "name",
    "topics": "topics",
    "topic": "topics",
    "interests": "topics",
    "lists": "topics",
    "source": "source",
    "leadsource": "source",
    "origin": "source",
}
# The columns the values go into (models.Lead): longer values are refused.
MAX_LENGTHS = {"name": 100, "source": 200, "topics": 200}
# A field past this is not a lead's data (an unclosed quote, a pasted
# document): the csv module stops there instead of reading on.
FIELD_LIMIT = 10_000
CHUNK_BYTES = 1 << 20
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_NON_ASCII = re.compile("[^\x00-\x7f\udc80-\udcff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TOPIC_SEPARATORS = re.compile(r"[;,|]")

csv.field_size_limit(FIELD_LIMIT)


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (no header, no email column)."""


class EncodingSniffer:
    """Fed the file's bytes in order, says how to decode it: UTF-8 with a
    BOM, UTF-8, or Windows-1252 when it is not UTF-8 and has no UTF-8
    multi-byte text at all. A UTF-8 file with a few broken lines stays UTF-8:
    those lines are refused, not decoded wrongly."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self._first = True
        self.bom = False
        self.invalid = False
        self.multibyte = False

    def feed(self, data: bytes) -> None:
        if self._first and data:
            self.bom = data.startswith(codecs.BOM_UTF8)
            self._first = False
        text = self._decoder.decode(data)
        self.invalid = self.invalid or bool(_UNDECODABLE.search(text))
        self.multibyte = self.multibyte or bool(_NON_ASCII.search(text))

    @property
    def encoding(self) -> str:
        if self.bom:
            return "utf-8-sig"
        if self.invalid and not self.multibyte:
            return "cp1252"
        return "utf-8"


def sniff(chunks: Iterable[bytes]) -> str:
    sniffer = EncodingSniffer()
    for chunk in chunks:
        sniffer.feed(chunk)
    return sniffer.encoding


def text_stream(binary: BinaryIO, encoding: str) -> io.TextIOWrapper:
    """Undecodable bytes become lone surrogates, so the line that holds them
    is refused by itself instead of the whole file failing."""
    return io.TextIOWrapper(binary, encoding=encoding, errors="surrogateescape", newline="")


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", header.lower())


def guess_mapping(header: list[str]) -> dict[int, str]:
    """Column index -> field, each field once (the first column that fits)."""
    mapping: dict[int, str] = {}
    for index, name in enumerate(header):
        found = _GUESSES.get(_key(name))
        if found and found not in mapping.values():
            mapping[index] = found
    return mapping


def check_mapping(mapping: dict[int, str], columns: int) -> None:
    fields = list(mapping.values())
    if "email" not in fields:
        raise ImportFileError("No column is mapped to the email address.")
    if len(fields) != len(set(fields)):
        raise ImportFileError("Each field can come from one column only.")
    if any(not 0 <= i < columns or f not in FIELDS for i, f in mapping.items()):
        raise ImportFileError("The mapping names a column or field the file does not have.")


@dataclass
class Record:
    """One line (or several, for quoted fields with line breaks) of the file."""

    line: int
    values: list[str] = field(default_factory=list)
    refused: str | None = None


DELIMITERS = (",", ";", "\t")


def delimiter(header_line: str) -> str:
    """Comma, or the semicolon (spreadsheets in locales with a decimal
    comma) or tab the header line uses more."""
    return max(DELIMITERS, key=header_line.count)


def records(stream: io.TextIOBase) -> tuple[list[str], Iterator[Record]]:
    """The header, and the records after it with their first line number
    (the header is line 1). Records of the wrong width, undecodable or
    unparseable come back refused, with the reason."""
    first = stream.readline()
    reader = csv.reader(itertools.chain([first], stream), delimiter=delimiter(first), strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError("The file is empty.") from None
    except csv.Error as exc:
        raise ImportFileError(f"The header line cannot be read: {exc}.") from None
    if _UNDECODABLE.search("".join(header)):
        raise ImportFileError("The header line is not UTF-8 or Windows-1252 text.")
    return header, _records(reader, len(header))


def _records(reader, width: int) -> Iterator[Record]:
    while True:
        start = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield Record(start, refused=f"cannot be read as CSV: {exc}")
            continue
        if not values:  # a blank line
            continue
        if len(values) != width:
            yield Record(start, refused=f"{len(values)} columns where the header has {width}")
        elif _UNDECODABLE.search("".join(values)):
            yield Record(start, refused="not UTF-8 or Windows-1252 text (wrong encoding)")
        else:
            yield Record(start, values)


@dataclass
class Candidate:
    """A record that may become a lead: its values checked and cleaned."""

    line: int
    email: str
    name: str | None
    topics: tuple[str, ...]
    source: str | None
    warnings: list[str] = field(default_factory=list)


_TOPIC_NAMES = {**{s: s for s in topics.TOPICS}, **{v.lower(): s for s, v in topics.TOPICS.items()}}


def candidate(
    record: Record, mapping: dict[int, str], base_topics: tuple[str, ...], source: str | None
) -> Candidate | str:
    """The record as a lead to import, or the reason it is refused. Its
    address is as written: `with_address` gives it the checked one."""
    values = {f: record.values[i].strip() for i, f in mapping.items()}
    # One search of the whole row first: nearly every row is clean.
    if _CONTROL.search("".join(values.values())):
        bad = next(name for name, value in values.items() if _CONTROL.search(value))
        return f"{FIELDS[bad].lower()} contains a control character"
    for name, value in values.items():
        if len(value) > MAX_LENGTHS.get(name, FIELD_LIMIT):
            return f"{FIELDS[name].lower()} is longer than {MAX_LENGTHS[name]} characters"
    name = values.get("name") or " ".join(
        v for v in (values.get("first_name"), values.get("last_name")) if v
    )
    if len(name) > MAX_LENGTHS["name"]:
        return f"name is longer than {MAX_LENGTHS['name']} characters"
    found = Candidate(
        record.line, values["email"], name or None, base_topics, values.get("source") or source
    )
    if values.get("topics"):
        wanted = set(base_topics)
        for item in filter(None, (t.strip() for t in _TOPIC_SEPARATORS.split(values["topics"]))):
            slug = _TOPIC_NAMES.get(item.lower())
            if slug is None:
                found.warnings.append(f"unknown topic {item[:40]!r} left out")
            else:
                wanted.add(slug)
        found.topics = tuple(topics.clean(list(wanted)))
    return found


def with_address(found: Candidate, checked: str | InvalidAddress) -> Candidate | str:
    """The candidate with its address as `addresses.normalise_all` gave it
    back, or the reason it is refused."""
    if isinstance(checked, InvalidAddress):
        return f"invalid address {found.email[:80]!r}: {checked}"
    found.email = checked
    for label, value in (("email", checked), ("name", found.name), ("source", found.source)):
        if value and value.startswith(DANGEROUS_PREFIXES):
            found.warnings.append(
                f"{label} starts like a spreadsheet formula: stored as text, neutralised in exports"
            )
    return found
