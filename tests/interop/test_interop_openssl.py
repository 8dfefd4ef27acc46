"""Interoperability with an independent implementation: the OpenSSL command line.

``objenc-openssl.sh`` (next to this file) implements draft-miller-3923bis-02
as pinned down by ``docs/PROTOCOL.md`` with bash, ``openssl``, ``base64``,
``od``, ``tr``, ``sed``, ``printf``, ``head`` and ``tail`` only.  Nothing
here uses the project's crypto or wire-format code: keys and certificates
come from ``openssl req``, envelopes are made and opened by the script, and
the plugin is only exercised as a black box through a real Prosody server.

* offline: the script against itself (sanity, layouts, tampering);
* through Prosody: "romeo" runs slixmpp with the plugin, "juliet" is a plain
  slixmpp client used as a transport and does all the crypto with the script.
"""

from __future__ import annotations

import asyncio
import base64
import re
import shutil
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import pytest
import pytest_asyncio
from slixmpp import JID, ClientXMPP
from slixmpp.xmlstream import tostring
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

import slixmpp_objenc
from slixmpp_objenc.store import MemoryStorage
from slixmpp_objenc.testing import ProsodyServer

SCRIPT = Path(__file__).resolve().with_name("objenc-openssl.sh")
NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
NS_E2E_ERRORS = "urn:ietf:params:xml:xmpp-e2e"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_CLIENT = "jabber:client"
XMPP_ADDR_OID = "1.3.6.1.5.5.7.8.5"
WAIT = 10.0
BODY = "Wherefore art thou, Romeo? <3 & ü — 🌙"
# Large enough that hex(T) no longer fits one argv string, so the script takes
# its RFC 2104 hashed-HMAC-key path; small enough for Prosody's 256 KiB limit.
LONG_BODY = BODY + " " + "x" * 60_000

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None or shutil.which("bash") is None,
    reason="needs the openssl command line and bash",
)


# ------------------------------------------------------------------ helpers


