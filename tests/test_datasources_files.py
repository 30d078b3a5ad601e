"""File datasources (csv, jsonl, json, xml) from local paths and from a real local HTTP
server, including a SOAP-style POST."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from datasources import ConfigError, FetchError, ResponseFormatError, RunContext
from tests.datasource_servers import HttpServer, Reply, Request, fast_runtime, make_job, records_of


@pytest.fixture
def server() -> Iterator[HttpServer]:
    http = HttpServer().start()
    yield http
    http.stop()


def one(source: dict[str, Any], **kwargs: Any) -> list[Any]:
    return records_of(make_job([{"name": "src", **source}]), **kwargs)


# --- csv -----------------------------------------------------------------------------


def test_csv_dialect_and_typing_rules(tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(
        "\ufeffid;name;score;active;note\r\n"
        '1;Ann; 2.5 ;yes;"multi\r\nline; with ""quotes"""\r\n'
        "\r\n"
        "2;Bob;;FALSE;\r\n"
        "-3;Cé;1e3;0;plain\r\n".encode()
    )
    records = one(
        {
            "type": "csv",
            "path": str(path),
            "delimiter": ";",
            "types": {"id": "int", "score": "float", "active": "bool", "note": "str"},
        }
    )
    assert records == [
        {"id": 1, "name": "Ann", "score": 2.5, "active": True,
         "note": 'multi\r\nline; with "quotes"'},
        {"id": 2, "name": "Bob", "score": None, "active": False, "note": ""},
        {"id": -3, "name": "Cé", "score": 1000.0, "active": False, "note": "plain"},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "types", "error", "expected"),
    [
        ("a,b\n1,x\n2\n", {}, ResponseFormatError, "line 3: 1 fields, the header has 2"),
        ("a,b\n1,2,3\n", {}, ResponseFormatError, "line 2: 3 fields, the header has 2"),
        ("a,b\n1,2\nx,3\n", {"a": "int"}, ResponseFormatError,
         "line 3, column 'a': 'x' is not an integer"),
        ("a\nnan\n", {"a": "float"}, ResponseFormatError, "'nan' is not a number"),
        ("a\nmaybe\n", {"a": "bool"}, ResponseFormatError, "'maybe' is not a boolean"),
        ("a,a\n1,2\n", {}, ResponseFormatError, "repeated column name(s): a"),
        ('a,b\n"1,2\n', {}, ResponseFormatError, "bad CSV"),
        ("a,b\n1,2\n", {"c": "int"}, ConfigError, "types name column(s) the header lacks: c"),
    ],
)  # fmt: skip
def test_csv_errors_name_line_and_column(
    tmp_path: Path, content: str, types: dict[str, str], error: type[Exception], expected: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(error) as info:
        one({"type": "csv", "path": str(path), "types": types})
    assert expected in str(info.value)
    assert str(info.value).startswith("datasource 'src': ")


def test_csv_path_template_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "export-2026-03-01.csv").write_text("a\n1\n")
    ctx = RunContext(job="job", run_id="r", now=datetime(2026, 3, 2, 12, tzinfo=UTC))
    source = {"type": "csv", "path": str(tmp_path / "export-${yesterday}.csv")}
    assert one(source, ctx=ctx) == [{"a": "1"}]
    with pytest.raises(FetchError, match=r"no such file: .*export-2026-03-02\.csv") as info:
        one({**source, "path": str(tmp_path / "export-${date}.csv")}, ctx=ctx)
    assert info.value.retryable


def test_csv_from_url_with_bearer_auth(server: HttpServer, tmp_path: Path) -> None:
    path = tmp_path / "cities.csv"
    path.write_text("city,population\nZurich,421878\nGeneva,203856\n")

    def download(request: Request) -> Reply:
        if request.headers.get("authorization") != "Bearer dl-token-99":
            return Reply(401, b"no")
        return Reply(200, headers={"Content-Type": "text/csv"}, file=path)

    server.route("/cities.csv", download)
    source = {
        "type": "csv",
        "url": server.url("/cities.csv"),
        "auth": {"type": "bearer", "token_env": "DL_TOKEN"},
        "types": {"population": "int"},
    }
    runtime = fast_runtime(environ={"DL_TOKEN": "dl-token-99"})
    assert one(source, runtime=runtime) == [
        {"city": "Zurich", "population": 421878},
        {"city": "Geneva", "population": 203856},
    ]


# --- jsonl / json --------------------------------------------------------------------


def test_jsonl_streams_lines_skips_blanks_and_reads_gzip(tmp_path: Path) -> None:
    lines = [json.dumps({"n": i}) for i in range(5)]
    plain = tmp_path / "a.jsonl"
    plain.write_text("\n".join(lines[:2]) + "\n\n  \n" + "\n".join(lines[2:]))
    packed = tmp_path / "a.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    expected = [{"n": i} for i in range(5)]
    assert one({"type": "jsonl", "path": str(plain)}) == expected
    assert one({"type": "jsonl", "path": str(packed)}) == expected


