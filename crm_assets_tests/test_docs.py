"""The docs cannot go stale: docs/configuration.md's tables against the code, and README/docs
hygiene (length, links, no issue numbers or commit hashes).

Fast: imports and file reads only, no server and no sync. The checks return lists of problems,
and the `test_the_check_*` tests feed them wrong input, so each one is known to be able to fail.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
import typing
from ast import literal_eval
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from pydantic_core import PydanticUndefined

import crm_assets
from crm_assets_tests.conftest import REPO

CONFIGURATION = REPO / "docs" / "configuration.md"
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
README_MAX_LINES = 200

ENV_HEADING = "Environment variables"  # every CRM_* variable crm_assets/ reads
TOOLS_HEADING = "Variables for tests, benchmarks and CI"  # CRM_* read only by tests and tools
MAKE_HEADING = "Make variables"

CRM_NAME = re.compile(r"\bCRM_[A-Z0-9_]*[A-Z0-9]\b")
# os.environ.get("CRM_X"), os.environ["CRM_X"], os.getenv("CRM_X")
ENV_READ = re.compile(r"""(?:environ(?:\.get)?\s*[(\[]|getenv\s*\()\s*["'](CRM_\w+)["']""")
CODE_SPAN = re.compile(r"`([^`]+)`")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_ID = re.compile(r"<a\s+(?:id|name)=\"([^\"]+)\"")
ISSUE = re.compile(r"\bissues?\s*#?\d+|(?<![\w/&#])#\d+\b", re.I)
# 7-40 hex characters with at least one letter and one digit: a short or full commit hash,
# not a number or a word.
COMMIT = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,40}\b")


# --- reading markdown -------------------------------------------------------------------------


def _unfenced(text: str) -> str:
    """The text with fenced code blanked out, line numbers kept."""
    return FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def headings(text: str) -> list[tuple[str, str]]:
    """(title, body) of each `##`-`######` heading, in order; the body runs to the next heading
    of that level or above. Lines in fenced code are not headings."""
    lines, raw = _unfenced(text).split("\n"), text.split("\n")
    heads = [
        (i, len(m.group(1)), m.group(2).strip())
        for i, line in enumerate(lines)
        if (m := re.match(r"^(#{2,6})\s+(.*)$", line))
    ]
    found = []
    for n, (start, level, title) in enumerate(heads):
        end = next((i for i, lvl, _ in heads[n + 1 :] if lvl <= level), len(raw))
        found.append((title, "\n".join(raw[start + 1 : end])))
    return found


def sections(text: str) -> dict[str, str]:
    return dict(headings(text))


def split_row(line: str) -> list[str]:
    """A markdown table row's cells; `\\|` is a pipe inside a cell."""
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", inner)]


def first_table(section: str) -> list[dict[str, str]]:
    """The first table of a section as rows keyed by the header's cells."""
    lines = section.split("\n")
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("|")), None)
    if start is None:
        return []
    block = []
    for line in lines[start:]:
        if not line.lstrip().startswith("|"):
            break
        block.append(line)
    header = split_row(block[0])
    return [dict(zip(header, split_row(line), strict=False)) for line in block[2:]]


def table_under(text: str, heading: str, page: str = "docs/configuration.md") -> list[dict]:
    found = sections(text)
    assert heading in found, f"{page} has no '## {heading}' section"
    rows = first_table(found[heading])
    assert rows, f"{page}, '## {heading}': no table"
    return rows


def names_in(cell: str, pattern: re.Pattern[str] = CRM_NAME) -> set[str]:
    """The names in a cell's code spans that match `pattern`."""
    return {name for span in CODE_SPAN.findall(cell) for name in pattern.findall(span)}


# --- the code's side --------------------------------------------------------------------------


def config_classes() -> list[type]:
    """Every Dagster resource and config class defined in crm_assets."""
    found: dict[str, type] = {}
    for info in pkgutil.walk_packages(crm_assets.__path__, "crm_assets."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, (dg.ConfigurableResource, dg.Config))
                and value.__module__ == module.__name__
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return list(found.values())


def type_name(annotation: Any) -> str:
    """A field's type as the docs write it: `int`, `str | None`, `dict[str, str]`, ..."""
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def field_default(field: Any) -> Any:
    if field.default_factory is not None:
        return field.default_factory()
    return field.default


def identifiers(paths: list[Path]) -> set[str]:
    """Every Python name bound or used in these files: constants, not environment variables."""
    names: set[str] = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.alias):
                names |= {node.name.split(".")[-1], node.asname or ""}
            elif isinstance(node, ast.FunctionDef | ast.ClassDef):
                names.add(node.name)
    return names


def env_names(paths: list[Path], python: list[Path]) -> dict[str, list[str]]:
    """CRM_* names in these files (a regex over their text), minus Python identifiers of
    `python` (`CRM_RESOURCES`, `CRM_SYNC_JOB`, ...): variable name -> files naming it."""
    constants = identifiers(python)
    found: dict[str, list[str]] = {}
    for path in paths:
        for name in set(CRM_NAME.findall(path.read_text())) - constants:
            found.setdefault(name, []).append(_name(path))
    return found


