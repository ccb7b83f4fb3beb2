"""The README and docs/ stay true to the code: their links work, the settings table is
identity/config.py's, and the README's curl walk-through runs against the app."""

import json
import re
import shlex
import unicodedata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from identity.cli import main
from identity.config import DEFAULTS

PROJECT_DIR = Path(__file__).resolve().parents[1]
README = PROJECT_DIR / "README.md"
PAGES = [README, *sorted((PROJECT_DIR / "docs").glob("*.md"))]
OPENAPI = json.loads((PROJECT_DIR / "openapi" / "openapi.json").read_text())

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
VARIABLE = re.compile(r"\$(?:\{([A-Z_][A-Z0-9_]*)\}|([A-Z_][A-Z0-9_]*))")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# The walk-through's placeholders for what comes by mail, filled in from the outbox as
# the person would copy it from the mail: variable -> the mail's template.
MAILED = {"VERIFY_TOKEN": "verify_email"}


def section(text: str, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def without_code(text: str) -> str:
    text = FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"`", "", heading.strip().lower())
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = FENCE.sub("", path.read_text())
    return {anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


# --- links ------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_at_files_and_headings_that_exist(page):
    targets = LINK.findall(without_code(page.read_text()))
    assert targets, f"{page.name} links nowhere"
    for target in targets:
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target} points at no file"
        if fragment and file.suffix == ".md":
            assert fragment in anchors(file), f"{page.name}: {target} names no heading"


def test_every_docs_page_says_what_it_is_for_and_links_back():
    for page in PAGES[1:]:
        title, blank, purpose = page.read_text().split("\n", 3)[:3]
        assert title.startswith("# ") and not blank and purpose, page.name
        assert "](../README.md)" in page.read_text(), f"{page.name} does not link back"
    readme = README.read_text()
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, f"the README does not link {page.name}"


# --- the settings table -----------------------------------------------------------------


def settings_rows() -> list[tuple[list[str], list[str]]]:
    """(names, defaults) of each row of the README's settings table."""
    rows = []
    for line in section(README.read_text(), "Settings").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            rows.append((re.findall(r"`([A-Z_]+)`", cells[0]), re.findall(r"`([^`]*)`", cells[1])))
    return rows


def test_the_settings_table_names_every_setting_and_nothing_else():
    named = [name for names, _ in settings_rows() for name in names]
    assert len(named) == len(set(named)), "a setting is named twice"
    in_table = {name for name in named if name.startswith("IDENTITY_")}
    in_code = {f"IDENTITY_{key}" for key in DEFAULTS}
    assert in_table - in_code == set(), "in the README, not in identity/config.py"
    assert in_code - in_table == set(), "in identity/config.py, not in the README"


def test_the_settings_table_gives_the_defaults_of_the_code():
    for names, defaults in settings_rows():
        names = [name for name in names if name.startswith("IDENTITY_")]
        values = [DEFAULTS[name.removeprefix("IDENTITY_")] for name in names]
        if names in ([], ["IDENTITY_SECRET_KEY"]):
            continue  # PORT is gunicorn's; "a dev value": the key itself is not for a README
        if set(values) == {None}:
            assert not defaults, f"{names[0]} has no default; the table says {defaults}"
            continue
        assert defaults == [str(value) for value in values], names


# --- the walk-through -------------------------------------------------------------------


def walkthrough() -> list[str]:
    """The commands of the README's walk-through, a continued line joined to its start:
    the fenced blocks of its section that call the API."""
    blocks = FENCE.findall(section(README.read_text(), "A walk-through with curl"))
    commands = []
    for language, body in blocks:
        if language in ("sh", "bash") and "curl " in body:
            joined = re.sub(r"\\\n\s*", "", body)
            commands += [line.strip() for line in joined.splitlines() if line.strip()]
    assert commands, "the README has no walk-through"
    return commands


def expand(line: str, variables: dict) -> str:
    """$NAME as the shell expands it: outside single quotes only."""
    out, single, double, i = [], False, False, 0
    while i < len(line):
        char = line[i]
        if char == "\\" and not single:
            out.append(line[i : i + 2])
            i += 2
            continue
        if char == "'" and not double:
            single = not single
        elif char == '"' and not single:
            double = not double
        found = None if single else VARIABLE.match(line, i)
        if found:
            name = found[1] or found[2]
            assert name in variables, f"${name} is used before it is set"
            out.append(variables[name])
            i = found.end()
            continue
        out.append(char)
        i += 1
    return "".join(out)


def split_line(line: str, variables: dict) -> tuple[str | None, bool, list[list[str]]]:
    """A walk-through line as (variable it sets, whether through `$(...)`, the words of
    each command of its pipeline)."""
    assigned = re.fullmatch(r"(\w+)=(.*)", line)
    name, value = assigned.groups() if assigned else (None, line)
    substituted = re.fullmatch(r"\$\((.*)\)", value)
    commands = (substituted[1] if substituted else value).split(" | ")
    return name, bool(substituted), [shlex.split(expand(part, variables)) for part in commands]


