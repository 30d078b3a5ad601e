"""The committed JSON Schemas of the public contracts (for publishers in any language).

Regenerate with ``slurp schema --write`` after changing a model; a test fails when the
committed files drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from contracts.jobs import JobDefinition
from contracts.messages import RunJob, RunJobMessage

__all__ = ["SCHEMAS", "SCHEMA_DIR", "render", "stale_schemas", "write_schemas"]

SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMAS: dict[str, type[BaseModel]] = {
    "run_job.schema.json": RunJob,
    "run_job_message.schema.json": RunJobMessage,
    "job_definition.schema.json": JobDefinition,
}


def render(model: type[BaseModel]) -> str:
    """The model's JSON Schema as stable, pretty-printed text."""
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def stale_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of schema files that are missing or differ from the models."""
    stale = []
    for filename, model in SCHEMAS.items():
        path = directory / filename
        if not path.exists() or path.read_text(encoding="utf-8") != render(model):
            stale.append(filename)
    return stale


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write every schema file; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, model in SCHEMAS.items():
        path = directory / filename
        path.write_text(render(model), encoding="utf-8")
        written.append(path)
    return written
