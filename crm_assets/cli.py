"""`crm-assets`: project commands outside Dagster. Today: `crm-assets schema infer`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from crm_assets.source.config import CrmConfigError, resolve_api_key, resolve_base_url
from crm_assets.source.contract import DEFAULT_PAGE_SIZE, crm_resource_names
from crm_assets.source.http import RetryPolicy, build_session
from crm_assets.source.inference import DEFAULT_SAMPLE_PAGES, InferenceError, infer_schema
from crm_assets.source.schema import SCHEMA_FILE, SchemaFileError, load_schema, schema_path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-assets", description=__doc__)
    areas = parser.add_subparsers(dest="area", required=True)
    schema = areas.add_parser("schema", help="the declared schema of the CRM tables")
    commands = schema.add_subparsers(dest="command", required=True)
    infer = commands.add_parser(
        "infer",
        help="derive the schema file from the CRM API's responses",
        description=(
            "Reads the configured CRM API (CRM_API_BASE_URL, CRM_API_KEY, or dlt's"
            " sources.crm.*) and writes the schema file the project loads."
        ),
    )
    sample = infer.add_mutually_exclusive_group()
    sample.add_argument(
        "--pages",
        type=int,
        default=DEFAULT_SAMPLE_PAGES,
        help=f"pages read per resource (default {DEFAULT_SAMPLE_PAGES})",
    )
    sample.add_argument("--all", action="store_true", help="read every record")
    infer.add_argument("--page-size", type=int, default=DEFAULT_PAGE_SIZE)
    infer.add_argument(
        "--output",
        type=Path,
        default=None,
        help="file to write (default: the file in force, $CRM_SCHEMA_FILE or the shipped one)",
    )
    return parser


def _infer(args: argparse.Namespace) -> int:
    base_url = resolve_base_url(os.environ.get("CRM_API_BASE_URL"))
    api_key = resolve_api_key(os.environ.get("CRM_API_KEY"))
    output: Path = args.output or schema_path()
    base = load_schema(output if output.exists() else SCHEMA_FILE)
    result = infer_schema(
        build_session(30.0, RetryPolicy()),
        base_url,
        api_key,
        crm_resource_names(),
        base,
        max_pages=None if args.all else args.pages,
        page_size=args.page_size,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(result.text)
    print(f"wrote {output}")
    for sample in result.samples:
        columns = sample.columns()
        changed = [
            f"{name} {sample.declared[name].data_type}->{column['data_type']}"
            for name, column in columns.items()
            if name in sample.declared and sample.declared[name].data_type != column["data_type"]
        ]
        new = [name for name in columns if name not in sample.declared]
        print(f"  {sample.resource}: {sample.records} records, {len(columns)} columns")
        for label, names in (("new", new), ("type changed", changed), ("gone", sample.dropped())):
            if names:
                print(f"    {label}: {', '.join(names)}")
    for api_name, neutral in result.suggestions.items():
        print(f"  suggested rename: {api_name} -> {neutral} (add it under `renames` to adopt)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _infer(args)
    except (CrmConfigError, InferenceError, SchemaFileError) as error:
        print(f"crm-assets: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
