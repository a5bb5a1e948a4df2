"""``baton exporter|web --web-config FILE``: the file of Prometheus' exporter-toolkit (what
node_exporter reads: ``basic_auth_users`` with bcrypt hashes, ``tls_server_config``), so
one file serves both. Read and checked whole at start, where a bad file is one line naming
it; the TLS context and the password check it makes are what the server uses."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from baton.errors import BatonError

# $2a$/$2b$/$2y$ (htpasswd -B writes 2y), a two-digit cost, 22 characters of salt and 31 of
# hash in bcrypt's base64
BCRYPT_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
TLS_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
                "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
# the toolkit's client_auth_type -> Python's verify mode; RequestClientCert and
# RequireAnyClientCert take a certificate without verifying it, which Python's ssl cannot
CLIENT_AUTH = {"NoClientCert": ssl.CERT_NONE, "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
               "RequireAndVerifyClientCert": ssl.CERT_REQUIRED}
# keys of the toolkit's format that baton does not implement: said so, never ignored
UNSUPPORTED = {"rate_limit", "tls_server_config.cert", "tls_server_config.key",
               "tls_server_config.client_ca", "tls_server_config.client_allowed_sans",
               "tls_server_config.cipher_suites", "tls_server_config.curve_preferences",
               "tls_server_config.prefer_server_cipher_suites", "http_server_config.headers"}
KNOWN = {"": {"tls_server_config", "http_server_config", "basic_auth_users"},
         "tls_server_config": {"cert_file", "key_file", "client_ca_file", "client_auth_type",
                               "min_version", "max_version"},
         "http_server_config": {"http2"}}  # http2: baton serves HTTP/1, which every client speaks
CACHED_CHECKS = 1024  # successful (user, password) pairs remembered, so a scrape skips bcrypt


@dataclass(frozen=True)
class TLSSettings:
    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    min_version: str = "TLS12"
    max_version: str = "TLS13"


@dataclass(frozen=True)
class WebConfig:
    path: Path
    users: Mapping[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    tls: TLSSettings | None = None


def load_web_config(path: Path) -> WebConfig:
    """The file at ``path``, checked; :class:`BatonError` naming it and the problem."""
    def bad(problem: str) -> BatonError:
        return BatonError(f"web config {path}: {problem}")

    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise bad(f"not YAML ({' '.join(str(exc).split())})") from None
    doc = {} if doc is None else doc  # an empty file is no auth and no TLS, as for the toolkit
    _check_keys(doc, "", bad)
    users = doc.get("basic_auth_users") or {}
    if not isinstance(users, dict):
        raise bad("basic_auth_users must map user names to bcrypt hashes")
    hashes = {}
    for user, hashed in users.items():
        if not isinstance(hashed, str) or not BCRYPT_HASH.fullmatch(hashed) or not (
                4 <= int(hashed[4:6]) <= 31):  # bcrypt's costs
            raise bad(f"basic_auth_users.{user}: not a bcrypt hash (make one with "
                      "htpasswd -nBC 10 USER, or bcrypt.hashpw)")
        hashes[str(user)] = hashed.encode()
    tls = None  # an empty tls_server_config is a mistake, not plain HTTP
    if "tls_server_config" in doc:
        tls = _tls(doc["tls_server_config"] or {}, path.parent, bad)
    return WebConfig(path, hashes, tls)


def _check_keys(doc: Any, where: str, bad: Callable[[str], BatonError]) -> None:
    if not isinstance(doc, dict):
        raise bad(f"{where or 'the file'} must be a mapping")
    for key in doc:
        name = f"{where}.{key}" if where else str(key)
        if name in UNSUPPORTED:
            raise bad(f"{name} is not supported by baton")
        if key not in KNOWN[where]:
            raise bad(f"unknown key {name}")
        if name in KNOWN and doc[key] is not None:
            _check_keys(doc[key], name, bad)


def _tls(doc: dict[str, Any], here: Path, bad: Callable[[str], BatonError]) -> TLSSettings:
    """Paths relative to the file's folder, as the toolkit reads them."""
    def path(key: str) -> Path | None:
        value = doc.get(key)
        if value in (None, ""):
            return None
        return here / str(value)

    cert, key, ca = path("cert_file"), path("key_file"), path("client_ca_file")
    if cert is None or key is None:
        raise bad("tls_server_config needs cert_file and key_file")
    auth = doc.get("client_auth_type") or "NoClientCert"
    if auth not in CLIENT_AUTH:
        raise bad(f"tls_server_config.client_auth_type {auth!r}: baton takes "
                  f"{', '.join(CLIENT_AUTH)}")
    if ca is not None and auth == "NoClientCert":
        raise bad("tls_server_config: a client_ca_file needs a client_auth_type that "
                  "verifies (VerifyClientCertIfGiven or RequireAndVerifyClientCert)")
    if ca is None and auth != "NoClientCert":
        raise bad(f"tls_server_config: client_auth_type {auth} needs a client_ca_file")
    versions = [doc.get(k) or d for k, d in (("min_version", "TLS12"), ("max_version",
                                                                         "TLS13"))]
    for version in versions:
        if version not in TLS_VERSIONS:
            raise bad(f"tls_server_config: TLS version {version!r} is not one of "
                      f"{', '.join(TLS_VERSIONS)}")
    return TLSSettings(cert, key, ca, auth, *versions)


def tls_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server's TLS context (None without ``tls_server_config``): the certificate, key
    and client CA loaded now, so a missing or wrong one is said at start."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise BatonError(f"web config {config.path}: cert_file {tls.cert_file} with key_file "
                         f"{tls.key_file}: {_reason(exc)}") from None
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(tls.client_ca_file)
        except OSError as exc:  # ssl.SSLError too
            raise BatonError(f"web config {config.path}: client_ca_file "
                             f"{tls.client_ca_file}: {_reason(exc)}") from None
        context.verify_mode = CLIENT_AUTH[tls.client_auth_type]
    return context


def _reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):  # "[SSL] PEM lib (_ssl.c:3926)": OpenSSL's words only
        said = re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc.args[-1]))
        return f"not PEM, or the key does not match the certificate ({said})"
    return exc.strerror or str(exc)


class Passwords:
    """Checks an ``Authorization: Basic`` header against the bcrypt hashes. bcrypt compares
    in constant time and costs tens of milliseconds by design: a pair that passed is
    remembered (as a SHA-256 of user, password and hash, never the password) so a scrape
    every few seconds pays it once. An unknown user costs a bcrypt check too, so timing
    does not tell which users exist."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self.users = dict(users)
        self.passed: set[bytes] = set()
        cost = next(iter(self.users.values()))[4:6] if self.users else b"10"
        self.decoy = bcrypt.hashpw(b"decoy", bcrypt.gensalt(int(cost)))

    def check(self, header: str | None) -> bool:
        if not header or header[:6].lower() != "basic ":
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True
                                                 ).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        seen = hashlib.sha256(b"\0".join((user.encode(), password.encode(),
                                          hashed or b""))).digest()
        if hashed is not None and seen in self.passed:
            return True
        try:
            ok = bcrypt.checkpw(password.encode(), hashed or self.decoy) and hashed is not None
        except ValueError:  # a password over bcrypt's 72 bytes
            return False
        if ok:
            if len(self.passed) >= CACHED_CHECKS:
                self.passed.clear()
            self.passed.add(seen)
        return ok