def run_script(*args: str | Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["bash", str(SCRIPT), *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
    )


def make_identity(directory: Path, jid: str, bits: int = 3072) -> tuple[Path, Path]:
    """RSA key + self-signed certificate naming *jid*, exactly as PROTOCOL.md §8."""
    local = jid.split("@", 1)[0]
    key, cert = directory / f"{local}.key", directory / f"{local}.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", f"rsa:{bits}", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "3650",
            "-subj", f"/CN={jid}",
            "-addext", f"subjectAltName=otherName:{XMPP_ADDR_OID};UTF8:{jid}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )  # fmt: skip
    return key, cert


def fingerprint(cert: Path) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256"],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    return out.strip().split("=", 1)[1].replace(":", "").lower()


def timestamp(when: datetime | None = None) -> str:
    """RFC 3339 UTC with milliseconds and ``Z`` (PROTOCOL.md §6)."""
    when = when or datetime.now(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def seal(cert: Path, stanza: str | bytes, when: str, *, aes256: bool = False) -> str:
    data = stanza.encode() if isinstance(stanza, str) else stanza
    args = ["seal", *(["--aes256"] if aes256 else []), cert, when]
    proc = run_script(*args, stdin=data)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout.decode().strip()


def open_envelope(key: Path, e2e: str, *extra: str | Path) -> subprocess.CompletedProcess[bytes]:
    return run_script("open", *extra, key, stdin=e2e.encode())


_DATA_RE = re.compile(r"(<data\b[^>]*>)([^<]*)(</data>)")


def flip_data_char(e2e: str) -> str:
    """Change one base64 character in the middle of <data/>'s text (still valid base64)."""
    match = _DATA_RE.search(e2e)
    assert match is not None
    at = match.start(2) + len(match[2]) // 2
    new = "A" if e2e[at] != "A" else "B"
    return e2e[:at] + new + e2e[at + 1 :]


def parse_envelope(e2e: str) -> ET.Element:
    root = ET.fromstring(e2e)
    assert root.tag == f"{{{NS}}}e2e"
    return root


def inner_message(sender: JID, recipient: JID, body: str, ident: str = "inner1") -> str:
    """The stanza-string S' (PROTOCOL.md §3 steps 1 and 4), written by hand."""
    return (
        f"<message xmlns='jabber:client' from='{sender.full}' to='{recipient.full}' "
        f"type='chat' id='{ident}'><body>{escape(body)}</body></message>"
    )


def future_from(
    client: ClientXMPP, event: str, accept: Callable[[Any], bool] = lambda _x: True
) -> asyncio.Future[Any]:
    """A future resolved by the first *event* on *client* that *accept* takes."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def handler(data: Any) -> None:
        if not future.done() and accept(data):
            future.set_result(data)

    client.add_event_handler(event, handler)
    future.add_done_callback(lambda _f: client.del_event_handler(event, handler))
    return future


# ------------------------------------------------------- offline (script only)


@pytest.fixture(scope="module")
def romeo_identity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_identity(tmp_path_factory.mktemp("romeo"), "romeo@montague.example")


@pytest.fixture(scope="module")
def stranger_identity(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_identity(tmp_path_factory.mktemp("stranger"), "stranger@example.org", 2048)


SAMPLE = (
    "<message xmlns='jabber:client' from='juliet@capulet.example/balcony' "
    "to='romeo@montague.example/orchard' type='chat' id='183ef129'>"
    "<thread>8996aef0</thread><body>Wherefore art thou, Romeo? &amp; ü</body></message>"
).encode()


@pytest.mark.parametrize(
    ("aes256", "cipher"),
    [(False, "AES-128-CBC-PKCS5-WITH-IV"), (True, "AES-256-CBC-PKCS5-WITH-IV")],
)
def test_seal_open_round_trip(romeo_identity: tuple[Path, Path], aes256: bool, cipher: str) -> None:
    key, cert = romeo_identity
    when = timestamp()
    e2e = seal(cert, SAMPLE, when, aes256=aes256)

    root = parse_envelope(e2e)
    keys = root.findall(f"{{{NS}}}key")
    datas = root.findall(f"{{{NS}}}data")
    assert len(keys) == 1 and len(datas) == 1
    assert keys[0].get("cipher-algo") == "RSAES-OAEP-SHA-256-MFG1"
    assert datas[0].get("cipher-algo") == cipher
    assert datas[0].get("mac-algo") == "HMACSHA256"
    assert len(base64.b64decode(keys[0].text or "", validate=True)) == 3072 // 8
    assert len(base64.b64decode(datas[0].get("mac-hash", ""), validate=True)) == 32
    t = base64.b64decode(datas[0].text or "", validate=True)
    assert len(t) >= 32 and len(t) % 16 == 0

    proc = open_envelope(key, e2e)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == SAMPLE
    assert proc.stderr.decode().strip() == when


def test_each_seal_uses_fresh_randomness(romeo_identity: tuple[Path, Path]) -> None:
    _key, cert = romeo_identity
    when = timestamp()
    first, second = seal(cert, SAMPLE, when), seal(cert, SAMPLE, when)
    assert first != second
    data = [parse_envelope(e).find(f"{{{NS}}}data") for e in (first, second)]
    assert data[0] is not None and data[1] is not None
    assert data[0].text != data[1].text


def test_open_accepts_the_drafts_layout(romeo_identity: tuple[Path, Path]) -> None:
    """Double quotes, pretty-printing, base64 wrapped at 63 columns, ``mac-data``."""
    key, cert = romeo_identity
    e2e = seal(cert, SAMPLE, timestamp())

    def wrap(match: re.Match[str]) -> str:
        text = match[2]
        lines = [text[i : i + 63] for i in range(0, len(text), 63)]
        return match[1] + "\n         " + "\n         ".join(lines) + "\n       " + match[3]

    pretty = re.sub(r"(<(?:key|data)\b[^>]*>)([^<]*)(</)", wrap, e2e)
    pretty = (
        pretty.replace("'", '"')
        .replace("mac-hash", "mac-data")
        .replace("<key ", "\n       <key    ")
        .replace("<data ", "\n       <data   ")
        .replace(" mac-algo", "\n               mac-algo")
        .replace("</e2e>", "\n     </e2e>\n")
    )
    assert "\n" in pretty and "mac-data=" in pretty
    proc = open_envelope(key, pretty)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == SAMPLE

    prefixed = re.sub(r"<(/?)(e2e|key|data)\b", r"<\1p:\2", e2e).replace("xmlns=", "xmlns:p=")
    proc = open_envelope(key, prefixed)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == SAMPLE


def test_large_stanza_round_trip(romeo_identity: tuple[Path, Path]) -> None:
    """T too long for one argv string: the script hashes the HMAC key first (RFC 2104)."""
    key, cert = romeo_identity
    stanza = (
        "<message xmlns='jabber:client' from='a@example.org/x' to='romeo@montague.example'>"
        f"<body>{'x' * 150_000}</body></message>"
    ).encode()
    proc = open_envelope(key, seal(cert, stanza, timestamp()))
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == stanza


@pytest.mark.parametrize("part", ["data", "mac", "key"])
def test_open_refuses_tampered_envelopes(romeo_identity: tuple[Path, Path], part: str) -> None:
    key, cert = romeo_identity
    e2e = seal(cert, SAMPLE, timestamp())
    if part == "data":
        bad = flip_data_char(e2e)
    elif part == "mac":
        mac = re.search(r"mac-hash='([^']*)'", e2e)
        assert mac is not None
        bad = e2e.replace(mac[1], ("B" if mac[1][0] == "A" else "A") + mac[1][1:])
    else:
        k = re.search(r"(<key\b[^>]*>)([^<]*)", e2e)
        assert k is not None
        at = k.start(2) + 100
        bad = e2e[:at] + ("A" if e2e[at] != "A" else "B") + e2e[at + 1 :]
    assert bad != e2e
    proc = open_envelope(key, bad)
    assert proc.returncode == 1
    assert proc.stdout == b""
    expected = "no <key/> could be unwrapped" if part == "key" else "MAC mismatch"
    assert expected in proc.stderr.decode()


def test_open_with_the_wrong_key_fails(
    romeo_identity: tuple[Path, Path], stranger_identity: tuple[Path, Path]
) -> None:
    _key, cert = romeo_identity
    proc = open_envelope(stranger_identity[0], seal(cert, SAMPLE, timestamp()))
    assert proc.returncode == 1 and proc.stdout == b""


def test_open_picks_its_key_by_cert_sha256(
    romeo_identity: tuple[Path, Path], stranger_identity: tuple[Path, Path]
) -> None:
    """Several <key/>s (PROTOCOL.md §3 step 10): ours is named by ``cert-sha256``."""
    key, cert = romeo_identity
    e2e = seal(cert, SAMPLE, timestamp())
    decoy = parse_envelope(seal(stranger_identity[1], SAMPLE, timestamp())).find(f"{{{NS}}}key")
    assert decoy is not None
    decoy_xml = (
        f"<key cert-sha256='{fingerprint(stranger_identity[1])}' "
        f"cipher-algo='RSAES-OAEP-SHA-256-MFG1'>{decoy.text}</key>"
    )
    multi = e2e.replace("<key ", f"{decoy_xml}<key cert-sha256='{fingerprint(cert)}' ", 1)
    for extra in (("--cert", cert), ()):
        proc = open_envelope(key, multi, *extra)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stdout == SAMPLE


# --------------------------------------------------------- through Prosody


@dataclass
class Lovers:
    romeo: ClientXMPP  # slixmpp + the objenc plugin
    juliet: ClientXMPP  # plain slixmpp: a transport; crypto by objenc-openssl.sh
    romeo_key: Path
    romeo_cert: Path
    juliet_key: Path
    juliet_cert: Path


LoversFactory = Callable[..., Awaitable[Lovers]]


@pytest_asyncio.fixture
async def make_lovers(
    interop_server: ProsodyServer, connected: Any, tmp_path: Path
) -> LoversFactory:
    async def make(**romeo_config: Any) -> Lovers:
        romeo_jid, romeo_password = await interop_server.create_account("romeo")
        juliet_jid, juliet_password = await interop_server.create_account("juliet")
        (romeo_key, romeo_cert), (juliet_key, juliet_cert) = await asyncio.gather(
            asyncio.to_thread(make_identity, tmp_path, romeo_jid),
            asyncio.to_thread(make_identity, tmp_path, juliet_jid),
        )

        def romeo_factory(jid: str, password: str) -> ClientXMPP:
            client = ClientXMPP(jid, password)
            client.register_plugin(
                "objenc",
                module=slixmpp_objenc,
                pconfig={
                    "key_file": str(romeo_key),
                    "cert_file": str(romeo_cert),
                    "storage": MemoryStorage(),
                    "pep": False,
                    **romeo_config,
                },
            )
            return client

        romeo = await connected(
            romeo_jid, romeo_password, client_factory=romeo_factory, resource="orchard"
        )
        romeo.plugin["objenc"].add_peer_certificate(juliet_cert.read_bytes())
        juliet = await connected(juliet_jid, juliet_password, resource="balcony")
        assert "objenc" not in juliet.plugin
        # Both sessions have sent their initial presence and the server has
        # processed it once a later iq is answered (stanzas are handled in order).
        await asyncio.gather(
            romeo.plugin["xep_0199"].ping(jid=interop_server.domain, timeout=WAIT),
            juliet.plugin["xep_0199"].ping(jid=interop_server.domain, timeout=WAIT),
        )
        return Lovers(romeo, juliet, romeo_key, romeo_cert, juliet_key, juliet_cert)

    return make


def send_envelope(sender: ClientXMPP, to: JID, e2e: str, outer_id: str) -> None:
    """Send the outer stanza as raw XML: slixmpp only transports it."""
    sender.send_raw(f"<message to='{to.full}' type='chat' id='{outer_id}'>{e2e}</message>")


@pytest.mark.integration
@pytest.mark.parametrize(
    ("aes256", "body"),
    [(False, BODY), (True, BODY), (False, LONG_BODY)],
    ids=["aes128", "aes256", "aes128-60k"],
)
async def test_openssl_client_to_plugin(
    make_lovers: LoversFactory, aes256: bool, body: str
) -> None:
    pair = await make_lovers()
    romeo, juliet = pair.romeo, pair.juliet
    received = future_from(romeo, "message", lambda m: m["body"] == body)
    decrypted = future_from(romeo, "objenc_decrypted")
    juliet_errors: list[Any] = []
    juliet.add_event_handler("message_error", juliet_errors.append)

    when = timestamp()
    inner = inner_message(juliet.boundjid, romeo.boundjid, body)
    e2e = await asyncio.to_thread(seal, pair.romeo_cert, inner, when, aes256=aes256)
    outer_id = f"outer-{uuid.uuid4().hex[:8]}"
    send_envelope(juliet, romeo.boundjid, e2e, outer_id)

    msg = await asyncio.wait_for(received, WAIT)
    await asyncio.wait_for(decrypted, WAIT)
    assert msg["from"] == juliet.boundjid
    assert msg["to"] == romeo.boundjid
    assert msg["type"] == "chat"
    assert msg["id"] == "inner1"  # the inner stanza is what gets delivered
    assert msg.xml.find(f"{{{NS}}}e2e") is None
    info = romeo.plugin["objenc"].encryption_info(msg)
    assert info is not None
    assert info.cipher == ("AES-256-CBC-PKCS5-WITH-IV" if aes256 else "AES-128-CBC-PKCS5-WITH-IV")
    assert info.timestamp == parse_timestamp(when)

    await asyncio.sleep(0.5)
    assert juliet_errors == []  # case 2: never an error reply


@pytest.mark.integration
@pytest.mark.parametrize(
    ("target", "cipher", "body"),
    [
        ("full", None, BODY),
        ("bare", None, BODY),
        ("full", "AES-256-CBC-PKCS5-WITH-IV", BODY),
        ("full", None, LONG_BODY),
    ],
    ids=["full", "bare", "aes256", "60k"],
)
async def test_plugin_to_openssl_client(
    make_lovers: LoversFactory, tmp_path: Path, target: str, cipher: str | None, body: str
) -> None:
    pair = await make_lovers(**({"cipher": cipher} if cipher else {}))
    romeo, juliet = pair.romeo, pair.juliet
    loop = asyncio.get_running_loop()
    got: asyncio.Future[Any] = loop.create_future()

    def on_e2e(msg: Any) -> None:
        if not got.done():
            got.set_result(msg)

    # slixmpp's 'message' event only fires for messages with a <body/>; the
    # outer stanza has none, so juliet watches for the envelope itself.
    juliet.register_handler(
        Callback("objenc interop", MatchXPath(f"{{{NS_CLIENT}}}message/{{{NS}}}e2e"), on_e2e)
    )
    juliet_plain = future_from(juliet, "message")

    to = juliet.boundjid if target == "full" else JID(juliet.boundjid.bare)
    romeo.send_message(mto=to, mbody=body, mtype="chat")
    outer = await asyncio.wait_for(got, WAIT)

    assert outer["type"] == "chat"
    assert outer["from"] == romeo.boundjid
    # the outer body is the XEP-0380 fallback notice, never the message
    fallback = outer.xml.findtext(f"{{{NS_CLIENT}}}body") or ""
    assert "end-to-end encrypted" in fallback and body not in fallback
    if juliet_plain.done():
        assert body not in str(juliet_plain.result())
    # romeo's device also speaks the authenticated profile: the draft's copy (for
    # juliet) comes first, which a reader of the draft only takes; then the
    # authenticated copy for romeo's own device (PROTOCOL.md 13.7)
    envelopes = outer.xml.findall(f"{{{NS}}}e2e")
    assert len(envelopes) == 2
    auth_data = envelopes[1].find(f"{{{NS}}}data")
    assert auth_data is not None and auth_data.get("cipher-algo") == "AES-256-GCM"
    data = envelopes[0].find(f"{{{NS}}}data")
    assert data is not None
    assert data.get("cipher-algo") == (cipher or "AES-128-CBC-PKCS5-WITH-IV")

    e2e_xml = tostring(envelopes[0])
    plain_file = tmp_path / "plain.xml"
    proc = await asyncio.to_thread(
        open_envelope,
        pair.juliet_key,
        e2e_xml,
        "--cert",  # the draft's copy: one <key/>, juliet's
        pair.juliet_cert,
        "--plain-out",
        plain_file,
    )
    assert proc.returncode == 0, f"{proc.stderr.decode()}\n{e2e_xml}"

    # PROTOCOL.md §3 step 6 and §6: the exact E' this implementation emits
    # (spaces before '>' pad it to a size class).
    plain = plain_file.read_bytes().decode()
    assert (len(plain) + 1) % 64 == 0
    assert re.fullmatch(
        r"<plain xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0' "
        r"timestamp='\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z' *>[A-Za-z0-9+/]+={0,2}</plain>",
        plain,
    ), plain
    # §3 step 4: S' declares jabber:client on its root.
    root_tag = proc.stdout.split(b">", 1)[0]
    assert re.search(rb"""\sxmlns=(['"])jabber:client\1""", root_tag), root_tag

    inner = ET.fromstring(proc.stdout)
    assert inner.tag == f"{{{NS_CLIENT}}}message"
    assert proc.stdout.lstrip().startswith(b"<message")
    assert JID(inner.get("from", "")) == romeo.boundjid
    assert JID(inner.get("to", "")).bare == juliet.boundjid.bare
    assert JID(inner.get("to", "")) == to
    assert inner.get("type") == "chat"
    assert inner.findtext(f"{{{NS_CLIENT}}}body") == body
    assert inner.get("id") is None or inner.get("id") != outer["id"]
    sent_at = parse_timestamp(proc.stderr.decode().strip())
    assert abs(datetime.now(UTC) - sent_at) < timedelta(minutes=1)


async def _expect_error_reply(
    pair: Lovers, e2e: str, failure_event: str
) -> tuple[Any, Any, list[Any]]:
    romeo, juliet = pair.romeo, pair.juliet
    delivered: list[Any] = []
    romeo.add_event_handler("message", delivered.append)
    failed = future_from(romeo, failure_event)
    outer_id = f"outer-{uuid.uuid4().hex[:8]}"
    error = future_from(juliet, "message_error", lambda m: m["id"] == outer_id)

    send_envelope(juliet, romeo.boundjid, e2e, outer_id)

    reply = await asyncio.wait_for(error, WAIT)
    event = await asyncio.wait_for(failed, WAIT)
    assert reply["type"] == "error"
    assert reply["from"] == romeo.boundjid
    assert reply["to"] == juliet.boundjid
    envelope = reply.xml.find(f"{{{NS}}}e2e")
    assert envelope is not None and len(envelope) == 0  # says which protocol, echoes nothing
    return reply, event, delivered


@pytest.mark.integration
async def test_tampered_envelope_gets_decryption_failed(make_lovers: LoversFactory) -> None:
    pair = await make_lovers()
    inner = inner_message(pair.juliet.boundjid, pair.romeo.boundjid, BODY)
    e2e = await asyncio.to_thread(seal, pair.romeo_cert, inner, timestamp())
    tampered = flip_data_char(e2e)
    match = _DATA_RE.search(tampered)
    assert match is not None
    base64.b64decode(match[2], validate=True)  # still well-formed base64

    reply, event, delivered = await _expect_error_reply(pair, tampered, "objenc_decryption_failed")
    error = reply.xml.find(f"{{{NS_CLIENT}}}error")
    assert error is not None
    assert error.get("type") == "modify"
    assert error.find(f"{{{NS_STANZAS}}}bad-request") is not None
    assert error.find(f"{{{NS_E2E_ERRORS}}}decryption-failed") is not None
    assert event.reason == "undecryptable"
    assert delivered == []


@pytest.mark.integration
async def test_stale_timestamp_gets_bad_timestamp(make_lovers: LoversFactory) -> None:
    pair = await make_lovers()
    inner = inner_message(pair.juliet.boundjid, pair.romeo.boundjid, BODY)
    stale = timestamp(datetime.now(UTC) - timedelta(hours=1))
    e2e = await asyncio.to_thread(seal, pair.romeo_cert, inner, stale)

    reply, event, delivered = await _expect_error_reply(pair, e2e, "objenc_bad_timestamp")
    error = reply.xml.find(f"{{{NS_CLIENT}}}error")
    assert error is not None
    assert error.get("type") == "modify"
    assert error.find(f"{{{NS_STANZAS}}}not-acceptable") is not None
    assert error.find(f"{{{NS_E2E_ERRORS}}}bad-timestamp") is not None
    assert event.reason == "old"
    assert event.timestamp == parse_timestamp(stale)
    assert delivered == []
