"""typer's ``CliRunner`` for the tests, with each app's command tree built once.

``typer.testing.CliRunner.invoke`` turns the whole Typer app into click commands on every
call: for labctl's 235 commands that is about 0.2 s of CPU (typer evaluates every
command's annotations again), paid by each of the suite's ~800 in-process labctl calls.
Here the tree is built on an app's first call and kept; everything else is the runner's
public API (``isolation``, ``Result``), with the same exit codes, output and exception
as typer's own ``invoke``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import typer
from typer.testing import CliRunner as TyperCliRunner
from typer.testing import Result

__all__ = ["CliRunner", "Result"]

#: The click command of each app invoked so far, by the app's id (apps live for the run).
_COMMANDS: dict[int, Any] = {}


def command_of(app: typer.Typer) -> Any:
    """The click command typer makes of ``app``, made once."""
    command = _COMMANDS.get(id(app))
    if command is None:
        command = _COMMANDS[id(app)] = typer.main.get_command(app)
    return command


class CliRunner(TyperCliRunner):
    """``typer.testing.CliRunner`` whose ``invoke`` reuses the app's click command."""

    def invoke(
        self,
        app: typer.Typer,
        args: str | Sequence[str] | None = None,
        input: bytes | str | None = None,
        env: Mapping[str, str | None] | None = None,
        catch_exceptions: bool = True,
        color: bool = False,
        **extra: Any,
    ) -> Result:
        command = command_of(app)
        argv = shlex.split(args) if isinstance(args, str) else list(args or ())
        prog_name = extra.pop("prog_name", None) or self.get_default_prog_name(command)
        value: Any = None
        exception: BaseException | None = None
        exc_info: Any = None
        code = 0
        with self.isolation(input=input, env=env, color=color) as streams:
            try:
                value = command.main(args=argv, prog_name=prog_name, **extra)
            except SystemExit as exit_:
                exc_info = sys.exc_info()
                status = 0 if exit_.code is None else exit_.code
                if not isinstance(status, int):  # sys.exit("message"): printed, status 1
                    sys.stdout.write(f"{status}\n")
                    status = 1
                if status != 0:
                    exception = exit_
                code = status
            except Exception as error:
                if not catch_exceptions:
                    raise
                exception, code, exc_info = error, 1, sys.exc_info()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                out, err, both = (s.getvalue() for s in streams)
        return Result(
            runner=self,
            stdout_bytes=out,
            stderr_bytes=err,
            output_bytes=both,
            return_value=value,
            exit_code=code,
            exception=exception,
            exc_info=exc_info,
        )
