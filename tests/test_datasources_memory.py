"""Streaming keeps memory flat: a child process reads a large file through
``run_slurper`` (no slurper: straight through) and reports its peak RSS before and
after (``resource.getrusage``). Loading any of these files whole would grow the peak by
far more than the file's size; streaming grows it by (almost) nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAD = "x" * 120

CHILD = """
import json, resource, sys
import ijson  # noqa: F401 - imported before measuring, like every module used
import datasources.csv_source, datasources.json_source, datasources.xml_source
from contracts.jobs import JobDefinition
from datasources import JobPolicy, RunContext, Runtime, run_slurper

job = JobDefinition.model_validate(
    {"name": "big", "datasources": [json.loads(sys.argv[1])],
     "collection": {"type": "normal", "name": "big"}}
)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
count = 0
last = None
folder = json.loads(sys.argv[1])["path"].rpartition("/")[0]
runtime = Runtime(environ={}, policy=JobPolicy(file_roots=[folder]))
for record in run_slurper(job, RunContext(job="big", run_id="r"), runtime):
    count += 1
    last = record
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"count": count, "last": last, "growth_kb": after - before}))
"""


def write_jsonl(path: Path, count: int) -> None:
    with path.open("w") as out:
        for i in range(count):
            out.write(f'{{"id": {i}, "name": "user {i}", "pad": "{PAD}"}}\n')


def write_json(path: Path, count: int) -> None:
    with path.open("w") as out:
        out.write('{"meta": {}, "data": {"items": [')
        out.write(",".join(f'{{"id": {i}, "pad": "{PAD}"}}' for i in range(count)))
        out.write("]}}")


def write_csv(path: Path, count: int) -> None:
    with path.open("w") as out:
        out.write("id,name,pad\n")
        out.writelines(f"{i},user {i},{PAD}\n" for i in range(count))


def write_xml(path: Path, count: int) -> None:
    with path.open("w") as out:
        out.write("<export><items>")
        out.writelines(f'<item id="{i}"><pad>{PAD}</pad></item>' for i in range(count))
        out.write("</items></export>")


CASES: list[tuple[str, Any, int, dict[str, Any], int]] = [
    # type, writer, records, extra config, max growth (MB)
    ("jsonl", write_jsonl, 400_000, {}, 30),
    ("json", write_json, 150_000, {"records_path": "data.items"}, 8),
    ("csv", write_csv, 150_000, {"types": {"id": "int"}}, 8),
    ("xml", write_xml, 120_000, {"record_path": "items/item"}, 8),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "writer", "count", "extra", "max_growth_mb"), CASES)
def test_large_file_streams_with_flat_memory(
    tmp_path: Path, kind: str, writer: Any, count: int, extra: dict[str, Any], max_growth_mb: int
) -> None:
    if kind == "json":
        pytest.importorskip("ijson", reason="json documents stream only with ijson installed")
    path = tmp_path / f"big.{kind}"
    writer(path, count)
    size_mb = path.stat().st_size / 2**20
    assert size_mb > 2 * max_growth_mb  # loading it whole could not stay under the bound
    source = {"name": "big", "type": kind, "path": str(path), **extra}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(source)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    growth_mb = report["growth_kb"] / 1024
    print(f"{kind}: {size_mb:.0f} MB file, {count} records, peak RSS growth {growth_mb:.1f} MB")
    assert report["count"] == count
    assert str(count - 1) in json.dumps(report["last"])
    assert growth_mb < max_growth_mb
