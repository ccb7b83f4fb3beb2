"""marshmallow's error messages as this API names them: each field by its path."""

import re
from collections.abc import Iterator

_SURROGATE = re.compile("[\ud800-\udfff]")


def field_errors(messages: dict) -> dict[str, list[str]]:
    """marshmallow's nested messages as this API names them: by path (`field_paths`)."""
    errors: dict[str, list[str]] = {}
    for name, field_messages in field_paths(messages):
        errors.setdefault(name, []).extend(field_messages)
    return errors


def field_paths(fields: dict, prefix: str = "") -> Iterator[tuple[str, list[str]]]:
    """Each field's messages by its path: a nested field as `consent.text`, an item of a
    list as `emails.3` (what is wrong with a nested object as a whole: its own path). A
    name the client made up (an unknown field) is echoed with any lone surrogate
    replaced, so the answer stays valid JSON for strict parsers."""
    for name, messages in fields.items():
        path = prefix + _SURROGATE.sub("\ufffd", str(name))
        if name == "_schema" and prefix:  # about the nested field as a whole
            path = prefix[:-1]
        if isinstance(messages, dict):
            yield from field_paths(messages, path + ".")
        else:
            yield path, message_strings(messages)


def message_strings(messages) -> list[str]:
    if isinstance(messages, dict):  # nested field: {index or name: [messages]}
        return [f"{key}: {m}" for key, value in messages.items() for m in message_strings(value)]
    if isinstance(messages, list | tuple):
        return [str(m) for m in messages]
    return [str(messages)]
