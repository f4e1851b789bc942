"""Options of `tulu human-eval serve | add-user | export | metrics`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import model_validator

from tulu_cli.options.base import Options, opt


class _DbOptions(Options):
    """The annotation database every human-eval command reads or writes."""

    db: Path = opt(Path("annotations.sqlite"), help="SQLite database of accounts and answers.")


class ServeOptions(_DbOptions):
    comparisons: Path = opt(
        help='JSONL, one per line: {"id", "prompt", "completions": [{"model", "completion"}, {"model", "completion"}]}.'
    )
    host: str = opt("127.0.0.1", help="Address to listen on.", default_help="127.0.0.1 (this machine only)")
    port: int = opt(5001, help="Port; 0 picks a free one.", ge=0, le=65535)
    shuffle: bool = opt(True, help="Give each annotator their own random order of instances.", flags=("--shuffle/--no-shuffle",))
    secure_cookies: bool = opt(
        False, help="Mark cookies Secure (set this behind a TLS reverse proxy; implied by --tls-cert).", flags=("--secure-cookies",)
    )
    tls_cert: Optional[Path] = opt(None, help="PEM certificate: serve HTTPS directly.")
    tls_key: Optional[Path] = opt(None, help="PEM private key for --tls-cert.")
    session_hours: float = opt(12.0, help="Sign-in lifetime in hours.", gt=0, le=24 * 30)
    access_log: bool = opt(False, help="Log every request to stderr.", flags=("--access-log",))
    guidelines: Optional[Path] = opt(
        None, help="Markdown file of annotation guidelines, shown on the Guidelines page.", default_help="built-in guidelines"
    )

    @model_validator(mode="after")
    def _tls_pair(self) -> "ServeOptions":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both or neither")
        return self


class AddUserOptions(_DbOptions):
    name: str = opt(help="Annotator's user name (letters, digits, . _ @ -).", argument="NAME")
    reset: bool = opt(False, help="Issue a new password for an existing user (signs them out).", flags=("--reset",))


class ExportOptions(_DbOptions):
    format: Optional[Literal["jsonl", "csv"]] = opt(
        None, help="jsonl or csv.", flags=("--format", "-f"), default_help="from --output's extension, else jsonl"
    )
    output: Optional[Path] = opt(None, help="File to write.", flags=("--output", "-o"), default_help="stdout")
    all_revisions: bool = opt(
        False, help="Every submission, not just each annotator's latest answer per instance.", flags=("--all-revisions",)
    )

    @model_validator(mode="after")
    def _infer_format(self) -> "ExportOptions":
        if self.format is None:
            suffix = self.output.suffix.lower().lstrip(".") if self.output else ""
            # validate_assignment is on; bypass it to avoid re-running this validator.
            object.__setattr__(self, "format", suffix if suffix in ("jsonl", "csv") else "jsonl")
        return self


class MetricsOptions(_DbOptions):
    json_output: bool = opt(False, help="Print one JSON document instead of tables.", flags=("--json",))
