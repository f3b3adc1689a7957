"""The `hocba` command line; subcommands are imported on first use."""

from __future__ import annotations

import importlib
from typing import ClassVar

import click

from signer.cli.dev import dev_environment, wait_for_port

__all__ = ["dev_environment", "main", "wait_for_port"]


class LazyGroup(click.Group):
    """Subcommands imported when used: `hocba verify` and `hocba --help` must start fast,
    without the index, the agent's PKCS#11 code or HTTP clients (click's documented
    pattern). Each entry: "module:attr" and the first sentence of the command's help
    (shown by `hocba --help` without importing it; a test keeps the two equal)."""

    LAZY: ClassVar[dict[str, tuple[str, str]]] = {
        "agent": ("signer.cli.agent:agent",
                  "Sign records with a certificate on a USB token (PKCS#11) at the school."),
        "archive": ("signer.cli.archive:archive", "Check and export what the archive holds."),
        "batch": ("signer.cli.batch:batch",
                  "Sign many records by one role in one batch (one authorization)."),
        "dev": ("signer.cli.dev:dev", "Provision dev state if needed, then run the "
                "TSA/OCSP/CRL responder and the service."),
        "evidence": ("signer.cli.evidence:evidence",
                     "Check evidence records (RFC 4998) of archived files."),
        "jobs": ("signer.cli.batch:jobs", "Follow long work (batches) on a running hocba."),
        "verify": ("signer.cli.verify:verify", "Verify a signed record: every signature, "
                   "document timestamp and the PAdES level."),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            module, name = self.LAZY[cmd_name][0].split(":")
            command = getattr(importlib.import_module(module), name)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        commands: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            if name in self.LAZY:
                commands.append((name, click.Command(name, help=self.LAZY[name][1])))
            elif (cmd := super().get_command(ctx, name)) is not None and not cmd.hidden:
                commands.append((name, cmd))
        if commands:
            limit = formatter.width - 6 - max(len(name) for name, _ in commands)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit))
                                    for name, cmd in commands])


# Pure API clients: they never load pyHanko, so applying its fixes (~0.6 s) is skipped.
WITHOUT_PYHANKO = frozenset({"batch", "jobs"})


@click.group(cls=LazyGroup)
@click.pass_context
def main(ctx: click.Context) -> None:
    """hocba: signing and archival of digital school records (học bạ số)."""
    from signer.logs import configure_logging

    configure_logging()
    if ctx.invoked_subcommand in WITHOUT_PYHANKO:
        return
    from signer import fixes
    from signer.errors import ConfigError

    try:
        fixes.apply()
    except ConfigError as e:
        raise click.ClickException(e.detail) from e
