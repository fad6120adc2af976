"""``chisan keys``, ``chisan export`` and ``chisan verify``: the site key and the signed history.

An installer registers the site's public key with the backend once (``keys init``); anyone holding
an export and that key can later check that no record was altered, removed or reordered
(``verify``), without access to the gateway. Heavy imports (cryptography, sqlite) happen inside
the commands so ``chisan --help`` stays fast.
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.cli import CONFIG_OPTION, load_or_exit
from gateway.cli._common import fail

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

#: CSV columns in this order; any other field of a record follows, sorted by name.
CSV_COLUMNS = (
    "site",
    "seq",
    "slot_start",
    "rev",
    "source",
    "import_wh",
    "export_wh",
    "pv_wh",
    "battery_charge_wh",
    "battery_discharge_wh",
    "created_at",
    "prev_hash",
    "hash",
    "sig",
)


def _print_public(public: Ed25519PublicKey) -> None:
    from gateway import provenance

    click.echo(f"public key (base64, raw 32 bytes): {provenance.public_key_b64(public)}")
    click.echo(provenance.public_key_pem(public), nl=False)


# ------------------------------------------------------------------------------------- keys


@click.group("keys")
def keys() -> None:
    """Create or show the site's Ed25519 signing key."""


@keys.command("init")
@CONFIG_OPTION
def keys_init(config_path: Path) -> None:
    """Create the site key if absent (never replaced) and print its public key."""
    cfg = load_or_exit(config_path)
    from gateway import provenance

    path = cfg.store.site_key
    try:
        created, public = provenance.init_key(path)
    except (provenance.KeyFileError, OSError) as exc:
        fail(str(exc) if isinstance(exc, provenance.KeyFileError) else f"{path}: {exc}")
    if created:
        click.echo(f"created site key {path} (mode 0600)")
    else:
        click.echo(f"site key {path} already exists; not changed")
    if created and os.geteuid() == 0:
        owner = path.parent.stat().st_uid
        if owner != 0:
            click.echo(
                f"note: the key belongs to root but its folder to uid {owner}; if the daemon "
                f"runs as that user: chown {owner} {path}",
                err=True,
            )
    click.echo("register this public key with the market backend:")
    _print_public(public)


@keys.command("show")
@CONFIG_OPTION
def keys_show(config_path: Path) -> None:
    """Print the site's public key (base64 and PEM)."""
    cfg = load_or_exit(config_path)
    from gateway import provenance, secrets

    path = cfg.store.site_key
    if not path.exists() and secrets.credentials_path(path.name) is None:
        fail(f"{path}: no site key; create it with: chisan keys init -c {config_path}")
    try:
        key = provenance.load_private(path)
    except provenance.KeyFileError as exc:
        fail(str(exc))
    _print_public(key.public_key())


# ----------------------------------------------------------------------------------- export


def _date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        fail(f"{option}: expected a date YYYY-MM-DD, not {value!r}", 2)


@click.command("export")
@CONFIG_OPTION
@click.option("--from", "from_text", required=True, metavar="DATE", help="First day (JST).")
@click.option("--to", "to_text", required=True, metavar="DATE", help="Last day (JST), included.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="JSON (verifiable with chisan verify) or CSV.",
)
def export(config_path: Path, from_text: str, to_text: str, fmt: str) -> None:
    """Print the signed slot records of a range of days (safe while the daemon runs)."""
    first, last = _date(from_text, "--from"), _date(to_text, "--to")
    if last < first:
        fail(f"--to {last} is before --from {first}", 2)
    cfg = load_or_exit(config_path)
    from gateway import provenance
    from gateway.store import Store, StoreError

    try:
        with Store.open_readonly(cfg.store.path, cfg.site.id) as store:
            in_range = store.slot_records(first, last)
            records: list[dict[str, Any]] = []
            if in_range:
                # The contiguous run of the chain that holds them, so the export verifies link by
                # link; revisions or backfills of other days appended in between come along.
                seqs = [int(r["seq"]) for r in in_range]
                records = store.records_by_seq(min(seqs), max(seqs))
            public = store.public_key_b64()
    except StoreError as exc:
        fail(str(exc))
    if public is None and cfg.store.site_key.exists():
        try:
            public = provenance.public_key_b64(provenance.load_private(cfg.store.site_key))
        except provenance.KeyFileError:
            public = None
    if fmt == "json":
        click.echo(_export_json(cfg.site.id, public, records), nl=False)
    else:
        click.echo(_export_csv(records), nl=False)


def _export_json(site: str, public: str | None, records: list[dict[str, Any]]) -> str:
    """One record per line: readable, diffable, and still one JSON document."""
    head = json.dumps({"site": site, "public_key": public}, ensure_ascii=False)[:-1]
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=True) for r in records]
    body = ",\n".join(f"  {line}" for line in lines)
    return f'{head}, "records": [\n{body}\n]}}\n' if lines else f'{head}, "records": []}}\n'


def _export_csv(records: list[dict[str, Any]]) -> str:
    extra = sorted({k for r in records for k in r} - set(CSV_COLUMNS))
    columns = [*CSV_COLUMNS, *extra]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow(["" if record.get(c) is None else record[c] for c in columns])
    return out.getvalue()


# ----------------------------------------------------------------------------------- verify


@click.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--public-key",
    "public_key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Site public key (PEM or base64) to trust instead of the one in the export.",
)
def verify(file: Path, public_key_file: Path | None) -> None:
    """Check an exported chain: exit 0 if intact, 1 naming the first broken link."""
    from gateway import provenance

    doc = _read_export(file)
    records = doc["records"]
    named = doc.get("public_key")
    if public_key_file is not None:
        try:
            public = provenance.parse_public_key(public_key_file.read_bytes())
        except OSError as exc:
            fail(f"{public_key_file}: {exc.strerror or exc}", 2)
        except ValueError as exc:
            fail(f"{public_key_file}: {exc}", 2)
        if isinstance(named, str) and named != provenance.public_key_b64(public):
            click.echo("note: the export names another public key; using --public-key", err=True)
    elif isinstance(named, str):
        try:
            public = provenance.parse_public_key(named)
        except ValueError as exc:
            fail(f"{file}: public_key: {exc}", 2)
    else:
        fail(f"{file}: the export has no public_key; pass --public-key", 2)
    site = doc.get("site")
    result = provenance.verify_chain(records, public, site=site if isinstance(site, str) else None)
    if not result.ok:
        click.echo(f"FAILED: {result.reason}")
        raise SystemExit(1)
    click.echo(f"OK: {result.checked} records, chain intact")


def _read_export(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        fail(f"{file}: {exc.strerror or exc}", 2)
    except UnicodeDecodeError:
        fail(f"{file}: not UTF-8 text", 2)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{file}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", 2)
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list):
        fail(f"{file}: not a chisan export (no 'records' list)", 2)
    for i, record in enumerate(doc["records"]):
        if not isinstance(record, dict):
            fail(f"{file}: records[{i}] is not an object", 2)
    return doc


COMMANDS: list[click.Command] = [keys, export, verify]
