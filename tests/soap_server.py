"""A real SOAP 1.1 service for the ``soap`` source tests: a threaded HTTP server on
127.0.0.1 serving its WSDL (``GET /users?wsdl``) and answering document/literal calls
(``POST``) parsed with lxml.

Operations (namespace ``urn:slurp:users``):

- ``GetUsers(page, pageSize?, since?)`` -> ``{total, users: {user: [{id, name, balance,
  createdAt}]}}``, ``pageSize`` (default 100) users of ``total`` per page (1-based);
- ``Fail(reason)`` -> a SOAP Fault ``soap:Client`` with ``reason`` as faultstring.

Paths pick the credentials checked: ``/users`` none, ``/basic`` HTTP Basic, ``/bearer``
a Bearer token, ``/wsse`` a WS-Security UsernameToken (text or digest). A wrong or
missing credential is a 401 (HTTP) or a ``wsse:FailedAuthentication`` Fault.
``fail_next`` answers the next calls with 503 (a transient outage).
"""

from __future__ import annotations

import base64
import hashlib
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from lxml import etree

__all__ = ["PASSWORD", "TOKEN", "USERNAME", "SoapServer"]

USERNAME = "soap-user"
PASSWORD = "soap-pa55word"
TOKEN = "soap-bearer-token"
NS = "urn:slurp:users"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"

WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/" xmlns:tns="urn:slurp:users"
    xmlns:xsd="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:slurp:users" name="Users">
  <types>
    <xsd:schema targetNamespace="urn:slurp:users" elementFormDefault="qualified">
      <xsd:complexType name="User"><xsd:sequence>
        <xsd:element name="id" type="xsd:int"/>
        <xsd:element name="name" type="xsd:string"/>
        <xsd:element name="balance" type="xsd:decimal"/>
        <xsd:element name="createdAt" type="xsd:dateTime"/>
      </xsd:sequence></xsd:complexType>
      <xsd:element name="GetUsers"><xsd:complexType><xsd:sequence>
        <xsd:element name="page" type="xsd:int"/>
        <xsd:element name="pageSize" type="xsd:int" minOccurs="0"/>
        <xsd:element name="since" type="xsd:date" minOccurs="0"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="GetUsersResponse"><xsd:complexType><xsd:sequence>
        <xsd:element name="total" type="xsd:int"/>
        <xsd:element name="users"><xsd:complexType><xsd:sequence>
          <xsd:element name="user" type="tns:User" minOccurs="0" maxOccurs="unbounded"/>
        </xsd:sequence></xsd:complexType></xsd:element>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="Fail"><xsd:complexType><xsd:sequence>
        <xsd:element name="reason" type="xsd:string"/>
      </xsd:sequence></xsd:complexType></xsd:element>
      <xsd:element name="FailResponse"><xsd:complexType><xsd:sequence/></xsd:complexType>
      </xsd:element>
    </xsd:schema>
  </types>
  <message name="GetUsersIn"><part name="parameters" element="tns:GetUsers"/></message>
  <message name="GetUsersOut"><part name="parameters" element="tns:GetUsersResponse"/></message>
  <message name="FailIn"><part name="parameters" element="tns:Fail"/></message>
  <message name="FailOut"><part name="parameters" element="tns:FailResponse"/></message>
  <portType name="UsersPortType">
    <operation name="GetUsers"><input message="tns:GetUsersIn"/><output message="tns:GetUsersOut"/>
    </operation>
    <operation name="Fail"><input message="tns:FailIn"/><output message="tns:FailOut"/></operation>
  </portType>
  <binding name="UsersBinding" type="tns:UsersPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <operation name="GetUsers"><soap:operation soapAction="urn:slurp:users#GetUsers"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output>
    </operation>
    <operation name="Fail"><soap:operation soapAction="urn:slurp:users#Fail"/>
      <input><soap:body use="literal"/></input><output><soap:body use="literal"/></output>
    </operation>
  </binding>
  <service name="Users">
    <port name="UsersPort" binding="tns:UsersBinding"><soap:address location="ADDRESS"/></port>
  </service>