def python_files(*folders: str) -> list[Path]:
    return [
        path
        for folder in folders
        for path in sorted((REPO / folder).rglob("*.py"))
        if "__pycache__" not in path.parts
    ]


# --- the checks: each returns its problems ----------------------------------------------------


def field_problems(cls: type, rows: list[dict[str, str]]) -> list[str]:
    """Rows of a field table against a pydantic model's fields: missing, extra, stale."""
    fields = cls.model_fields  # type: ignore[attr-defined]
    documented = {}
    for row in rows:
        spans = CODE_SPAN.findall(row.get("field", ""))
        documented[spans[0] if spans else row.get("field", "")] = row
    problems = [f"field `{n}` has no row" for n in fields if n not in documented]
    problems += [f"row `{n}` is no field of {cls.__name__}" for n in documented if n not in fields]
    for name, field in fields.items():
        row = documented.get(name)
        if row is None:
            continue
        shown_type = "".join(CODE_SPAN.findall(row.get("type", "")))
        if shown_type != type_name(field.annotation):
            problems.append(
                f"`{name}`: type is `{type_name(field.annotation)}`, docs say `{shown_type}`"
            )
        default_cell = row.get("default", "")
        spans = CODE_SPAN.findall(default_cell)
        expected = field_default(field)
        if expected is PydanticUndefined:
            if not default_cell.startswith("required"):
                problems.append(f"`{name}`: required, docs say {default_cell!r}")
        elif not spans:
            problems.append(f"`{name}`: default {expected!r}, docs give no `literal`")
        else:
            try:
                shown = literal_eval(spans[0])
            except (ValueError, SyntaxError):
                shown = spans[0]
            if shown != expected or type(shown) is not type(expected):
                problems.append(f"`{name}`: default is {expected!r}, docs say `{spans[0]}`")
        if not row.get("description", "").strip():
            problems.append(f"`{name}`: no description")
    return problems


