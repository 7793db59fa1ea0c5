"""Run the whole stack in the foreground: the five processes (and the development SMTP sink),
their output prefixed and merged.

Ctrl-C or SIGTERM stops every process it started (SIGTERM, then SIGKILL after a grace period),
and so does any one of them exiting: a half-running stack is worse than a stopped one.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

# (name, command); the SMTP sink stands in for a mail server in the development profile.
PROCESSES = (
    ("smtp-sink", ("infra/smtp_sink.py",)),
    ("auth_svc", ("-m", "auth_svc")),
    ("project_svc", ("-m", "project_svc")),
    ("analytics_svc", ("-m", "analytics_svc")),
    ("logging_svc", ("-m", "logging_svc")),
    ("gateway", ("-m", "gateway")),
)
COLOURS = ("37", "36", "35", "34", "33", "32")
GRACE_S = 15.0


async def pump(name: str, colour: str, stream: asyncio.StreamReader) -> None:
    prefix = f"\x1b[{colour}m{name:<13}|\x1b[0m " if sys.stdout.isatty() else f"{name:<13}| "
    while line := await stream.readline():
        sys.stdout.write(prefix + line.decode(errors="replace"))
        sys.stdout.flush()


async def main() -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    children: dict[str, asyncio.subprocess.Process] = {}
    pumps = []
    for (name, command), colour in zip(PROCESSES, COLOURS, strict=True):
        child = await asyncio.create_subprocess_exec(
            sys.executable, *command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env=os.environ.copy(), start_new_session=True,  # Ctrl-C reaches us, not them
        )
        children[name] = child
        assert child.stdout is not None
        pumps.append(asyncio.create_task(pump(name, colour, child.stdout)))

    exits = {asyncio.create_task(child.wait()): name for name, child in children.items()}
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({stopper, *exits}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    for task in done:
        if task in exits:
            print(f"stack: {exits[task]} exited with {task.result()}; stopping the others",
                  flush=True)
            status = 1

    for child in children.values():
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*(c.wait() for c in children.values())), GRACE_S)
    except TimeoutError:
        for name, child in children.items():
            if child.returncode is None:
                print(f"stack: {name} did not stop in {GRACE_S:.0f} s; killing it", flush=True)
                child.kill()
        await asyncio.gather(*(c.wait() for c in children.values()))
    await asyncio.gather(*pumps, return_exceptions=True)
    print("stack: all processes stopped", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
