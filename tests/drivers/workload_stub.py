"""A stand-in workload for the process driver tests: prints what it was given, then waits.

    workload_stub.py [--exit-code N] [--ignore-term] [--child] [--tag TEXT] [--show-env A ...]

It prints `tag=<TEXT>`, `cuda=<CUDA_VISIBLE_DEVICES>`, `order=<CUDA_DEVICE_ORDER>` and, once
its signal handling is in place, `ready` (tests wait for that line, never for a duration).
`--show-env A B` prints `env:A=<value>` (`<unset>` when absent). `--exit-code N` exits with N
right after `ready`; `--ignore-term` ignores SIGTERM (only SIGKILL ends it); `--child` forks
a `sleep` child into the same process group, which a group stop must end too (its pid is
printed as `child=<pid>`).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exit-code", type=int)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--child", action="store_true")
    parser.add_argument("--tag", default="")
    parser.add_argument("--show-env", nargs="*", default=[])
    args = parser.parse_args()
    print(f"tag={args.tag}")
    print(f"cuda={os.environ.get('CUDA_VISIBLE_DEVICES', '')}")
    print(f"order={os.environ.get('CUDA_DEVICE_ORDER', '')}")
    for name in args.show_env:
        print(f"env:{name}={os.environ.get(name, '<unset>')}")
    if args.child:
        child = subprocess.Popen(["sleep", "300"])
        print(f"child={child.pid}")
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    if args.exit_code is not None:
        sys.exit(args.exit_code)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
