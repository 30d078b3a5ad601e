"""The ``soap`` source (zeep) against a real local SOAP service that serves its WSDL
(``tests/soap_server.py``): pages, auth (HTTP basic/bearer/OAuth2 and WS-Security),
Faults, outages, local WSDL files and the egress rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from datasources import ConfigError, FetchError, NotAllowedError, Progress, SoapFaultError
from storage.records import normalise
from tests.datasource_servers import HttpServer, Reply, fast_runtime, make_job, records_of
from tests.soap_server import PASSWORD, TOKEN, USERNAME, SoapServer

pytest.importorskip("zeep", reason="zeep (slurp[soap]) is not installed")

SECRETS = {"SOAP_USER": USERNAME, "SOAP_PW": PASSWORD, "SOAP_TOKEN": TOKEN}


@pytest.fixture
def service() -> Iterator[SoapServer]:
    server = SoapServer(total=250).start()
    yield server
    server.stop()


def soap_job(wsdl: str, **source: Any) -> Any:
    return make_job(
        [{"name": "users", "type": "soap", "wsdl": wsdl, "operation": "GetUsers",
          "result_path": "users.user", **source}]
    )  # fmt: skip


def runtime(**extra: Any) -> Any:
    return fast_runtime(environ=SECRETS, **extra)


def test_pages_through_the_operation(service: SoapServer) -> None:
    job = soap_job(
        service.url() + "?wsdl",
        args={"since": "${yesterday}"},
        pagination={"style": "page", "param": "page", "size_param": "pageSize", "size": 100},
    )
    progress = Progress()
    records = records_of(job, runtime(), progress=progress)
    assert len(records) == 250 and progress.snapshot()["users"].pages == 3
    assert normalise(records[0], 0) == {
        "id": 1, "name": "user 1", "balance": 0.25, "createdAt": "2026-03-01T03:00:00Z",
    }  # fmt: skip
    assert [c["args"]["page"] for c in service.calls] == ["1", "2", "3"]
    assert all(c["args"]["pageSize"] == "100" and c["args"]["since"] for c in service.calls)


def test_http_auth_and_ws_security(service: SoapServer) -> None:
    wsdl = service.url() + "?wsdl"
    one_page = {"args": {"page": 1, "pageSize": 5}}
    basic_auth = {"type": "basic", "username_env": "SOAP_USER", "password_env": "SOAP_PW"}
    basic = soap_job(wsdl, endpoint=service.url("/basic"), **one_page, auth=basic_auth)
    assert len(records_of(basic, runtime())) == 5
    bearer = soap_job(wsdl, endpoint=service.url("/bearer"), **one_page,
                      auth={"type": "bearer", "token_env": "SOAP_TOKEN"})  # fmt: skip
    assert len(records_of(bearer, runtime())) == 5
    for digest in (False, True):
        wsse = soap_job(wsdl, endpoint=service.url("/wsse"), **one_page,
                        wsse={"username_env": "SOAP_USER", "password_env": "SOAP_PW",
                              "digest": digest})  # fmt: skip
        assert len(records_of(wsse, runtime())) == 5
    wrong = soap_job(wsdl, endpoint=service.url("/wsse"), **one_page,
                     wsse={"username_env": "SOAP_USER", "password_env": "SOAP_TOKEN"})  # fmt: skip
    with pytest.raises(SoapFaultError, match="wrong password") as refused:
        records_of(wrong, runtime())
    assert not refused.value.retryable and "FailedAuthentication" in refused.value.code
    assert TOKEN not in str(refused.value)
    unauthorised = soap_job(wsdl, endpoint=service.url("/basic"), **one_page)
    with pytest.raises(FetchError, match="HTTP 401") as denied:
        records_of(unauthorised, runtime())
    assert not denied.value.retryable


def test_oauth2_client_credentials(service: SoapServer) -> None:
    tokens = HttpServer().start()
    try:
        answer = Reply.json({"access_token": TOKEN, "expires_in": 60})
        tokens.route("/token", lambda r: answer, method="POST")
        job = soap_job(
            service.url() + "?wsdl",
            endpoint=service.url("/bearer"),
            args={"page": 1, "pageSize": 3},
            auth={"type": "oauth2_client_credentials", "token_url": tokens.url("/token"),
                  "client_id_env": "SOAP_USER", "client_secret_env": "SOAP_PW"},
        )  # fmt: skip
        assert len(records_of(job, runtime())) == 3
        assert tokens.requests[0].form()["grant_type"] == "client_credentials"
    finally:
        tokens.stop()


def test_faults_are_permanent_and_outages_are_retried(service: SoapServer) -> None:
    wsdl = service.url() + "?wsdl"
    fault = soap_job(wsdl, operation="Fail", args={"reason": "no such customer"}, result_path=None)
    with pytest.raises(SoapFaultError, match=r"SOAP Fault: .*Client: no such customer") as info:
        records_of(fault, runtime())
    assert not info.value.retryable
    assert sum(c["operation"] == "Fail" for c in service.calls) == 1  # not retried
    service.fail_next = 2
    flaky = soap_job(wsdl, args={"page": 1, "pageSize": 2})
    assert len(records_of(flaky, runtime())) == 2  # two 503s, then an answer
    service.fail_next = 10
    with pytest.raises(FetchError, match=r"HTTP 503.*gave up after 4 attempts") as down:
        records_of(flaky, runtime())
    assert down.value.retryable
    service.fail_next = 0
    unknown = soap_job(wsdl, operation="DropTables")
    with pytest.raises(ConfigError, match="no operation 'DropTables'; it has: Fail, GetUsers"):
        records_of(unknown, runtime())
    bad_args = soap_job(wsdl, args={"page": 1, "colour": "red"})
    with pytest.raises(ConfigError, match="colour"):
        records_of(bad_args, runtime())


def test_a_local_wsdl_below_the_roots(service: SoapServer, tmp_path: Path) -> None:
    wsdl = tmp_path / "users.wsdl"
    wsdl.write_bytes(httpx.get(service.url() + "?wsdl").content)
    job = soap_job(str(wsdl), args={"page": 2, "pageSize": 100})
    records = records_of(job, runtime(file_roots=[tmp_path]))
    assert [r["id"] for r in records][:2] == [101, 102]
    elsewhere = tmp_path.parent / "elsewhere"
    with pytest.raises(NotAllowedError, match="SLURP_FILE_ROOTS"):
        records_of(job, runtime(file_roots=[elsewhere]))


def test_egress_rules_apply_to_every_request(service: SoapServer) -> None:
    job = soap_job(service.url() + "?wsdl", args={"page": 1})
    public_only = fast_runtime(environ=SECRETS, http_allow_hosts=["*"])
    with pytest.raises(NotAllowedError, match="loopback"):
        records_of(job, public_only)
    assert service.calls == []


def test_config_is_checked() -> None:
    with pytest.raises(ValidationError, match="not link"):
        soap_job("https://x.example/s?wsdl", pagination={"style": "link"})
    with pytest.raises(ValidationError, match=r"http.s. URL or a local file"):
        soap_job("ftp://x.example/s.wsdl")
    with pytest.raises(ValidationError, match="literally"):
        soap_job("https://x.example/s?wsdl", headers={"Authorization": "Basic abc"})


def test_validate_reports_new_kinds_with_file_and_line() -> None:
    from contracts.errors import JobFileError
    from contracts.jobfile import parse_jobs

    text = """jobs:
  - name: q
    datasources:
      - name: events
        type: rabbitmq
        url: "amqp://guest@127.0.0.1/%2F"
        queue: orders
        prefetch: 0
    collection: {type: accumulative, name: events}
  - name: s
    datasources:
      - name: users
        type: soap
        wsdl: https://soap.example.org/users?wsdl
        operation: GetUsers
        colour: red
    collection: {type: normal, name: users}
  - name: o
    datasources:
      - name: db
        type: odbc
        connection_string: "DRIVER=/tmp/evil.so"
        query: SELECT 1
    collection: {type: normal, name: o}
"""
    with pytest.raises(JobFileError) as problems:
        parse_jobs(text, source="jobs.yaml")
    lines = str(problems.value)
    assert "jobs.yaml:8: job 'q': datasources.0.prefetch:" in lines
    assert "jobs.yaml:16: job 's': datasources.0.colour: Extra inputs" in lines
    assert "jobs.yaml:20: job 'o': datasources.0: DRIVER must name a driver" in lines