def set_problems(in_code: set[str], in_docs: set[str], code: str, table: str) -> list[str]:
    return [f"{n} is read by {code} but not in {table}" for n in sorted(in_code - in_docs)] + [
        f"{n} is in {table} but read nowhere in {code}" for n in sorted(in_docs - in_code)
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The #anchors a markdown file offers: its headings' slugs and explicit `<a id>`s."""
    text = path.read_text()
    found: set[str] = set(HTML_ID.findall(text))
    titles = [m.group(1) for m in re.finditer(r"^# (.*)$", _unfenced(text), re.M)]
    seen: dict[str, int] = {}
    for title in [*titles, *(title for title, _ in headings(text))]:
        base = slug(title)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def _name(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name


def link_problems(path: Path) -> list[str]:
    """Relative links (and their #anchors) in a markdown file that point at nothing."""
    text = CODE_SPAN.sub("code", _unfenced(path.read_text()))
    problems = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        where = (path.parent / file_part).resolve() if file_part else path
        name = _name(path)
        if not where.exists():
            problems.append(f"{name}: link to {target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            problems.append(f"{name}: link to {target}: no such heading in {where.name}")
    return problems


def prose_problems(path: Path) -> list[str]:
    """Issue numbers and commit hashes: history belongs in git and the changelog."""
    problems = []
    for number, line in enumerate(path.read_text().split("\n"), 1):
        for pattern, what in ((ISSUE, "an issue number"), (COMMIT, "a commit hash")):
            for match in pattern.finditer(line):
                problems.append(f"{_name(path)}:{number}: {what}: {match.group(0)!r}")
    return problems


# --- the tests --------------------------------------------------------------------------------


def test_every_resource_and_config_field_is_documented_as_it_is() -> None:
    text = CONFIGURATION.read_text()
    classes = config_classes()
    assert {c.__name__ for c in classes} >= {"CrmApiResource", "WarehouseResource"}
    problems = []
    for cls in classes:
        naming = [t for t, body in sections(text).items() if f"`{cls.__name__}`" in body]
        if len(naming) != 1:
            problems.append(
                f"{cls.__name__} ({cls.__module__}): {len(naming)} sections of"
                f" docs/configuration.md name `{cls.__name__}`; want one, with its field table"
            )
            continue
        rows = first_table(sections(text)[naming[0]])
        problems += [f"{cls.__name__}: {p}" for p in field_problems(cls, rows)]
    assert not problems, "docs/configuration.md is stale:\n" + "\n".join(problems)


def test_every_crm_variable_the_product_reads_is_in_the_table_and_only_those() -> None:
    product = python_files("crm_assets")
    in_code = set(env_names(product, product))
    rows = table_under(CONFIGURATION.read_text(), ENV_HEADING)
    in_docs = {name for row in rows for name in names_in(row["variable"])}
    assert in_code, "found no CRM_* variable in crm_assets/: the regex is broken"
    problems = set_problems(in_code, in_docs, "crm_assets/", f"'## {ENV_HEADING}'")
    assert not problems, "docs/configuration.md is stale:\n" + "\n".join(problems)


def test_every_crm_variable_of_tests_and_tools_is_in_their_table() -> None:
    """Helpers, scripts and the Makefile: every CRM_* name they hold. Test modules hold names
    as data too (a fake variable to clear, say), so there only what they read from os.environ."""
    product = python_files("crm_assets")
    this = Path(__file__).resolve()  # its examples are data
    tools = [p for p in python_files("crm_assets_tests", "benchmarks", "sandbox") if p != this]
    helpers = [p for p in tools if not p.name.startswith("test_")]
    scripts = [REPO / "Makefile", *sorted(p for p in (REPO / ".ci").iterdir() if p.is_file())]
    in_tools = set(env_names([*helpers, *scripts], [*product, *tools]))
    in_tools |= {
        n for p in tools if p.name.startswith("test_") for n in ENV_READ.findall(p.read_text())
    }
    in_tools -= set(env_names(product, product))
    rows = table_under(CONFIGURATION.read_text(), TOOLS_HEADING)
    in_docs = {name for row in rows for name in names_in(row["variable"])}
    where = "crm_assets_tests/, benchmarks/, sandbox/, .ci/ or the Makefile"
    problems = set_problems(in_tools, in_docs, where, f"'## {TOOLS_HEADING}'")
    assert not problems, "docs/configuration.md is stale:\n" + "\n".join(problems)


def test_every_make_variable_is_in_the_table() -> None:
    makefile = (REPO / "Makefile").read_text()
    in_make = set(re.findall(r"^(\w+)\s*\?=", makefile, re.M))
    in_make |= set(re.findall(r"\$\((\w+_ARGS)\)", makefile))
    rows = table_under(CONFIGURATION.read_text(), MAKE_HEADING)
    in_docs = {name for row in rows for name in names_in(row["variable"], re.compile(r"^\w+$"))}
    problems = set_problems(in_make, in_docs, "the Makefile", f"'## {MAKE_HEADING}'")
    assert not problems, "docs/configuration.md is stale:\n" + "\n".join(problems)


def test_the_readme_is_a_front_page() -> None:
    lines = README.read_text().count("\n")
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"
    )


@pytest.mark.parametrize("page", [README, REPO / "CHANGELOG.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_points_at_something(page: Path) -> None:
    problems = link_problems(page)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_no_issue_numbers_or_commit_hashes(page: Path) -> None:
    problems = prose_problems(page)
    assert not problems, "\n".join(problems)


# --- the checks can fail ----------------------------------------------------------------------


class _Fake(dg.Config):
    retries: int = 3
    name: str | None = None


_FAKE_TABLE = """\
| field | type | default | description |
|---|---|---|---|
| `retries` | `int` | `3` | how often |
| `name` | `str \\| None` | `None` | a name |
"""


def test_the_check_of_fields_passes_a_true_table_and_names_what_is_wrong() -> None:
    assert field_problems(_Fake, first_table(_FAKE_TABLE)) == []
    stale = _FAKE_TABLE.replace("`3`", "`4`").replace("`int`", "`float`")
    extra = _FAKE_TABLE + "| `gone` | `int` | `1` | removed from the code |\n"
    missing = _FAKE_TABLE.replace("| `name` | `str \\| None` | `None` | a name |\n", "")
    assert field_problems(_Fake, first_table(stale)) == [
        "`retries`: type is `int`, docs say `float`",
        "`retries`: default is 3, docs say `4`",
    ]
    assert field_problems(_Fake, first_table(extra)) == ["row `gone` is no field of _Fake"]
    assert field_problems(_Fake, first_table(missing)) == ["field `name` has no row"]


def test_the_check_of_variables_tells_constants_from_variables(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text('CRM_THING = 1\nx = os.environ.get("CRM_REAL_ONE")  # and CRM_THING\n')
    assert set(env_names([source], [source])) == {"CRM_REAL_ONE"}
    assert set_problems({"CRM_A"}, {"CRM_B"}, "code", "table") == [
        "CRM_A is read by code but not in table",
        "CRM_B is in table but read nowhere in code",
    ]


def test_the_checks_of_links_and_prose_find_what_they_look_for(tmp_path: Path) -> None:
    page = REPO / "docs" / "architecture.md"  # a real page, for its headings
    fake = tmp_path / "fake.md"
    fake.write_text(
        f"[a]({page}#layout) [b]({page}#no-such) [c](missing.md) [d](https://x.example)\n"
        "Fixed in issue 11 (#13) at b5413af; 2026-11-29, 100000000 and `make demo` are fine.\n"
    )

    assert link_problems(fake) == [
        f"fake.md: link to {page}#no-such: no such heading in architecture.md",
        "fake.md: link to missing.md: no such file",
    ]
    assert prose_problems(fake) == [
        "fake.md:2: an issue number: 'issue 11'",
        "fake.md:2: an issue number: '#13'",
        "fake.md:2: a commit hash: 'b5413af'",
    ]
