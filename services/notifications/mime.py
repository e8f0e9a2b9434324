"""Email wire bytes written directly: headers nothing can be injected into, parts encoded once.

The stdlib's EmailMessage re-parses and re-folds every header through its policy and walks the
tree twice; an invitation cost ~6 ms of CPU that way. The shapes we send are few and known, so
they are written here in a few hundred microseconds. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import format_datetime

# C0/C1 controls, line and paragraph separators, bidi embeddings/overrides/isolates, BOM
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f\u0080-\u009f\u061c\u200b-\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)
_BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_ATOM_PHRASE = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]+")
_LOCAL_PART = re.compile(r"[^\s\x00-\x1f\x7f<>()\[\],;:\\\"@]+")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class BadAddress(ValueError):
    """An address that cannot be written into an email."""


def one_line(value: str, limit: int = 300) -> str:
    """User text for a header or a one-line field: controls, separators and bidi marks gone."""
    return " ".join(_UNSAFE.sub(" ", value).split())[:limit]


def paragraphs(value: str, limit: int = 4000) -> str:
    """User free text for a body: lines kept, other controls and bidi marks removed."""
    text = value.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
    text = text.replace("\u2029", "\n\n")
    return "\n".join(one_line(line, limit) for line in text.split("\n"))[:limit]


@dataclass(frozen=True)
class Mailbox:
    """A display name and an address; the domain is in its ASCII (IDNA) form."""

    name: str
    address: str

    @property
    def needs_smtputf8(self) -> bool:
        """Whether the address (its local part) can only travel with SMTPUTF8."""
        return not self.address.isascii()


def mailbox(name: str, address: str) -> Mailbox:
    """A Mailbox, or BadAddress saying what is wrong with the address."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise BadAddress(f"{address!r} is not an email address (expected local@domain)")
    if len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise BadAddress(f"the part before @ in {address!r} cannot be sent; correct the address")
    try:
        ascii_domain = domain.lower() if domain.isascii() else domain.encode("idna").decode()
    except UnicodeError as exc:
        raise BadAddress(f"the domain of {address!r} is not a valid domain name") from exc
    labels = ascii_domain.rstrip(".").split(".")
    if len(ascii_domain) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise BadAddress(f"the domain of {address!r} is not a valid domain name")
    return Mailbox(one_line(name, 200), f"{local}@{ascii_domain}")


def encoded_words(text: str) -> str:
    """RFC 2047 encoded words (UTF-8, base64), each within 75 characters, folded."""
    words: list[str] = []
    chunk: list[str] = []
    size = 0
    for char in text:
        n = len(char.encode())
        if size + n > 45:  # 45 bytes -> 60 base64 characters -> 72 with the markers
            words.append("".join(chunk))
            chunk, size = [], 0
        chunk.append(char)
        size += n
    words.append("".join(chunk))
    return "\r\n ".join(f"=?utf-8?b?{base64.b64encode(w.encode()).decode()}?=" for w in words if w)


def phrase(text: str) -> str:
    """A display name as a header phrase: atoms, a quoted string, or encoded words."""
    text = one_line(text, 200)
    if not text:
        return ""
    if _ATOM_PHRASE.fullmatch(text):
        return text
    if text.isascii():
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return encoded_words(text)


def address_header(box: Mailbox) -> str:
    """`Name <local@domain>`, or the bare address when there is no name."""
    shown = phrase(box.name)
    return f"{shown} <{box.address}>" if shown else f"<{box.address}>"


def unstructured(text: str) -> str:
    """A Subject-like header value: folded ASCII, or encoded words."""
    text = one_line(text, 400)
    if not text.isascii():
        return encoded_words(text)
    lines, line = [], ""
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > 76:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def date_header(at: dt.datetime) -> str:
    """The Date header of an instant, in UTC."""
    return format_datetime(at.astimezone(dt.UTC))


@dataclass(frozen=True)
class Calendar:
    """The iCalendar object of an iMIP message, and its METHOD."""

    method: str
    ical: str


def _quoted_printable(text: str) -> bytes:
    normalized = text.replace("\r\n", "\n").replace("\r", "\n").encode()
    return binascii.b2a_qp(normalized, istext=True).replace(b"\n", b"\r\n")


def _base64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _part(content_type: str, body: bytes, encoding: str, extra: str = "") -> bytes:
    head = f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: {encoding}\r\n{extra}\r\n"
    return head.encode() + body


def _multipart(subtype: str, boundary: str, parts: Sequence[bytes]) -> bytes:
    head = f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode()
    sep = f"--{boundary}\r\n".encode()
    body = b"".join(sep + part + (b"" if part.endswith(b"\r\n") else b"\r\n") for part in parts)
    return head + body + f"--{boundary}--\r\n".encode()


def write_message(
    headers: Sequence[tuple[str, str]],
    *,
    text: str,
    html: str,
    calendar: Calendar | None = None,
) -> bytes:
    """The message's bytes: alternative[text, html], or mixed[alternative[text, html,
    calendar], invite.ics] for iMIP. Header values must come from the functions above."""
    for name, value in headers:
        if "\r" in value.replace("\r\n ", "") or "\n" in value.replace("\r\n ", ""):
            raise ValueError(f"the {name} header would break the message; build it with mime.*")
    tag = hashlib.blake2b(repr(headers).encode(), digest_size=8).hexdigest()
    alternative = [
        _part('text/plain; charset="utf-8"', _quoted_printable(text), "quoted-printable"),
        _part('text/html; charset="utf-8"', _quoted_printable(html), "quoted-printable"),
    ]
    if calendar is None:
        body = _multipart("alternative", f"=_a{tag}", alternative)
    else:
        ics = _base64(calendar.ical.encode())
        method = re.sub("[^A-Z-]", "", calendar.method.upper())
        alternative.append(_part(f'text/calendar; charset="utf-8"; method={method}', ics, "base64"))
        attachment = _part(
            'application/ics; name="invite.ics"',
            ics,
            "base64",
            'Content-Disposition: attachment; filename="invite.ics"\r\n',
        )
        inner = _multipart("alternative", f"=_a{tag}", alternative)
        body = _multipart("mixed", f"=_m{tag}", [inner, attachment])
    head = "".join(f"{name}: {value}\r\n" for name, value in headers) + "MIME-Version: 1.0\r\n"
    return head.encode() + body
