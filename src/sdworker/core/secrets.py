"""The secrets a job's input may carry, kept out of everything that lasts.

A native input's LoRA entries may carry a download token (``lora[i].token``), or one in their
URL's query (``?token=...``, CivitAI's other way). The worker uses them for the download
and nowhere else; the local endpoint stores a job's input with them taken out
(:func:`split`), keeps them in memory only, and puts them back in the job it hands a worker
(:func:`join`). An endpoint restarted with such a job queued has lost them: the stored input
says so (:data:`WITHHELD`), and the job fails naming the field instead of downloading
without its token. Log lines pass :func:`redact` (:class:`RedactingFilter`) as a last line of
defence.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sdworker.core.assetfetch import SECRET_PARAMS

#: what the stored input holds in a secret's place
WITHHELD = "<withheld>"
#: secrets kept apart: (index of the lora entry, its field, the value)
Secrets = list[tuple[int, str, str]]


def split(job_input: Any) -> tuple[Any, Secrets]:
    """``job_input`` with its secrets replaced by :data:`WITHHELD`, and the secrets."""
    if not isinstance(job_input, dict) or not isinstance(job_input.get("lora"), list | dict | str):
        return job_input, []
    entries = job_input["lora"]
    listed = entries if isinstance(entries, list) else [entries]
    kept: Secrets = []
    clean = []
    for i, entry in enumerate(listed):
        if isinstance(entry, str) and entry.lower().startswith(("http://", "https://")):
            entry = {"url": entry}  # the text form of a URL entry, as the input model reads it
        if isinstance(entry, dict):
            entry = dict(entry)
            token = entry.get("token")
            if isinstance(token, str) and token != WITHHELD:
                kept.append((i, "token", token))
                entry["token"] = WITHHELD
            url = entry.get("url")
            if isinstance(url, str) and (hidden := _withheld_url(url)) != url:
                kept.append((i, "url", url))
                entry["url"] = hidden
        clean.append(entry)
    if not kept:
        return job_input, []
    return {**job_input, "lora": clean}, kept


def join(job_input: Any, secrets: Secrets) -> Any:
    """The input :func:`split` took ``secrets`` out of, with them back in place."""
    if (
        not secrets
        or not isinstance(job_input, dict)
        or not isinstance(job_input.get("lora"), list)
    ):
        return job_input
    entries = [dict(e) if isinstance(e, dict) else e for e in job_input["lora"]]
    for index, name, value in secrets:
        if index < len(entries) and isinstance(entries[index], dict):
            entries[index][name] = value
    return {**job_input, "lora": entries}


def _withheld_url(url: str) -> str:
    """``url`` with the value of each secret query parameter replaced by :data:`WITHHELD`."""
    try:
        parts = urlsplit(url)
        pairs = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return url
    if not any(k.lower() in SECRET_PARAMS and v != WITHHELD for k, v in pairs):
        return url
    hidden = [(k, WITHHELD if k.lower() in SECRET_PARAMS else v) for k, v in pairs]
    return urlunsplit(parts._replace(query=urlencode(hidden)))


def withheld(value: str | None) -> bool:
    """Whether a token or URL is one whose secret the endpoint no longer holds."""
    if value is None:
        return False
    if value == WITHHELD:
        return True
    try:
        pairs = parse_qsl(urlsplit(value).query, keep_blank_values=True)
    except ValueError:
        return False
    return any(k.lower() in SECRET_PARAMS and v == WITHHELD for k, v in pairs)


#: what looks like a credential in a log line: a secret query parameter's value, a bearer
#: token, a Hugging Face token
_PATTERNS = (
    re.compile(
        r"(?i)([?&](?:" + "|".join(sorted(SECRET_PARAMS)) + r")=)[^&#\s'\"]+",
    ),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"()\bhf_[A-Za-z0-9]{20,}"),
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``***``."""
    for pattern in _PATTERNS:
        text = pattern.sub(r"\1***", text)
    return text


class RedactingFilter(logging.Filter):
    """Redacts credentials from every record a handler writes (see :func:`redact`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_filter() -> None:
    """Put :class:`RedactingFilter` on every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
