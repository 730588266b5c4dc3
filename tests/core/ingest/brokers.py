"""Test helpers: a private Mosquitto with persistence, and a QoS 1 publisher that
remembers which messages the broker acknowledged (PUBACK).

Imported by the MQTT ingestion tests and by the crash test.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import orjson

MOSQUITTO = os.environ.get("CITYOS_TEST_MOSQUITTO", "/usr/sbin/mosquitto")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    """Block until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def wait_until(condition, timeout_s: float = 30.0, what: str = "condition") -> None:
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` if never."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s} s")
        time.sleep(0.05)


class PrivateBroker:
    """A Mosquitto of the test's own, on a free port, keeping sessions on disk.

    ``persistence true`` and ``max_queued_messages 0`` (no cap) are what a city's
    broker needs so that nothing acknowledged to a device is lost while the ingester
    or the broker restarts.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = self.directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # started as root, mosquitto would drop to its own user, which cannot write
            # the persistence file under a private temporary directory: stay as we are
            f"user {pwd.getpwuid(os.geteuid()).pw_name}\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {self.directory}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            f"log_dest file {self.directory}/mosquitto.log\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateBroker:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the broker (SIGTERM: it saves its sessions first) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=15)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text() if path.exists() else ""


class AckedPublisher:
    """A device: publishes QoS 1 and records which messages got a PUBACK.

    Parameters
    ----------
    url : str
        ``mqtt://host:port``.
    """

    def __init__(self, url: str, client_id: str):
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        host, port = url.removeprefix("mqtt://").split(":")
        self._lock = threading.Lock()
        self._pending: dict[int, object] = {}
        self._early: dict[int, bool] = {}  # mid -> acked, PUBACKs before publish() returned
        self.acked: list = []
        self.connected = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 1)
        self.client.on_publish = self._on_publish
        self.client.on_connect = lambda *args: self.connected.set()
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.connect_async(host, int(port), keepalive=10)
        self.client.loop_start()
        if not self.connected.wait(10):
            raise TimeoutError(f"publisher could not connect to {url}")

    def publish(self, topic: str, payload, key=None) -> None:
        """Publish ``payload`` (a dict is sent as JSON); ``key`` is what ``acked``
        records once the broker has acknowledged it."""
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        key = key if key is not None else topic
        # never hold self._lock while paho runs: paho calls _on_publish holding its own
        # message lock, which publish() takes too (lock-order deadlock)
        info = self.client.publish(topic, data, qos=1)
        with self._lock:
            if info.mid in self._early:  # the PUBACK came back before publish() returned
                if self._early.pop(info.mid):
                    self.acked.append(key)
            else:
                self._pending[info.mid] = key
        return info

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid not in self._pending:
                self._early[mid] = not reason_code.is_failure
                return
            key = self._pending.pop(mid)
            if not reason_code.is_failure:
                self.acked.append(key)

    def acked_count(self) -> int:
        with self._lock:
            return len(self.acked)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
