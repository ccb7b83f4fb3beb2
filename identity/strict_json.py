"""JSON as the service reads every document, a request body or a line of an import:
UTF-8, no key given twice, no NaN or Infinity; `InvalidJson` says why not."""

import json


class DuplicateKey(ValueError):
    """An object names a key twice: parsers differ on which one counts."""


def unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """An object_pairs_hook for json.loads that refuses a key given twice: a site that
    checked the first "email" and a service that took the last would disagree."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise DuplicateKey("a key is given twice in one object")
    return obj


class InvalidJson(ValueError):
    """Bytes that are not one JSON document; `why` says what is wrong, in a client's words."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


def parse_json(data: bytes):
    """The JSON document in `data`, or InvalidJson saying why not: the same reasons for a
    request body and for a line of an import."""
    try:
        return json.loads(
            data.decode("utf-8"),
            object_pairs_hook=unique_keys,
            parse_constant=_not_json,
            parse_float=_finite,
        )
    except UnicodeDecodeError:
        raise InvalidJson("not UTF-8") from None
    except RecursionError:
        raise InvalidJson("nested too deep") from None
    except InvalidJson:
        raise
    except DuplicateKey as exc:
        raise InvalidJson(str(exc)) from None
    except json.JSONDecodeError as exc:
        if exc.msg.startswith("Unexpected UTF-8 BOM"):  # Python's words: "use utf-8-sig"
            raise InvalidJson("a byte order mark (U+FEFF) before the JSON: leave it out") from None
        # Some of json's messages end in "at" ("Invalid control character at").
        what = exc.msg.removesuffix(" at")
        raise InvalidJson(f"{what} at line {exc.lineno} column {exc.colno}") from None
    except ValueError:  # Python's limit on the digits of an integer (4,300)
        raise InvalidJson("a number is too long") from None


def _not_json(name: str):
    """NaN and Infinity: Python reads them, JSON (RFC 8259) has no such numbers."""
    raise InvalidJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise InvalidJson("a number is too large")
    return number
