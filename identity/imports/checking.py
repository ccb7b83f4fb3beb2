"""Checking an import's lines, on the helper processes (identity.bulk): each parsed
(NDJSON), loaded by the line schema, then checked as one profile submission is.

What a helper loads is this module's imports and theirs: no Flask, no database driver,
no other service (a contract in pyproject.toml, and a test, hold it so)."""

from marshmallow import ValidationError

from identity.imports.reading import ReadLine
from identity.services.submissions import CheckedLine, check_line
from identity.strict_json import InvalidJson, parse_json
from schemas.common import QuickLoad
from schemas.messages import field_errors
from schemas.newsletters import ImportLineSchema

_line_schema = ImportLineSchema()
# A line is loaded as the schema loads it, with less machinery (an import checks millions).
_load_line = QuickLoad(_line_schema)

# The fields a line may give: the columns a CSV header may name.
LINE_FIELDS = frozenset(_line_schema.fields)


def check_batch(batch: list[ReadLine], source: str) -> list[CheckedLine]:
    """Each line parsed (NDJSON), through the schema, then the service's own checks (in
    a helper process); `source` where a line names none. Whatever is wrong with a line
    rejects that line, and only that line."""
    return [_check(line_no, data, errors, source) for line_no, data, errors in batch]


def _check(
    line_no: int, data: dict | bytes | None, errors: dict | None, source: str
) -> CheckedLine:
    if errors is not None:
        return line_no, None, errors
    if isinstance(data, bytes):
        try:
            data = parse_json(data)
        except InvalidJson as exc:
            return line_no, None, {"line": [f"not valid JSON: {exc.why}"]}
        if not isinstance(data, dict):
            return line_no, None, {"line": ["not a JSON object"]}
    data.setdefault("source", source)
    try:
        return check_line(line_no, _load_line(data))
    except ValidationError as exc:
        return line_no, None, field_errors(exc.normalized_messages())
    except Exception as exc:  # a line must never stop the import; say what kind of failure
        return line_no, None, {"line": [f"could not be read ({type(exc).__name__})"]}
