"""A stand-in `systemctl` for the systemd driver tests (systemd is not PID 1 here).

State lives in `$STUB_SYSTEMCTL_DIR/state.json` (units by name) and every call is appended to
`calls.jsonl` as its argv. Units named `missing@...` do not exist. A unit whose state has
`"hang_stop": true` makes `systemctl stop` hang (the driver must give up and SIGKILL it).

    start [--no-block] U   -> active/running, MainPID 4242
    stop [--no-block] U    -> inactive/dead, exited with the unit's `stop_status` (0)
    kill --signal=SIGKILL U -> failed, killed by signal 9
    show -p A,B U          -> `A=...` lines
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DIR = Path(os.environ["STUB_SYSTEMCTL_DIR"])
STATE = DIR / "state.json"

DEFAULT = {
    "LoadState": "loaded",
    "ActiveState": "inactive",
    "SubState": "dead",
    "MainPID": "0",
    "ExecMainCode": "0",
    "ExecMainStatus": "0",
}


def main() -> int:
    argv = sys.argv[1:]
    with (DIR / "calls.jsonl").open("a") as calls:
        calls.write(json.dumps(argv) + "\n")
    words = [arg for arg in argv if arg not in {"--user", "--no-block"}]
    verb, unit = words[0], words[-1]
    state = json.loads(STATE.read_text()) if STATE.exists() else {}
    unit_state = {**DEFAULT, **state.get(unit, {})}
    if unit.startswith("missing@"):
        if verb == "show":
            print("LoadState=not-found\nActiveState=inactive\nSubState=dead")
            return 0
        print(f"Failed to {verb} {unit}: Unit {unit} not found.", file=sys.stderr)
        return 5
    if verb == "start":
        unit_state.update(ActiveState="active", SubState="running", MainPID="4242")
        unit_state.update(ExecMainCode="0", ExecMainStatus="0")
    elif verb == "stop":
        if unit_state.get("hang_stop") and "--no-block" not in argv:
            time.sleep(30)
        if unit_state["ActiveState"] != "failed":
            status = str(unit_state.get("stop_status", 0))
            unit_state.update(ActiveState="inactive", SubState="dead", MainPID="0")
            unit_state.update(ExecMainCode="1", ExecMainStatus=status)
    elif verb == "kill":
        unit_state.update(ActiveState="failed", SubState="failed", MainPID="0")
        unit_state.update(ExecMainCode="2", ExecMainStatus="9", hang_stop=False)
    elif verb == "show":
        wanted = words[words.index("-p") + 1].split(",")
        for key in wanted:
            print(f"{key}={unit_state.get(key, '')}")
        return 0
    state[unit] = unit_state
    STATE.write_text(json.dumps(state))
    return 0


if __name__ == "__main__":
    sys.exit(main())
