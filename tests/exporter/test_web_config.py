"""The exporter's web config (exporter-toolkit's format) as it is read: a good file gives
its users and TLS settings, with paths relative to the file; every kind of bad file is one
BatonError naming the file and the problem; the password check accepts only the right pair
and pays bcrypt once for it."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import bcrypt
import pytest

from baton.errors import BatonError
from baton.webauth import Passwords, load_web_config, tls_context
from tests.exporter.web_config_files import PASSWORD, USER, bcrypt_hash, self_signed, web_config


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_good_file_gives_users_and_tls_relative_to_it(tmp_path: Path) -> None:
    path = web_config(tmp_path)
    config = load_web_config(path)
    assert list(config.users) == [USER]
    assert bcrypt.checkpw(PASSWORD.encode(), config.users[USER])
    assert config.tls is not None
    assert config.tls.cert_file == tmp_path / "exporter.crt"
    assert config.tls.key_file == tmp_path / "exporter.key"
    assert (config.tls.min_version, config.tls.client_auth_type) == ("TLS12", "NoClientCert")
    context = tls_context(config)
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE


def test_htpasswd_hashes_and_a_client_ca_are_taken(tmp_path: Path) -> None:
    self_signed(tmp_path)
    self_signed(tmp_path, "clients")
    hashed = "$2y$" + bcrypt_hash(PASSWORD)[4:]  # what `htpasswd -nBC 10` writes
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: exporter.crt\n  key_file: exporter.key\n"
                    f"  client_ca_file: clients.crt\n  client_auth_type: "
                    f"RequireAndVerifyClientCert\n  min_version: TLS13\n"
                    f"http_server_config:\n  http2: true\nbasic_auth_users:\n  ops: '{hashed}'\n")
    context = tls_context(load_web_config(path))
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3
    assert Passwords(load_web_config(path).users).check(basic("ops", PASSWORD))


def test_an_empty_file_is_plain_http_without_auth(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("")
    config = load_web_config(tmp_path / "web.yml")
    assert (dict(config.users), config.tls, tls_context(config)) == ({}, None, None)


BAD = {
    "not YAML": ("basic_auth_users: [\n", "not YAML"),
    "not a mapping": ("- a\n- b\n", "the file must be a mapping"),
    "unknown key": ("basic_auth_user:\n  a: x\n", "unknown key basic_auth_user"),
    "unknown nested key": ("tls_server_config:\n  cert: a\n  certfile: b\n",
                           "tls_server_config.cert is not supported"),
    "toolkit key baton lacks": ("tls_server_config:\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
                                "tls_server_config.cipher_suites is not supported"),
    "not a bcrypt hash": ("basic_auth_users:\n  ops: plaintext\n",
                          "basic_auth_users.ops: not a bcrypt hash"),
    "a bcrypt hash of no cost bcrypt has": ("basic_auth_users:\n  ops: '$2b$99$" + "a" * 53
                                            + "'\n", "basic_auth_users.ops: not a bcrypt hash"),
    "a SHA hash": ("basic_auth_users:\n  ops: '{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g='\n",
                   "basic_auth_users.ops: not a bcrypt hash"),
    "users not a mapping": ("basic_auth_users: [ops]\n", "basic_auth_users must map"),
    "an empty tls_server_config": ("tls_server_config:\n",
                                   "tls_server_config needs cert_file and key_file"),
    "no key_file": ("tls_server_config:\n  cert_file: a.crt\n",
                    "tls_server_config needs cert_file and key_file"),
    "bad client_auth_type": ("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                             "  client_auth_type: RequestClientCert\n",
                             "client_auth_type 'RequestClientCert'"),
    "a client CA without a policy": ("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                     "  client_ca_file: ca.crt\n",
                                     "a client_ca_file needs a client_auth_type"),
    "a policy without a client CA": ("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                                     "  client_auth_type: VerifyClientCertIfGiven\n",
                                     "VerifyClientCertIfGiven needs a client_ca_file"),
    "bad TLS version": ("tls_server_config:\n  cert_file: a\n  key_file: b\n"
                        "  min_version: TLS1.2\n", "TLS version 'TLS1.2'"),
}


@pytest.mark.parametrize("case", BAD)
def test_a_bad_file_is_one_line_naming_it_and_the_problem(tmp_path: Path, case: str) -> None:
    text, problem = BAD[case]
    path = tmp_path / "web.yml"
    path.write_text(text)
    with pytest.raises(BatonError) as err:
        load_web_config(path)
    message = str(err.value)
    assert message.startswith(f"web config {path}: ") and problem in message, message
    assert "\n" not in message


def test_an_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BatonError, match=r"web config .*nowhere.yml: cannot read it \(No such"):
        load_web_config(tmp_path / "nowhere.yml")


@pytest.mark.parametrize("which", ["cert", "key", "ca"])
def test_a_missing_or_wrong_certificate_is_one_line_at_start(tmp_path: Path, which: str
                                                             ) -> None:
    self_signed(tmp_path)
    names = {"cert": "exporter.crt", "key": "exporter.key", "ca": "exporter.crt"}
    names[which] = "missing.pem" if which != "key" else "exporter.crt"  # a cert is no key
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {names['cert']}\n  key_file: "
                    f"{names['key']}\n  client_ca_file: {names['ca']}\n"
                    "  client_auth_type: VerifyClientCertIfGiven\n")
    config = load_web_config(path)
    with pytest.raises(BatonError) as err:
        tls_context(config)
    message = str(err.value)
    assert message.startswith(f"web config {path}: ") and "\n" not in message
    if which == "key":
        assert f"key_file {tmp_path / 'exporter.crt'}: not PEM, or the key does not " \
            "match the certificate" in message
    else:
        assert str(tmp_path / "missing.pem") in message


def test_only_the_right_pair_passes_and_bcrypt_runs_once_for_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    passwords = Passwords({USER: bcrypt_hash(PASSWORD).encode(),
                           "ops": bcrypt_hash("other").encode()})
    calls = []
    real = bcrypt.checkpw
    monkeypatch.setattr(bcrypt, "checkpw", lambda *a: calls.append(a) or real(*a))
    assert not passwords.check(None)
    assert not passwords.check("Bearer abc")
    assert not passwords.check("Basic not-base64!")
    assert not passwords.check(basic(USER, "wrong"))
    assert not passwords.check(basic("ops", PASSWORD))  # another user's password
    assert not passwords.check(basic("nobody", PASSWORD))
    assert not passwords.check(basic(USER, "x" * 100))  # beyond bcrypt's 72 bytes
    assert len(calls) == 4  # the unknown user cost a check too (timing says nothing)
    for _ in range(5):
        assert passwords.check(basic(USER, PASSWORD))
    assert len(calls) == 5  # one bcrypt check, then the remembered pair
    assert not passwords.check(basic(USER, PASSWORD + "x"))  # a wrong one is never remembered
    assert not passwords.check(basic(USER, PASSWORD + "x"))
    assert len(calls) == 7
