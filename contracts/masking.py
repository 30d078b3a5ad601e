"""Secrets in job definitions: how a literal credential is recognised, and the one
display form of a definition every view uses.

- ``credential_problem(name, value)``: why a header value is a literal credential
  (or None). A header is *secret-bearing* when its name is ``Authorization``,
  ``Proxy-Authorization``, ``Cookie``, ``X-Api-Key`` or contains ``token``,
  ``secret``, ``key``, ``password``, ``passwd``, ``auth``, ``credential`` or
  ``session`` (any case); its value may then hold only ``${env.NAME}`` references,
  run values such as ``${run_id}``, auth scheme words (``Bearer``, ``Basic``, ...),
  parameter names followed by ``=`` and separators: ``Bearer ${env.API_TOKEN}``,
  ``session=${env.SESSION}``.
- ``masked_definition(definition, reader=False)``: the JSON form of a job with every
  secret-bearing field masked (``***``): header values (but a few harmless ones such
  as ``Accept``), URL userinfo and query values, rest ``params``, literal values under
  credential-like keys of request bodies, database URL passwords. ``${...}``
  references stay as written (they name a variable, they are not its value). Readers
  (``reader=True``) get no ``headers``, ``auth``, ``params`` or ``body`` at all, and URLs
  without query string or password.
- ``scrub_urls(text)``: ``text`` with every URL's userinfo and credential-like query
  values masked; applied to every datasource error and log message.

Template syntax as in ``datasources.templates``: ``${KEY}`` is a placeholder, ``$${``
a literal ``${``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from pydantic import BaseModel

__all__ = [
    "MASK",
    "credential_problem",
    "env_references",
    "is_secret_header",
    "mask_url",
    "masked_definition",
    "scrub_urls",
    "template_parts",
    "userinfo_problem",
]

MASK = "***"

#: ``$${`` (an escaped ``${``) or ``${KEY}``; the same alternatives, in the same order,
#: as ``datasources.templates._Template``, so both read a text the same way.
_TEMPLATE_RE = re.compile(r"\$(?:(?P<escaped>\$(?=\{))|\{(?P<braced>[^{}$]*)\})")
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
_SECRET_WORDS = (
    "token", "secret", "key", "password", "passwd", "auth", "credential", "session",
)  # fmt: skip
#: Header values shown unmasked to admins (they never carry credentials).
_PLAIN_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "content-type", "soapaction", "user-agent"}
)
#: Words that may stand literally in a credential header: auth schemes.
_SCHEMES = frozenset(
    {"basic", "bearer", "digest", "token", "apikey", "api-key", "key", "negotiate", "ntlm",
     "hoba", "mutual", "oauth", "jwt", "sso"}
)  # fmt: skip
_WORD_RE = re.compile(r"[^\s:;,=]+")
_URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
#: Query parameter names whose values are masked in messages.
_SECRET_PARAM_RE = re.compile(
    r"(key|token|secret|password|passwd|pwd|auth|signature|sig|credential|session|code)$",
    re.I,
)
_XML_SECRET_RE = re.compile(
    r"<(?P<tag>[\w:.-]*(?:password|passwd|secret|token|key|credential)[\w.-]*)(?P<attrs>[^>]*)>"
    r"(?P<text>[^<]*)</",
    re.I,
)

Part = tuple[str, str]  # (kind, text): literal | env | placeholder | escaped


def template_parts(text: str) -> Iterator[Part]:
    """``text`` split into ``("literal", text)``, ``("env", NAME)``, ``("placeholder",
    KEY)`` (any other ``${KEY}``) and ``("escaped", "${")`` parts."""
    position = 0
    for match in _TEMPLATE_RE.finditer(text):
        if match.start() > position:
            yield "literal", text[position : match.start()]
        if match["escaped"] is not None:
            yield "escaped", "${"
        else:
            key = match["braced"]
            if key.startswith("env."):
                yield "env", key[4:]
            else:
                yield "placeholder", key
        position = match.end()
    if position < len(text):
        yield "literal", text[position:]


def env_references(text: str) -> list[str]:
    """The variable names of the ``${env.NAME}`` references in ``text``."""
    return [name for kind, name in template_parts(text) if kind == "env"]


def is_secret_header(name: str) -> bool:
    """Whether a header of this name carries credentials (see the module docstring)."""
    lowered = name.lower()
    return lowered in _SECRET_HEADERS or any(word in lowered for word in _SECRET_WORDS)


def _literal_words(text: str) -> Iterator[tuple[int, int, bool]]:
    """(start, end, allowed) of each word of a literal part of a credential value."""
    for match in _WORD_RE.finditer(text):
        word = match.group()
        followed_by_equals = text[match.end() : match.end() + 1] == "="
        yield match.start(), match.end(), word.lower() in _SCHEMES or followed_by_equals


def _literal_secret(parts: list[Part]) -> bool:
    for kind, text in parts:
        if kind == "placeholder" and text.startswith("params."):
            return True  # params are data of the job or the message: a literal in disguise
        if kind in ("literal", "escaped") and not all(ok for *_, ok in _literal_words(text)):
            return True
    return False


def credential_problem(name: str, value: str) -> str | None:
    """Why header ``name: value`` holds a literal credential, or None. The message
    never repeats the value."""
    if not is_secret_header(name) or not _literal_secret(list(template_parts(value))):
        return None
    return (
        f"header {name!r} carries a credential written literally in the job: write it as "
        "a reference to an environment variable, ${env.NAME} (e.g. 'Bearer "
        "${env.API_TOKEN}'), set that variable on the workers and allow it in "
        "SLURP_JOB_ENV_ALLOW; or use 'auth' (token_env, password_env, ...)"
    )


def userinfo_problem(url: str) -> str | None:
    """Why the http(s) ``url`` must not be used as written (it has a user name or
    password), or None. Never repeats the URL."""
    netloc = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" not in netloc:
        return None
    return (
        "the URL contains a user name or password (userinfo 'user:password@'): remove it "
        "and use 'auth' (type basic with username_env/password_env, or bearer with "
        "token_env) or a header such as Authorization: 'Bearer ${env.API_TOKEN}'"
    )


def _mask_literals(value: str) -> str:
    """``value`` with its literal parts masked; references and scheme words kept."""
    out: list[str] = []
    for kind, text in template_parts(value):
        if kind == "env":
            out.append(f"${{env.{text}}}")
        elif kind == "placeholder":
            out.append(f"${{{text}}}")
        else:
            kept, position = [], 0
            for start, end, ok in _literal_words(text):
                kept.append(text[position:start])
                kept.append(text[start:end] if ok else MASK)
                position = end
            kept.append(text[position:])
            out.append("".join(kept))
    masked = "".join(out)
    return re.sub(r"\*\*\*(?:\s*\*\*\*)+", MASK, masked)


def _only_reference(text: str) -> bool:
    parts = list(template_parts(text))
    return len(parts) == 1 and parts[0][0] in ("env", "placeholder")


def mask_url(url: str, *, reader: bool = False) -> str:
    """``url`` for display: userinfo masked (a database user name stays, its password
    is masked unless it is a ``${env.NAME}`` reference shown to an admin); query
    values masked unless they are references (readers: no query string at all)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, password = userinfo.partition(":")
        if parts.scheme.lower() in ("http", "https"):
            netloc = f"{MASK}@{host}"
        else:
            shown = password if colon and not reader and _only_reference(password) else MASK
            netloc = f"{user}:{shown}@{host}" if colon else f"{user}@{host}"
    query = ""
    if parts.query and not reader:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k, safe='${}.')}={v if _only_reference(v) else MASK}" for k, v in pairs
        )
    fragment = "" if reader else parts.fragment
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def scrub_urls(text: str) -> str:
    """``text`` with the userinfo of every URL in it, and the values of its
    credential-like query parameters (``api_key``, ``access_token``, ``sig``, ...),
    replaced by ``***``. Other query values stay (``page=2`` helps debugging)."""
    if "://" not in text:
        return text
    return _URL_RE.sub(lambda match: _scrub_url(match.group()), text)


