"""``jointcase serve``, ``user`` and ``token``: the web app, officers' passwords and API tokens."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from app.bootstrap import init_database
from app.cli import AsOpt, JsonOpt, _deps, _emit, _errors, _settings, out
from app.cli_scheduler import _log_to_stderr
from app.settings import CONFIG_ENV_VAR
from states.errors import InvalidInput
from workflows.auth import create_token, list_tokens, revoke_token, set_password

user_app = typer.Typer(help="Officers' sign-in. 用户", no_args_is_help=True)
token_app = typer.Typer(help="API tokens for other agencies' systems. 接口令牌", no_args_is_help=True)

#: Demo sign-ins printed by ``serve``: one officer per role and agency kind.
DEMO_USERS = (
    ("sm_amr_handler", "市场监管承办人 handler (market regulation)"),
    ("sm_psb_handler", "公安承办人 handler (police)"),
    ("sm_procuratorate_handler", "检察院承办人 handler (procuratorate)"),
    ("sm_amr_secretary", "联席会议秘书 secretary"),
    ("sm_amr_supervisor", "督办人 supervisor"),
)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool | None,
        typer.Option("--demo/--no-demo", help="Load the demo cases and passwords (default: on SQLite)."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Worker processes on the one port (more than 1 needs [scheduler] mode off or prefect).",
        ),
    ] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            max=200,
            help="Threads per worker for the routes (default 40). Fewer contend less for the GIL under load, "
            "but a request waiting for a row lock or SQLite's write lock holds one.",
        ),
    ] = None,
) -> None:
    """Run the web UI and REST API with the embedded scheduler (one process), or several workers. 启动服务"""
    with _errors(False):
        import uvicorn

        from app.web import create_app
        from app.web.main import THREADS_ENV

        settings = _settings()
        if workers > 1 and settings.scheduler.mode == "embedded":
            # Every worker would run every embedded job (STACK-NOTES gotcha 6).
            raise InvalidInput(
                f"--workers {workers}: the embedded scheduler would run every job {workers} times; set [scheduler] "
                'mode = "off" or "prefect" (or JOINTCASE_SCHEDULER__MODE) and let Prefect own the schedules'
            )
        deps = _deps(settings, need_schema=False)
        init_database(settings, deps)
        use_demo = deps.engine.dialect.name == "sqlite" if demo is None else demo
        if use_demo:
            from app.demo import DEMO_PASSWORD, load_demo, set_demo_passwords

            load_demo(deps)
            set_demo_passwords(deps)
        app = create_app(settings, deps, scheduler=settings.scheduler.mode == "embedded", threads=threads)
        url = f"http://{host}:{port}/"
        out.print(f"jointcase serving at {url}  (API: {url}api/v1/docs, health: {url}healthz)", highlight=False)
        if use_demo:
            out.print(f"demo sign-ins (password {DEMO_PASSWORD}):", highlight=False)
            for username, role in DEMO_USERS:
                out.print(f"  {username:28} {role}", highlight=False)
        # The scheduler's and the use cases' log lines (sweeps, deliveries, meetings) beside uvicorn's own.
        with _log_to_stderr("workflows", "app.web"):
            target: Any = app
            if workers > 1:
                deps.engine.dispose()  # the workers are new processes, each with its own engine
                # Each worker builds its app from the same file (the environment comes along).
                os.environ[CONFIG_ENV_VAR] = str(settings.config_path)
                if threads:
                    os.environ[THREADS_ENV] = str(threads)
                target = "app.web.main:app_from_environment"
            uvicorn.run(
                target, factory=workers > 1, host=host, port=port, workers=workers, log_level="info", access_log=False
            )


@user_app.command("set-password")
def user_set_password(
    username: str,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (scripts).")
    ] = False,
) -> None:
    """Set an officer's password (asks twice; at least 8 characters)."""
    with _errors(False):
        if password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
        set_password(_deps(), username, password)
        out.print(f"password set for {username}; their sessions are signed out", highlight=False)


@token_app.command("create")
def token_create(
    actor: AsOpt,
    name: Annotated[str, typer.Option("--name", help="What the token is for, e.g. sm-psb-system.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an API token acting as an officer; the token is shown once."""
    with _errors(as_json):
        token = create_token(_deps(), actor, name=name)
        _emit(
            as_json,
            token,
            lambda: out.print(
                f"token #{token['id']} for {token['username']} ({token['name']}); keep it, it is not shown again:\n"
                f"{token['token']}",
                highlight=False,
            ),
        )


@token_app.command("list")
def token_list(
    username: Annotated[str | None, typer.Option("--user", help="Only this officer's tokens.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """API tokens (never their secret)."""
    with _errors(as_json):
        rows = list_tokens(_deps(), username)

        def human() -> None:
            table = Table(title="API tokens")
            for col in ("#", "user", "name", "prefix", "created", "last used", "revoked"):
                table.add_column(col)
            for r in rows:
                table.add_row(
                    str(r["id"]), r["username"], r["name"], r["prefix"], r["created_at"], r["last_used_at"],
                    r["revoked_at"],
                )  # fmt: skip
            out.print(table)

        _emit(as_json, rows, human)


@token_app.command("revoke")
def token_revoke(token_id: int, as_json: JsonOpt = False) -> None:
    """Revoke an API token at once."""
    with _errors(as_json):
        if token_id < 1:
            raise InvalidInput("give the token's number (see `jointcase token list`)")
        revoke_token(_deps(), token_id)
        _emit(as_json, {"revoked": token_id}, lambda: out.print(f"token #{token_id} revoked", highlight=False))
