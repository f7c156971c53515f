"""Every secret pattern is tested on its own: each sample below is caught by
exactly one built-in pattern, so removing any one pattern fails its sample
(before, every test secret was caught by two patterns and no pattern was
tested alone). Plus the gaps a review found."""
import re

import pytest

from activityweb.integrations.redact import DEFAULT_PATTERNS, MASK, redactor

# (text, the secret in it)
ONE_PATTERN_EACH = [
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----", "MIIEowIBAAKCAQEA7"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
    ("curl -H 'X-Auth: Bearer abcdefghijklmnop1234'", "abcdefghijklmnop1234"),
    ('export SECRET = "a b c d"', "a b c d"),
    ("DB_PASSWORD=hunter22x", "hunter22x"),
    ("my passwd is hunter22", "hunter22"),
    ("key: abcd1234secretvalue", "abcd1234secretvalue"),
    ("postgres://app:s3cr3tpw@db.internal/app", "s3cr3tpw"),
    ("id AKIAIOSFODNN7EXAMPLE in use", "AKIAIOSFODNN7EXAMPLE"),
    ("ghp_" + "a1B2" * 9, "ghp_" + "a1B2" * 9),
    ("github_pat_" + "x9" * 11, "github_pat_" + "x9" * 11),
    ("xoxb-1234567890-abcdef", "xoxb-1234567890-abcdef"),
    ("the value sk-ant-api03abcdefghijklmnopqrstu was printed", "sk-ant-api03abcdefghijklmnopqrstu"),
    ("sk_live_abcdefghijklmnop1234", "sk_live_abcdefghijklmnop1234"),
    ("AIza" + "Sy" * 17 + "Q", "AIza" + "Sy" * 17 + "Q"),
    ("aw_" + "Zq" * 21, "aw_" + "Zq" * 21),
    ("eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2Q", "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2Q"),
]


def test_every_built_in_pattern_has_a_sample_of_its_own():
    owners = [[p for p in DEFAULT_PATTERNS if re.search(p, text)] for text, _ in ONE_PATTERN_EACH]
    assert [len(o) for o in owners] == [1] * len(ONE_PATTERN_EACH), "a sample is caught by several patterns"
    assert {o[0] for o in owners} == set(DEFAULT_PATTERNS), "a pattern has no sample"


@pytest.mark.parametrize("text, secret", ONE_PATTERN_EACH)
def test_each_sample_is_masked(text, secret):
    masked = redactor().text(text)
    assert secret not in masked and MASK in masked


@pytest.mark.parametrize("text, expected", [
    ("PGPASSWORD='p@ss word' psql -h db", "PGPASSWORD='[REDACTED]' psql -h db"),
    ('password: "correct horse battery"', 'password: "[REDACTED]"'),
    ("passwd is hunter22", "passwd is [REDACTED]"),
    ("key: abcd1234secretvalue", "key: [REDACTED]"),
])
def test_the_gaps_a_review_found(text, expected):
    assert redactor().text(text) == expected


@pytest.mark.parametrize("text", ["password is required", "primary key: id", "sort key: created_at",
                                  "the token is valid"])
def test_prose_about_secrets_is_left_alone(text):
    assert redactor().text(text) == text


def test_masking_twice_changes_nothing():
    once = redactor().text(" ".join(text for text, _ in ONE_PATTERN_EACH))
    assert redactor().text(once) == once
