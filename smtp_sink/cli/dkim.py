"""``smtp-sink dkim ID``: the DKIM check of a captured message (:mod:`smtp_sink.checks.dkim_check`)
with the keys of ``[checks] dkim_keys`` / ``dkim_keys_file`` (or ``--keys-file``), never DNS.
Exit status: 0 when every signature verifies (and there is one), 1 otherwise, 2 for a bad option
or unreadable keys."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from ..checks.dkim_check import Report, keys_of, verify
from ..checks.dkim_keys import DKIMKeyError, read_keys_file
from .common import EXIT_OK, EXIT_RUNTIME, UsageError, add_options, load, open_store, printable, resolve_message

if TYPE_CHECKING:
    from .common import Commands


def register(commands: Commands) -> None:
    """Add ``dkim`` to the ``smtp-sink`` parser."""
    text = "verify the DKIM signatures of a captured message with your public keys (never DNS; exit 1 unless all pass)"
    parser = commands.add_parser("dkim", help=text, description=text)
    add_options(parser, "config", "store")
    parser.add_argument("id", metavar="ID|latest", help="message id, or 'latest' for the newest")
    parser.add_argument("--keys-file", metavar="FILE",
                        help='a TOML file of keys ("sel._domainkey.example.com" = "v=DKIM1; k=rsa; p=..."), '
                             "added to [checks] dkim_keys and dkim_keys_file")
    parser.add_argument("--json", action="store_true", help="print the report as GET /api/v1/message/{id}/dkim does")
    parser.set_defaults(handler=cmd_dkim)


def cmd_dkim(args: argparse.Namespace) -> int:
    """Print the DKIM report of one message."""
    checks = load(args).checks
    try:
        keys = keys_of(checks.dkim_keys, checks.dkim_keys_file)
        if args.keys_file:
            keys.update(read_keys_file(args.keys_file, "--keys-file"))
    except DKIMKeyError as exc:
        raise UsageError(str(exc)) from None
    store = open_store(args)
    message_id = resolve_message(store, args.id)
    sender = store.summary(message_id).sender
    report = verify(store.read(message_id), keys, sender.address if sender else "")
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(printable(describe(message_id, report), lines=True), end="")
    passed = bool(report.signatures) and all(signature.valid for signature in report.signatures)
    return EXIT_OK if passed else EXIT_RUNTIME


def describe(message_id: str, report: Report) -> str:
    """The human report: one block per signature, then the message's findings."""
    lines = [f"message {message_id}: From domain {report.from_domain or '(none)'}, "
             f"envelope sender <{report.return_path}>",
             f"DKIM {'pass' if report.valid else 'fail'}; aligned with From (DMARC relaxed): "
             f"{'yes' if report.aligned else 'no'}"]
    for number, signature in enumerate(report.signatures, 1):
        yes = {True: "yes", False: "no"}
        lines += [
            f"signature {number}: {signature.result.upper()} d={signature.domain} s={signature.selector} "
            f"a={signature.algorithm} c={signature.canonicalization}",
            f"  {signature.reason}",
            f"  signed headers: {', '.join(signature.signed_headers) or '(none)'}",
            f"  aligned with From: relaxed {yes[signature.from_aligned_relaxed]}, "
            f"strict {yes[signature.from_aligned_strict]}; with the envelope sender: relaxed "
            f"{yes[signature.return_path_aligned_relaxed]}, strict {yes[signature.return_path_aligned_strict]}",
        ]
        if signature.body_length is not None:
            lines.append(f"  l={signature.body_length}")
        lines += [f"  {f.severity}: {f.check}: {f.evidence} ({f.reference})" for f in signature.findings]
    lines += [f"{f.severity}: {f.check}: {f.evidence} ({f.reference})" for f in report.findings]
    return "\n".join(lines) + "\n"
