"""Command line: ``dynavault serve``, ``dynavault kms serve``, ``dynavault credentials``, ``dynavault verify``,
``dynavault upgrade``, ``dynavault export decrypt``.

Flags are generated from Settings, so every setting is a flag, a DYNAVAULT_* variable and a config
key under the same name (DESIGN.md "Command line").
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from dataclasses import MISSING, fields

from dynavault.config import Settings, load_settings


def _add_setting_flags(parser: argparse.ArgumentParser, *, port_default: int | None = None) -> None:
    for f in fields(Settings):
        flag = "--" + f.name.replace("_", "-")
        default_text = "" if f.default is MISSING else f" (default: {f.default if f.name != 'port' or port_default is None else port_default})"
        if f.name == "workers":
            default_text = " (default: one per CPU core; one with --in-memory)"
        if f.type in ("bool", bool):
            parser.add_argument(flag, dest=f.name, action="store_const", const=True, default=None,
                                help=f"{f.name}{default_text}")
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=default_text.strip())


def _setup_logging(settings: Settings) -> None:
    from dynavault import logsafe

    # No input can forge a log line: every record's message (any logger's) has its line breaks, controls and
    # bidi overrides escaped; tracebacks are indented under their record.
    logsafe.install()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if settings.log_file:
        # owner-only, like the data dir: the log names tables, keys and principals
        os.close(os.open(settings.log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))
        handlers.append(logging.FileHandler(settings.log_file))
    formatter = logsafe.SafeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        handlers=handlers,
        force=True,
    )


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # the cores this process may run on (a container's share)
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _serve(settings: Settings, *, kms_only: bool) -> int:
    _setup_logging(settings)
    if settings.workers <= 0:  # the default: a worker per core, where several can serve
        settings = dataclasses.replace(settings, workers=1 if settings.in_memory or kms_only else _cores())
    if settings.workers > 1:
        from dynavault.errors import StartupError
        from dynavault.server.workers import serve_workers

        if settings.in_memory:  # separate processes cannot share one process's memory
            raise StartupError("--in-memory serves from one process: leave out --workers")

        return serve_workers(settings, kms_only=kms_only, setup_logging=_setup_logging)
    from dynavault.server.runtime import build_runtime
    from dynavault.server.serving import serve

    runtime = build_runtime(settings, kms_only=kms_only)
    # After the URL, so whatever reads "listening on URL" up to the first space keeps working.
    note = " (in memory: nothing is written to disk; all data is gone when the server stops)" \
        if settings.in_memory else ""
    return serve(runtime, settings, label="dynavault kms" if kms_only else "dynavault", note=note)


def _credentials_cmd(settings: Settings, args: argparse.Namespace) -> int:
    from dynavault.server.credentials import CredentialStore

    store = CredentialStore(settings.data_path("credentials.json"))
    if args.action == "create":
        cred = store.create(args.account, args.user)
        print(f"aws_access_key_id = {cred.access_key_id}\naws_secret_access_key = {cred.secret_access_key}\n"
              f"account = {cred.account_id}\nprincipal = {cred.principal_arn}")
    else:
        for cred in store.all():
            print(f"{cred.access_key_id}  {cred.account_id}  {cred.principal_arn}")
    return 0


def _offline_parser(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command that opens a data dir without a server: where it is, and one way to its keys."""
    parser = sub.add_parser(name, help=help_text)
    parser.add_argument("--data-dir", dest="data_dir", required=True)
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--root-key-file", dest="root_key_file", default=None)
    keys.add_argument("--kms-endpoint", dest="kms_endpoint", default=None)
    parser.add_argument("--config", dest="config", default=None)
    return parser


def build_parser(*, serving: bool = False) -> argparse.ArgumentParser:
    """``serving``: for ``serve`` or ``kms``, which leave out the parsers of ``export`` and ``bench`` (argparse
    reads only the chosen command's parser; importing theirs is ~40 ms of every server start)."""
    import dynavault

    parser = argparse.ArgumentParser(prog="dynavault", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"dynavault {dynavault.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the DynamoDB-compatible server (with the in-process KMS)")
    _add_setting_flags(serve)

    kms = sub.add_parser("kms", help="the key service on its own")
    kms_sub = kms.add_subparsers(dest="kms_command", required=True)
    kms_serve = kms_sub.add_parser("serve", help="run only the KMS-compatible key service (default port 8100)")
    _add_setting_flags(kms_serve, port_default=8100)

    creds = sub.add_parser("credentials", help="list or create access keys in a data dir")
    creds.add_argument("action", choices=["list", "create"])
    creds.add_argument("--account", default=None, help="12-digit account id (create; default: a new account)")
    creds.add_argument("--user", default=None, help="IAM user name for the principal ARN (default: root)")
    creds.add_argument("--data-dir", dest="data_dir", default=None)
    creds.add_argument("--config", dest="config", default=None)

    verify = _offline_parser(sub, "verify", "check a data dir offline, read-only: every blob, tree, count, canary")
    verify.add_argument("--canary", action="append", default=[], help="text that must not appear (repeatable)")
    verify.add_argument("--json", dest="as_json", action="store_true", help="print one JSON document")
    _offline_parser(sub, "upgrade", "one-time, server stopped: add partition directories to an older data dir")
    if serving:
        return parser
    from dynavault.export_tool import add_parser as add_export_parser

    add_export_parser(sub)

    try:
        from dynavault.bench.cli import add_bench_parser
    except ImportError:
        pass
    else:
        add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from dynavault.errors import StartupError

    try:
        return _main(argv)
    except StartupError as exc:
        # One line, no traceback: what is wrong, where, and what to do.
        print(f"dynavault: {exc}", file=sys.stderr, flush=True)
        return 2


def _main(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = build_parser(serving=bool(words) and words[0] in ("serve", "kms"))
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k in Settings.field_names()}
    if args.command == "kms":
        if overrides.get("port") is None and "DYNAVAULT_PORT" not in os.environ:
            overrides["port"] = 8100
        return _serve(load_settings(overrides), kms_only=True)
    settings = load_settings(overrides)
    if args.command == "serve":
        return _serve(settings, kms_only=False)
    if args.command == "credentials":
        return _credentials_cmd(settings, args)
    if args.command == "verify":
        from dynavault.verify import main as verify_main

        return verify_main(settings, args.canary, args.as_json)
    if args.command == "upgrade":
        from dynavault.upgrade import main as upgrade_main

        return upgrade_main(settings)
    if args.command == "export":
        return args.run(args)
    if args.command == "bench":
        return args.run(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