def _scrub_url(match: str) -> str:
    url = match.rstrip(":,.;)]}")
    trailing = match[len(url) :]  # punctuation of the sentence around the URL
    scheme, _, rest = url.partition("://")
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    authority, tail = (rest, "") if end < 0 else (rest[:end], rest[end:])
    if "@" in authority:
        authority = f"{MASK}@{authority.rpartition('@')[2]}"
    path, question, query = tail.partition("?")
    if question:
        query, hash_, fragment = query.partition("#")
        pairs = []
        for pair in query.split("&"):
            name, equals, _ = pair.partition("=")
            secret = equals and _SECRET_PARAM_RE.search(name.replace("-", "_"))
            pairs.append(f"{name}={MASK}" if secret else pair)
        tail = f"{path}?{'&'.join(pairs)}{hash_}{fragment}"
    return f"{scheme}://{authority}{tail}{trailing}"


def _mask_body(value: Any) -> Any:
    """Literal values under credential-like keys of a JSON body, or credential-like
    elements of an XML body, masked."""
    if isinstance(value, str):
        return _XML_SECRET_RE.sub(
            lambda m: (
                f"<{m['tag']}{m['attrs']}>{m['text'] if _only_reference(m['text']) else MASK}</"
            ),
            value,
        )
    if isinstance(value, Mapping):
        return {
            k: _mask_literals(v)
            if isinstance(v, str) and is_secret_header(str(k))
            else _mask_body(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_mask_body(v) for v in value]
    return value


def _masked_source(source: Mapping[str, Any], reader: bool) -> dict[str, Any]:
    out = dict(source)
    if isinstance(out.get("url"), str):
        out["url"] = mask_url(out["url"], reader=reader)
    if reader:
        for field in ("headers", "auth", "params", "body"):
            out.pop(field, None)
        return out
    headers = out.get("headers")
    if isinstance(headers, Mapping):
        out["headers"] = {
            name: value
            if str(name).lower() in _PLAIN_HEADERS and not is_secret_header(str(name))
            else _mask_literals(str(value))
            for name, value in headers.items()
        }
    auth = out.get("auth")
    if isinstance(auth, Mapping) and isinstance(auth.get("token_url"), str):
        out["auth"] = {**auth, "token_url": mask_url(auth["token_url"])}
    params = out.get("params")
    if out.get("type") == "rest" and isinstance(params, Mapping):
        out["params"] = {k: _mask_literals(str(v)) for k, v in params.items()}
    if out.get("body") is not None:
        out["body"] = _mask_body(out["body"])
    return out


def masked_definition(
    definition: BaseModel | Mapping[str, Any], *, reader: bool = False
) -> dict[str, Any]:
    """The display form of a job definition (a model, or its JSON form as stored):
    every secret-bearing field masked; for ``reader``s, no headers, auth, request
    params or bodies and URLs without query strings. The one function every view (CLI,
    API, console) uses."""
    data = (
        definition.model_dump(mode="json")
        if isinstance(definition, BaseModel)
        else dict(definition)
    )
    sources = data.get("datasources")
    if isinstance(sources, list):
        data["datasources"] = [
            _masked_source(s, reader) if isinstance(s, Mapping) else MASK for s in sources
        ]
    return data
