"""A TCP relay a test can break: the wire between two buildings' brokers.

:class:`Relay` listens on a port of its own and forwards every connection to
``target``, on threads of the test's process. Two ways of breaking it, the two
ways a link between buildings fails:

* :meth:`Relay.stall` then :meth:`Relay.resume`: nothing passes, but the
  connections stay open (a congested or flapping link). Bytes already sent wait
  in TCP's buffers and arrive late, in order; a stall longer than the peers'
  keepalive makes them hang up by themselves.
* :meth:`Relay.cut` then :meth:`Relay.mend`: every connection is closed and new
  ones are refused (the link is down); the peers must reconnect once it is mended.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from controller.demo.broker import LOOPBACK, find_free_port


class Relay:
    """Forwards ``LOOPBACK:port`` to ``target``; stopped by :meth:`close`."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self.connections = 0  # accepted so far: a peer that reconnected shows here
        # Not port 0: that is from the ephemeral range, and while the relay is cut for two
        # minutes another worker's outgoing connection can be given the port (mend then
        # failed with "Address already in use" in a full suite run).
        self.port = self._listen(find_free_port())

    def _listen(self, port: int) -> int:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((LOOPBACK, port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return int(listener.getsockname()[1])

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut() or close()
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()  # stalled: stop reading, so TCP holds the rest back
                dst.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(src, dst)

    def _drop(self, *sockets: socket.socket) -> None:
        with self._lock:
            for sock in sockets:
                self._sockets.discard(sock)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Close every connection and refuse new ones until :meth:`mend`."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone would leave the accept() blocked on it listening (Linux keeps a
            # socket alive while a call holds it); shutdown() wakes that call first.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            sockets = list(self._sockets)
        self._drop(*sockets)

    def mend(self) -> None:
        if self._listener is None and not self._closed:
            self._listen(self.port)

    def close(self) -> None:
        self._closed = True
        self.resume()
        self.cut()