def test_jsonl_bad_line_names_its_number(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(ResponseFormatError, match="line 3: not valid JSON"):
        one({"type": "jsonl", "path": str(path)})


def test_json_records_path_root_list_and_url(server: HttpServer, tmp_path: Path) -> None:
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"meta": {"n": 2}, "data": {"items": [{"a": 1.5}, {"a": 2}]}}))
    root = tmp_path / "root.json"
    root.write_text(json.dumps([{"b": True}, {"b": None}]))
    server.route("/doc.json", lambda r: Reply(200, file=nested))
    assert one({"type": "json", "path": str(nested), "records_path": "data.items"}) == [
        {"a": 1.5},
        {"a": 2},
    ]
    assert one({"type": "json", "path": str(root)}) == [{"b": True}, {"b": None}]
    by_url = {"type": "json", "url": server.url("/doc.json"), "records_path": "data.items"}
    assert one(by_url) == [{"a": 1.5}, {"a": 2}]


@pytest.mark.parametrize(
    ("document", "records_path", "expected"),
    [
        ({"data": {"items": []}}, "data.items", None),
        ({"data": {}}, "data.items", "records_path 'data.items' not found"),
        ({"data": {"items": {"x": 1}}}, "data.items", "'data.items' is an object, not a list"),
        ({"items": []}, None, "the document is an object, not a list: set records_path"),
    ],
)
def test_json_without_a_list_at_records_path_is_an_error(
    tmp_path: Path, document: Any, records_path: str | None, expected: str | None
) -> None:
    path = tmp_path / "doc.json"
    path.write_text(json.dumps(document))
    source = {"type": "json", "path": str(path), "records_path": records_path}
    if expected is None:
        assert one(source) == []
        return
    with pytest.raises(ResponseFormatError, match=expected):
        one(source)


def test_json_malformed_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('[{"a": 1}, {"a": ')
    with pytest.raises(ResponseFormatError, match="not valid JSON"):
        one({"type": "json", "path": str(path)})


# --- xml -----------------------------------------------------------------------------

FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>News</title>
  <item><title>One</title><category>a</category><category>b</category></item>
  <item id="2"><title>Two</title><link/>text<!-- a comment --></item>
</channel></rss>"""


def test_xml_file_record_path_and_conversion_rules(tmp_path: Path) -> None:
    path = tmp_path / "feed.xml"
    path.write_text(FEED)
    source = {"type": "xml", "path": str(path), "record_path": "channel/item"}
    assert one(source) == [
        {"title": "One", "category": ["a", "b"]},
        {"@id": "2", "title": "Two", "link": None},
    ]
    anchored = {**source, "record_path": "/rss/channel/item", "list_elements": ["title"]}
    assert [r["title"] for r in one(anchored)] == [["One"], ["Two"]]
    assert one({**source, "record_path": "/channel/item"}) == []


def test_xml_soap_post_with_templated_envelope(server: HttpServer) -> None:
    answer = """<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">
      <soap:Body><m:GetUsersResponse xmlns:m="urn:users">
        <m:user m:id="1"><m:name>Ann</m:name></m:user>
        <m:user m:id="2"><m:name>Bob</m:name></m:user>
      </m:GetUsersResponse></soap:Body></soap:Envelope>"""
    server.route("/soap", lambda r: Reply.text(answer, "text/xml"), method="POST")
    envelope = "<Envelope><Body><GetUsers since='${yesterday}' key='${env.KEY}'/></Body></Envelope>"
    source = {
        "type": "xml",
        "url": server.url("/soap"),
        "method": "POST",
        "body": envelope,
        "headers": {"SOAPAction": "urn:users#GetUsers", "Content-Type": "text/xml"},
        "record_path": "Envelope/Body/GetUsersResponse/user",
    }
    ctx = RunContext(job="job", run_id="r", now=datetime(2026, 1, 10, tzinfo=UTC))
    records = one(source, ctx=ctx, runtime=fast_runtime(environ={"KEY": "soap-key"}))
    assert records == [{"@id": "1", "name": "Ann"}, {"@id": "2", "name": "Bob"}]
    (request,) = server.seen("/soap")
    assert (
        request.body
        == b"<Envelope><Body><GetUsers since='2026-01-09' key='soap-key'/></Body></Envelope>"
    )
    assert request.headers["soapaction"] == "urn:users#GetUsers"


def test_xml_not_well_formed_names_the_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.xml"
    path.write_text("<a>\n<item>1</item>\n<item>2</oops>\n</a>")
    with pytest.raises(ResponseFormatError, match="not well-formed XML at line 3"):
        one({"type": "xml", "path": str(path), "record_path": "item"})
