"""The one rule for credentials: what names one, and how text is cleaned of them.

Result rows keep a trial's error line and trackers are given a trial's parameters; either
could echo a credential (an exception that prints the environment, a storage URI with a
password in it). Both go through this rule:

- a *secret key* is a name holding SECRET, TOKEN, PASSWORD/PASSWD, CREDENTIAL, ACCESS_KEY,
  SESSION_KEY, API_KEY, PRIVATE_KEY or AUTH/AUTHORIZATION (any case, anywhere in the name:
  ``WANDB_API_KEY``, ``HF_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``);
- in text, the value of ``KEY=value`` / ``KEY: value`` for a secret key, an HTTP
  ``Bearer``/``Basic`` credential, the password of ``scheme://user:password@host`` and AWS
  access key ids (``AKIA...``, ``ASIA...``) become ``<redacted>``.
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"

_WORDS = (r"SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL|ACCESS_KEY|SESSION_KEY|API_KEY|PRIVATE_KEY"
          r"|AUTH(?:ORIZATION)?(?![A-Z])")
_SECRET_KEY = re.compile(_WORDS, re.IGNORECASE)
# KEY=value, KEY: value, "KEY": "value": the key, separator and quotes stay, the value goes.
_PAIR = re.compile(
    rf"\b(?P<key>[\w.-]*?(?:{_WORDS})[\w.-]*[\"']?\s*[=:]\s*[\"']?)[^\s\"',;}}\]]+",
    re.IGNORECASE)
_HTTP_AUTH = re.compile(r"\b(Bearer|Basic)\s+[\w.~+/=-]+", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/\s:@]+:)[^/\s@]+@")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def is_secret_key(name: str) -> bool:
    """Whether ``name`` (an environment variable, a config path) names a credential."""
    return _SECRET_KEY.search(name) is not None


def redact(text: str) -> str:
    """``text`` with every credential this module recognises replaced by ``<redacted>``."""
    text = _HTTP_AUTH.sub(rf"\1 {REDACTED}", text)
    text = _PAIR.sub(rf"\g<key>{REDACTED}", text)
    text = _URL_PASSWORD.sub(rf"\1{REDACTED}@", text)
    return _AWS_KEY_ID.sub(REDACTED, text)


def has_secret(text: str) -> bool:
    """Whether ``text`` holds something :func:`redact` would hide."""
    return redact(text) != text
