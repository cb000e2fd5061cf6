"""The `samhandling` command: up | serve SERVICE | migrate | dev-token."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from services.platform.identifiers import person_number_problem
from services.platform.principal import PURPOSES_OF_USE
from services.platform.settings import PREFIX, SERVICES, Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        print(f"samhandling: {error}", file=sys.stderr)
        return 2
    if getattr(args, "data_dir", None):
        settings = settings.with_overrides(data_dir=Path(args.data_dir))
    return int(args.handler(args, settings) or 0)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samhandling", description="Municipal collaboration services.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the database and all four services on loopback")
    _data_dir_option(up)
    for name in SERVICES:
        up.add_argument(f"--{name}-port", type=int, metavar="PORT", help=f"port for {name}")
    up.set_defaults(handler=_up)

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--port", type=int, help="listen on this port instead of the configured one")
    _data_dir_option(serve)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="bring the database schema up to date")
    _data_dir_option(migrate)
    migrate.set_defaults(handler=_migrate)

    token = commands.add_parser("dev-token", help="print a development access token (never in production)")
    token.add_argument("--tenant", required=True, help="municipality number, e.g. 1804 (Bodø) or 3201 (Bærum)")
    token.add_argument("--hpr", help="the clinician's HPR number")
    token.add_argument("--client-id", default="dev-ehr", help="the calling system (HelseID client id)")
    token.add_argument("--purpose", default="TREAT", choices=PURPOSES_OF_USE, help="purpose of use")
    token.add_argument("--patient", action="append", default=[], metavar="FNR", help="patient in the attestation")
    token.add_argument("--citizen", metavar="FNR", help="mint the patient's own token instead of a clinician's")
    token.add_argument("--name", help="the person's name (shown in the access log)")
    token.add_argument(
        "--privacy-officer", action="store_true", help="the municipality's privacy officer (access log, follow-ups)"
    )
    token.add_argument(
        "--feed", action="store_true", help="a system that follows the change feeds (WatchOverviews, WatchAlerts)"
    )
    token.add_argument("--ttl", type=int, default=3600, metavar="SECONDS", help="lifetime (default 3600)")
    _data_dir_option(token)
    token.set_defaults(handler=_dev_token)
    return parser


def _data_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help=f"data directory (default ${PREFIX}DATA_DIR or .samhandling)")


def _up(args: argparse.Namespace, settings: Settings) -> int:
    from services.catalog import migrate_database
    from services.platform.dev_tokens import ensure_dev_keys
    from services.platform.embedded_database import EmbeddedPostgres
    from services.platform.supervisor import DataDirLock, ServiceProcess, StopSignal, Supervisor, service_command

    ports = {name: getattr(args, f"{name}_port") or settings.ports[name] for name in SERVICES}
    data_dir = settings.data_dir.resolve()
    stop = StopSignal()
    with DataDirLock(data_dir):
        embedded = None if settings.database_url else EmbeddedPostgres(data_dir)
        try:
            database_url = settings.database_url or embedded.start()  # type: ignore[union-attr]
            print(f"database: {'embedded PostgreSQL in ' + str(data_dir) if embedded else 'external'}", flush=True)
            if stop.requested:
                return 0
            migrate_database(database_url)
            env = dict(os.environ)
            env.update(
                {
                    f"{PREFIX}DATA_DIR": str(data_dir),
                    f"{PREFIX}DATABASE_URL": database_url,
                    f"{PREFIX}JWKS": settings.jwks or str(ensure_dev_keys(data_dir / "dev-keys")),
                    f"{PREFIX}BIND_HOST": settings.bind_host,
                }
            )
            for name, port in ports.items():
                env[f"{PREFIX}{name.upper()}_PORT"] = str(port)
                env.setdefault(f"{PREFIX}{name.upper()}_ADDRESS", f"127.0.0.1:{port}")
            processes = [ServiceProcess(name, service_command(name), env) for name in SERVICES]
            supervisor = Supervisor(processes, grace_seconds=settings.shutdown_grace_seconds, stop=stop)
            return supervisor.run({name: f"127.0.0.1:{port}" for name, port in ports.items()})
        finally:
            if embedded is not None:
                embedded.stop()
                print("database stopped", flush=True)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from services.catalog import DATABASE_SERVICES, run_service
    from services.platform.logs import configure_logging

    configure_logging(settings.log_level, args.service)
    database_url, embedded, adopted = settings.database_url, None, True
    if args.service in DATABASE_SERVICES and database_url is None and settings.production:
        print(f"samhandling: {PREFIX}DATABASE_URL is required in production for {args.service}", file=sys.stderr)
        return 2
    if args.service in DATABASE_SERVICES and database_url is None:
        from services.catalog import migrate_database
        from services.platform.embedded_database import EmbeddedPostgres

        embedded = EmbeddedPostgres(settings.data_dir)
        adopted = embedded.is_running()
        database_url = embedded.start()
        migrate_database(database_url)
    try:
        asyncio.run(run_service(args.service, settings, database_url, port=args.port))
    finally:
        if embedded is not None and not adopted:
            embedded.stop()
    return 0


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from services.catalog import migrate_database

    if settings.database_url:
        migrate_database(settings.database_url)
        print("database schema is up to date")
        return 0
    if settings.production:
        print(f"samhandling: {PREFIX}DATABASE_URL is required in production", file=sys.stderr)
        return 2
    from services.platform.embedded_database import EmbeddedPostgres

    embedded = EmbeddedPostgres(settings.data_dir)
    adopted = embedded.is_running()
    try:
        migrate_database(embedded.start())
        print(f"embedded database schema in {settings.data_dir} is up to date")
    finally:
        if not adopted:
            embedded.stop()
    return 0


def _dev_token(args: argparse.Namespace, settings: Settings) -> int:
    from services.platform.dev_tokens import DevTokenRequest, mint_dev_token

    if settings.production:
        print("samhandling: dev-token is disabled in production", file=sys.stderr)
        return 2
    organisations = settings.tenants.organisations_of(args.tenant)
    problems = [] if organisations else [f"--tenant {args.tenant} is not in the tenant table"]
    for patient in [*args.patient, *([args.citizen] if args.citizen else [])]:
        if problem := person_number_problem(patient):
            problems.append(f"patient {patient}: {problem}")
    if args.hpr is not None and not (args.hpr.isdigit() and 1 <= len(args.hpr) <= 9):
        problems.append("--hpr must be an HPR number (up to 9 digits)")
    if args.citizen and (args.privacy_officer or args.feed):
        problems.append("--citizen excludes --privacy-officer and --feed")
    if args.ttl <= 0:
        problems.append("--ttl must be positive")
    if problems:
        print("samhandling: " + "; ".join(problems), file=sys.stderr)
        return 2
    request = DevTokenRequest(
        organisation_number=organisations[0],
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        client_id=args.client_id,
        hpr_number=args.hpr,
        purpose_of_use=args.purpose,
        patient_ids=tuple(args.patient),
        citizen_id=args.citizen,
        name=args.name,
        privacy_officer=args.privacy_officer,
        feed=args.feed,
        ttl_seconds=args.ttl,
    )
    print(mint_dev_token(settings.dev_keys_dir, request))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
