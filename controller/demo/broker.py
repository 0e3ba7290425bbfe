"""Finding or starting an MQTT broker for the demo and the tests (DESIGN §9).

In order of preference: a ``mosquitto`` binary on PATH, started on a free
loopback port with a throw-away config; otherwise the pure-Python ``amqtt``
broker, embedded in this process on its own thread. Both are real MQTT 3.1.1
brokers. Every broker started here is stopped by the object that started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


#: Listening ports are drawn from below the kernel's ephemeral range: a port the kernel
#: hands out (``bind`` to 0) is also what it gives the next outgoing connection, so with
#: many clients connecting (the test suite's parallel workers) one took the port between
#: this check and the server's own bind ("Address already in use").
_LISTEN_PORTS = (20000, 32767)


def _ephemeral_low() -> int:
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii")
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default start


def find_free_port() -> int:
    """A TCP port on loopback that nothing listens on right now, outside the ephemeral range
    where the system can give it away."""
    low, high = _LISTEN_PORTS[0], min(_LISTEN_PORTS[1], _ephemeral_low() - 1)
    for _ in range(50):
        port = random.randint(low, high) if high > low else 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once ``host:port`` accepts a TCP connection, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        # Readiness probe of another process: there is no event to wait on.
        time.sleep(0.02)
    return False


class Broker(Protocol):
    """A broker this process started and must stop."""

    url: str

    def start(self) -> None: ...

    def stop(self) -> None: ...


class BrokerStartError(RuntimeError):
    """A broker could not be started; the message says which and why."""


class MosquittoBroker:
    """A private ``mosquitto`` process on loopback, for the demo and the fault tests."""

    def __init__(self, port: int | None = None, extra_config: str = "") -> None:
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.port = port or find_free_port()
        self.url = f"mqtt://{LOOPBACK}:{self.port}"
        self.extra_config = extra_config
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="reachlab-mosquitto-")
        #: A port picked here may be taken by another process before mosquitto binds it;
        #: until the first start succeeds, another one is picked. After that the port is
        #: kept: a restarted broker must be where its clients look for it.
        self._may_move = port is None
        self._log_start = 0

    @staticmethod
    def available() -> bool:
        return shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        for _attempt in range(3):
            if self._start_once():
                self._may_move = False
                log.info("mosquitto (pid %s) listening on %s", self.pid, self.url)
                return
            if not (
                self._may_move and b"Address already in use" in self._log_tail(self._log_start)
            ):
                break
            self.port = find_free_port()  # lost a race for the port: take another
            self.url = f"mqtt://{LOOPBACK}:{self.port}"
        self.stop()
        said = self._log_tail(self._log_start).decode(errors="replace").strip()
        raise BrokerStartError(
            f"mosquitto did not start listening on {self.url}: "
            f"{said.splitlines()[-1] if said else 'no output'}"
        )

    @property
    def _log_path(self) -> Path:
        return Path(self._dir.name) / "mosquitto.log"

    def _log_tail(self, start: int = 0) -> bytes:
        """The log from byte ``start`` on (its last 2000 bytes)."""
        path = self._log_path
        return path.read_bytes()[start:][-2000:] if path.exists() else b""

    def _start_once(self) -> bool:
        """Start the process; True once it is running and listening on the port."""
        conf = Path(self._dir.name) / "mosquitto.conf"
        conf.write_text(
            f"listener {self.port} {LOOPBACK}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "max_queued_messages 100000\n"
            # A collector acknowledges a batch once it is stored: with mosquitto's default
            # of 20 messages in flight per client, no batch could be larger than 20.
            "max_inflight_messages 1000\n"
            f"{self.extra_config}\n",
            encoding="utf-8",
        )
        # A restart appends to the same log: only what this process writes counts.
        self._log_start = self._log_path.stat().st_size if self._log_path.exists() else 0
        log_file = open(self._log_path, "ab")  # noqa: SIM115  # owned by Popen
        # Its own session: a Ctrl-C meant for the demo must not kill the broker under it.
        self.process = subprocess.Popen(
            [self.binary, "-c", str(conf)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log_file.close()
        process = self.process
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False  # it could not start (the port taken, a bad config line)
            # "running" comes after the listeners are bound: the port answering alone
            # could be another process that holds it.
            running = b" running" in self._log_tail(self._log_start)
            if running and wait_for_port(LOOPBACK, self.port, 1.0):
                return process.poll() is None
            time.sleep(0.02)  # readiness of another process: there is no event to wait on
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()


class AmqttBroker:
    """The pure-Python ``amqtt`` broker, embedded on a background thread of this process."""

    def __init__(self, port: int | None = None, log_file: Path | None = None) -> None:
        self.port = port or find_free_port()
        self.url = f"mqtt://{LOOPBACK}:{self.port}"
        #: Where amqtt's own log goes (its warnings included); None: this process's logging.
        self.log_file = log_file
        self._log_handler: logging.Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None

    def start(self) -> None:
        if self._thread is not None:
            return
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            from amqtt.broker import Broker as AmqttServer

            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{LOOPBACK}:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
            self._broker = AmqttServer(config)
            await self._broker.start()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            # amqtt's unhandled task errors (it can trip over its own subscriptions while a
            # client connects) reach the loop's handler: log them as the broker's, where
            # its other messages go, not as asyncio's on the terminal.
            self._loop.set_exception_handler(_log_loop_error)
            try:
                self._loop.run_until_complete(serve())
            except BaseException as exc:  # reported to start() on the caller's thread
                failure.append(exc)
                started.set()
                return
            started.set()
            self._loop.run_forever()
            self._loop.close()

        # amqtt logs every packet at INFO; the demo's screen is for the lab.
        amqtt_log = logging.getLogger("amqtt")
        amqtt_log.setLevel(logging.WARNING)
        if self.log_file is not None:
            # Its warnings (a client gone, messages not broadcast at shutdown) belong in
            # the broker's log, as mosquitto's do, not on the terminal of the process
            # that embeds it.
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_handler = logging.FileHandler(self.log_file, encoding="utf-8")
            self._log_handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            amqtt_log.addHandler(self._log_handler)
            amqtt_log.propagate = False
        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        # Broker.start() returns once the listener is bound, so no port probe is needed
        # (a probe's empty connection would only make amqtt log an error).
        if not started.wait(timeout=15) or failure:
            self.stop()
            reason = failure[0] if failure else "not listening"
            raise BrokerStartError(f"amqtt broker did not start on {self.url}: {reason}")
        log.info("amqtt broker listening on %s", self.url)

    def stop(self) -> None:
        loop, thread, broker = self._loop, self._thread, self._broker
        self._thread = None
        if loop is None or thread is None:
            return
        if broker is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(broker.shutdown(), loop)
            with contextlib.suppress(Exception):
                future.result(timeout=10)
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if self._log_handler is not None:
            amqtt_log = logging.getLogger("amqtt")
            amqtt_log.removeHandler(self._log_handler)
            amqtt_log.propagate = True
            self._log_handler.close()
            self._log_handler = None

    def close(self) -> None:
        self.stop()


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    logging.getLogger("amqtt").error(
        "%s", context.get("message", "error in the broker's event loop"),
        exc_info=exc if isinstance(exc, BaseException) else None,
    )  # fmt: skip


def start_local_broker(port: int | None = None) -> MosquittoBroker | AmqttBroker:
    """Start mosquitto when it is installed, else the embedded amqtt broker."""
    broker: MosquittoBroker | AmqttBroker
    broker = MosquittoBroker(port) if MosquittoBroker.available() else AmqttBroker(port)
    broker.start()
    return broker
