"""An SMTP server for the local cluster's mail check (aiosmtpd, from PyPI).

Every message it takes is written to DIR/NNNN.eml (whole, as received).
While the file DIR/hold exists, a message is written and its 250 answer
withheld until the file is removed: the test kills the notifications
process in that moment, between the server taking a mail and the service
recording that it was sent.

    python3 infra/local/mail-sink.py --listen 127.0.0.1:2525 --dir DIR

infra/local/mail-sink.sh installs aiosmtpd into a virtual environment
and starts this in the background.
"""

import argparse
import asyncio
import itertools
import os
import pathlib
import signal
import threading

from aiosmtpd.controller import Controller


class Keep:
    """Writes each message to the directory; holds the answer while told."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        number = next(self.numbers)
        path = self.directory / f"{number:04}.eml"
        partial = path.with_suffix(".part")
        partial.write_bytes(envelope.original_content or envelope.content)
        os.replace(partial, path)
        while (self.directory / "hold").exists():
            await asyncio.sleep(0.05)
        return "250 2.0.0 Message accepted"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--dir", required=True, type=pathlib.Path)
    arguments = parser.parse_args()
    host, port = arguments.listen.rsplit(":", 1)
    arguments.dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(Keep(arguments.dir), hostname=host, port=int(port))
    controller.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
