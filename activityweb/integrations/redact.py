"""Masking secrets in what producers send, before anything is stored.

A coding agent's tool inputs and outputs routinely hold API keys, tokens and
passwords: an `env` listing, a `curl -H 'Authorization: ...'`, a `.env` file
read back. Each pattern's match is replaced by MASK; a pattern with a group
named `secret` masks only that group, so `DB_PASSWORD=hunter22` still reads
`DB_PASSWORD=[REDACTED]`. Values under secret-looking keys (`password`,
`api_key`, ...) are masked whole. The REDACT_PATTERNS setting adds patterns.

Every pattern is anchored on a literal prefix or has bounded repeats, so a
long run of text (a base64 blob in a tool response) cannot make one take
quadratic time.
"""
from __future__ import annotations

import functools
import re

MASK = "[REDACTED]"

DEFAULT_PATTERNS = (
    # PEM private keys: the whole block, or to the end when the text was cut.
    r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z0-9 ]{0,40}PRIVATE KEY-----|[\s\S]*)",
    # Authorization headers and bearer tokens.
    r"(?i)authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token)\s+)?(?P<secret>[^\s\"',;]{8,})",
    r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)",
    # name='quoted value' where the name says it is a secret: all of it, spaces included.
    r"(?i)(?:passw(?:or)?d|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[\w.-]{0,30}"
    r"[\"']?\s*[:=]\s*(?P<quote>[\"'])(?P<secret>(?:(?!(?P=quote))[^\n]){1,256})(?P=quote)",
    # name=value and name: value where the name says it is a secret.
    r"(?i)(?:passw(?:or)?d|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)[\w.-]{0,30}"
    r"[\"']?\s*[:=]\s*[\"']?(?P<secret>(?!\d+\b)[^\s\"',;&}]{4,})",
    # "the password is hunter22": prose, so only a value with a digit in it.
    r"(?i)\b(?:passw(?:or)?d|passwd|secret|token|api[_-]?key)\s+is\s+[\"']?(?P<secret>(?=[^\s\"']*\d)[^\s\"',;]{6,})",
    # key: value, a bare "key": only a long value of letters and digits, as keys are.
    r"(?i)\bkey[\"']?\s*[:=]\s*[\"']?(?P<secret>(?=[^\s\"',;&}]*\d)(?=[^\s\"',;&}]*[a-z])[^\s\"',;&}]{12,})",
    # Credentials in URLs: scheme://user:password@host
    r"(?i)\b[a-z][a-z0-9+.-]{0,20}://[^\s:/@]{1,256}:(?P<secret>[^\s@/]{1,256})@",
    # Well-known token formats.
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",  # AWS access key ids
    r"\bgh[pousr]_[A-Za-z0-9]{36,}",  # GitHub tokens
    r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",  # Anthropic, OpenAI
    r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",  # Stripe
    r"\bAIza[0-9A-Za-z_-]{35}",  # Google API keys
    r"\baw_[A-Za-z0-9_-]{40,}",  # ActivityWeb tokens
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWTs
)
# Keys whose string values are secrets whatever they look like.
SECRET_KEY = re.compile(
    r"(?i)(?:passw(?:or)?d|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|authorization"
    r"|credentials?|cookie)$"
)


class Redactor:
    def __init__(self, patterns: tuple[str, ...]):
        self.patterns = [re.compile(p) for p in patterns]

    def text(self, value: str) -> str:
        for pattern in self.patterns:
            value = pattern.sub(_mask, value)
        return value

    @staticmethod
    def is_secret_key(key: str) -> bool:
        return bool(SECRET_KEY.search(key))


def _mask(match: re.Match) -> str:
    if "secret" not in match.re.groupindex or match.group("secret") is None:
        return MASK
    start, end = match.span("secret")
    offset = match.start()
    whole = match.group(0)
    return whole[: start - offset] + MASK + whole[end - offset:]


@functools.lru_cache(maxsize=8)
def redactor(extra_patterns: tuple[str, ...] = ()) -> Redactor:
    """The built-in patterns plus `extra_patterns` (the REDACT_PATTERNS setting), compiled once."""
    return Redactor(DEFAULT_PATTERNS + extra_patterns)