def parse_curl(words: list[str]) -> dict:
    """Method, path, headers and body of a curl command line."""
    assert words[0] == "curl", words
    request = {"method": None, "url": None, "headers": {}, "data": None}
    words = iter(words[1:])
    for word in words:
        if word in ("-X", "--request"):
            request["method"] = next(words)
        elif word in ("-H", "--header"):
            name, _, value = next(words).partition(":")
            request["headers"][name.strip()] = value.strip()
        elif word in ("-d", "--data", "--data-raw"):
            request["data"] = next(words)
        elif word in ("-s", "--silent", "-i", "-N"):
            pass
        elif word.startswith("-"):
            raise AssertionError(f"the test does not know curl's {word}; teach it")
        else:
            request["url"] = word
    if request["data"] is not None:
        # curl's defaults: a body makes a POST, form-encoded unless told otherwise.
        request["method"] = request["method"] or "POST"
        request["headers"].setdefault("Content-Type", "application/x-www-form-urlencoded")
    request["method"] = request["method"] or "GET"
    request["path"] = urlsplit(request["url"]).path
    return request


def documented(method: str, path: str) -> bool:
    """Whether the committed OpenAPI document has this operation."""
    for template, operations in OPENAPI["paths"].items():
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path) and method.lower() in operations:
            return True
    return False


def jq(document, path: str):
    """`jq -r PATH` for the paths the walk-through uses: .name, [index]."""
    for name, index in re.findall(r"\.(\w+)|\[(\d+)\]", path):
        document = document[name] if name else document[int(index)]
    return document


def test_the_walkthroughs_requests_are_operations_of_the_openapi_document():
    placeholders = dict.fromkeys(MAILED, "token")
    variables = {
        "KEY": "key",
        "ACCESS_TOKEN": "token",
        **placeholders,
        "API": "http://127.0.0.1:8000",
        "UNSUBSCRIBE_URL": "http://127.0.0.1:8000/v1/unsubscribe/token",
    }
    calls = [
        parse_curl(split_line(line, variables)[2][0]) for line in walkthrough() if "curl " in line
    ]
    assert len(calls) >= 7
    for call in calls:
        assert documented(call["method"], call["path"]), f"{call['method']} {call['path']}"


@pytest.mark.committing
def test_the_walkthrough_runs_and_every_answer_is_2xx(committing_db, app, conn, database_url):
    """Runs the README's walk-through line by line: `identity sites create` through its
    click command on the test database (it commits: committing_db empties the tables
    afterwards), each curl through Flask's test client on the test's connection, `$(...
    | jq -r PATH)` by reading PATH from the answer, and the token the person would copy
    from the mail from the outbox row that mail was made from. `make run` and the SMTP
    sink before it are not run: the app stands in for the one, the outbox for the other."""
    client = app.test_client()
    variables: dict[str, str] = {}
    answers = []
    for line in walkthrough():
        if (name := line.partition("=")[0]) in MAILED:
            placeholder = line.partition("=")[2]
            assert re.fullmatch(r"'<[^>]+>'", placeholder), f"{name} stands for a mailed token"
            row = conn.execute(
                "select mail_values from outbox where template = %s order by id desc limit 1",
                (MAILED[name],),
            ).fetchone()
            assert row is not None, f"no {MAILED[name]} mail was queued"
            variables[name] = row["mail_values"]["token"]
            continue
        name, substituted, (command, *pipe) = split_line(line, variables)
        if command[0].endswith("/identity"):
            result = CliRunner().invoke(
                main, command[1:], env={"IDENTITY_DATABASE_URL": database_url}
            )
            assert result.exit_code == 0, result.output
            output = result.stdout
        elif command[0] == "curl":
            call = parse_curl(command)
            answer = client.open(
                call["path"],
                method=call["method"],
                headers=call["headers"],
                data=call["data"],
            )
            body = answer.get_data(as_text=True)
            assert 200 <= answer.status_code < 300, f"{line}\n{answer.status_code} {body}"
            answers.append((call["method"], call["path"], answer))
            output = body
        elif name and not substituted and not pipe:  # API=http://...
            variables[name] = command[0]
            continue
        else:
            raise AssertionError(f"the test does not know how to run: {line}")
        for step in pipe:
            if step == ["tail", "-n", "1"]:
                output = output.strip().splitlines()[-1]
            elif step[:2] == ["jq", "-r"]:
                output = jq(json.loads(output), step[2])
            else:
                raise AssertionError(f"the test does not know {' '.join(step)}")
        if name:
            variables[name] = output.strip()

    # What the walk-through says happened, happened.
    me = next(answer for method, path, answer in answers if path == "/v1/me")
    assert me.get_json()["email"] == "anna@example.com"
    assert me.get_json()["first_name"] == "Anna"  # the webinar's record, claimed
    left = answers[-1][2].get_json()
    assert (left["newsletter"], left["state"]) == ("copernica-updates", "unsubscribed")
