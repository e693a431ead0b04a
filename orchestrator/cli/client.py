"""What the operators' commands share: their exit codes, and talking to serve's HTTP API.

The token comes from `--token-file` or `$ORCHESTRATOR_TOKEN`, never from the command line
(ps shows argv to every user). A refusal is printed with its reason, its `problems` and
what to do about a 401 or a 403, and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


TOKEN_ENV = "ORCHESTRATOR_TOKEN"  # noqa: S105  (the variable's name, not a token)


def token_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--token-file",
        type=Path,
        default=None,
        help=f"a file holding the API token (else ${TOKEN_ENV}; needed when serve has tokens)",
    )


def api_token(args: argparse.Namespace) -> str | None:
    """The bearer token for `serve`'s API: `--token-file`, else $ORCHESTRATOR_TOKEN, else none.

    Never a command-line value: a token in argv is readable by every user through ps."""
    if args.token_file is not None:
        return args.token_file.read_text(encoding="utf-8").strip() or None
    return os.environ.get(TOKEN_ENV, "").strip() or None


def send_json(
    method: str, url: str, body: Any = None, *, token: str | None = None
) -> tuple[int, Any]:
    """One request, with `body` as JSON when given; (status, JSON answer), or raise OSError
    when nothing answered. An error status is an answer, not an exception."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  (operator URL)
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.load(error)
        except ValueError:
            return error.code, {"error": error.reason}


def read_api(url: str, args: argparse.Namespace) -> Any:
    """The JSON body of a 200 answer, or None after saying on stderr why there is none."""
    return call_api("GET", url, args)


def call_api(
    method: str, url: str, args: argparse.Namespace, body: Any = None, *, expect: int = 200
) -> Any:
    """The JSON answer when serve answers `expect`; else None, after saying on stderr why:
    the error, each of its `problems`, and what to do about a 401 or a 403."""
    try:
        token = api_token(args)
    except (OSError, UnicodeDecodeError) as error:
        print(f"cannot read the token file {args.token_file}: {error}", file=sys.stderr)
        return None
    try:
        status, answer = send_json(method, url, body, token=token)
    except (OSError, ValueError) as error:
        print(f"cannot read {url}: {error}", file=sys.stderr)
        return None
    if status == expect:
        return answer
    said = answer.get("error") if isinstance(answer, dict) else None
    detail = answer.get("detail", "") if isinstance(answer, dict) else ""
    suffix = f": {detail}" if detail else ""
    print(f"error: HTTP {status}: {said or answer}{suffix}", file=sys.stderr)
    problems = answer.get("problems") if isinstance(answer, dict) else None
    for problem in problems or []:
        print(f"  {problem.get('field')}: {problem.get('problem')}", file=sys.stderr)
    if status == 401:
        print(
            f"this serve requires a token: put one in ${TOKEN_ENV} or pass --token-file "
            "(`orchestrator token new` makes one)",
            file=sys.stderr,
        )
    elif status == 403 and method != "GET":
        print("changes need a token with the operator role", file=sys.stderr)
    return None