</definitions>
"""


def _envelope(body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}">'
        f"<soap:Body>{body}</soap:Body></soap:Envelope>"
    ).encode()


def _fault(code: str, text: str) -> bytes:
    return _envelope(
        f"<soap:Fault><faultcode>{code}</faultcode><faultstring>{escape(text)}</faultstring>"
        "</soap:Fault>"
    )


class SoapServer:
    """The service on 127.0.0.1:<free port>; ``url(path)``, ``calls``, ``fail_next``."""

    def __init__(self, total: int = 250) -> None:
        self.total = total
        self.calls: list[dict[str, Any]] = []
        self.fail_next = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/users") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> SoapServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def user(self, n: int) -> str:
        return (
            f"<tns:user><tns:id>{n}</tns:id><tns:name>user {n}</tns:name>"
            f"<tns:balance>{Decimal(n) / 4:.2f}</tns:balance>"
            f"<tns:createdAt>2026-03-01T04:00:00+01:00</tns:createdAt></tns:user>"
        )

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return 503, b"busy"
        auth = headers.get("authorization", "")
        if path == "/basic":
            pair = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
            if auth != f"Basic {pair}":
                return 401, b"who are you?"
        if path == "/bearer" and auth != f"Bearer {TOKEN}":
            return 401, b"who are you?"
        try:
            envelope = etree.fromstring(body, etree.XMLParser(resolve_entities=False))
        except etree.XMLSyntaxError as exc:
            return 500, _fault("soap:Client", f"not XML: {exc}")
        if path == "/wsse" and (problem := _wsse_problem(envelope)):
            return 500, _fault("wsse:FailedAuthentication", problem)
        call = envelope.find(f"{{{SOAP_ENV}}}Body")[0]  # type: ignore[index]
        name = etree.QName(call).localname
        args = {etree.QName(child).localname: child.text for child in call}
        with self._lock:
            self.calls.append({"path": path, "operation": name, "args": args})
        if name == "Fail":
            return 500, _fault("soap:Client", args.get("reason") or "failed")
        if name != "GetUsers":
            return 500, _fault("soap:Client", f"unknown operation {name}")
        page, size = int(args["page"] or 1), int(args.get("pageSize") or 100)
        first = (page - 1) * size + 1
        users = "".join(self.user(n) for n in range(first, min(first + size, self.total + 1)))
        return 200, _envelope(
            f'<tns:GetUsersResponse xmlns:tns="{NS}"><tns:total>{self.total}</tns:total>'
            f"<tns:users>{users}</tns:users></tns:GetUsersResponse>"
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if not self.path.endswith("?wsdl"):
                    self._reply(404, b"no such document", "text/plain")
                    return
                address = server.url(self.path.partition("?")[0])
                self._reply(200, WSDL.replace("ADDRESS", address).encode(), "text/xml")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, body = server.answer(self.path, headers, self.rfile.read(length))
                self._reply(status, body, "text/xml; charset=utf-8")

            def _reply(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def _wsse_problem(envelope: Any) -> str | None:
    token = envelope.find(f".//{{{WSSE}}}UsernameToken")
    if token is None:
        return "no WS-Security UsernameToken"
    username = token.findtext(f"{{{WSSE}}}Username")
    password = token.find(f"{{{WSSE}}}Password")
    if username != USERNAME or password is None:
        return "unknown user"
    if password.get("Type", "").endswith("#PasswordDigest"):
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
        created = (token.findtext(f"{{{WSU}}}Created") or "").encode()
        digest = base64.b64encode(hashlib.sha1(nonce + created + PASSWORD.encode()).digest())
        return None if password.text == digest.decode() else "wrong digest"
    return None if password.text == PASSWORD else "wrong password"
