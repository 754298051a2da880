"""Test helpers: build ORU^R01 messages and talk MLLP over a real socket."""

from __future__ import annotations

import socket
import time

from medverse.icu.mllp import MllpFramer, frame

# LOINC code and unit per parameter, as an interface engine would send them.
OBX = {
    "respiration_rate": ("9279-1", "Respiratory rate", "/min"),
    "spo2": ("59408-5", "SpO2", "%"),
    "systolic_bp": ("8480-6", "Systolic BP", "mm[Hg]"),
    "pulse": ("8867-4", "Heart rate", "/min"),
    "temperature": ("8310-5", "Body temperature", "Cel"),
    "supplemental_oxygen": ("3151-8", "O2 flow", "L/min"),
    "consciousness": ("80288-4", "ACVPU", ""),
}
NORMAL = {"respiration_rate": 16, "spo2": 97, "systolic_bp": 120, "pulse": 70,
          "temperature": 37.0, "supplemental_oxygen": 0, "consciousness": "A"}  # fmt: skip


def oru(control_id: str, bed: str = "BED01", ward: str = "ICU1",
        values: dict[str, object] | None = None, when: str = "20261203120000") -> str:  # fmt: skip
    """An ORU^R01 carrying ``values`` (default: a normal set) for ``ward/bed``."""
    segments = [
        f"MSH|^~\\&|MONITOR|ICU|MEDVERSE|HOSP|{when}||ORU^R01^ORU_R01|{control_id}|P|2.6",
        "PID|1||PAT001^^^HOSP^MR||DOE^JANE",
        f"PV1|1|I|{ward}^^{bed}",
        f"OBR|1|||VITALS|||{when}",
    ]
    for index, (name, value) in enumerate((NORMAL if values is None else values).items(), 1):
        code, text, unit = OBX[name]
        kind = "ST" if name == "consciousness" else "NM"
        segments.append(f"OBX|{index}|{kind}|{code}^{text}^LN||{value}|{unit}|||||F|||{when}")
    return "\r".join(segments) + "\r"


class MllpClient:
    """A blocking MLLP client with a timeout, reading ACKs even when they arrive in pieces."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.framer = MllpFramer()
        self.pending: list[bytes] = []

    def send_raw(self, data: bytes) -> None:
        """Send bytes as they are (frames, parts of frames)."""
        self.sock.sendall(data)

    def send(self, message: str) -> None:
        """Send one framed message."""
        self.send_raw(frame(message))

    def read_ack(self) -> str:
        """The next ACK/NAK message."""
        while not self.pending:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the listener closed the connection")
            self.pending.extend(self.framer.feed(data))
        return self.pending.pop(0).decode()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


def msa(ack: str) -> list[str]:
    """The MSA fields of an ACK: [code, control ID, text]."""
    segment = next(s for s in ack.split("\r") if s.startswith("MSA"))
    fields = ([*segment.split("|")[1:], "", "", ""])[:3]
    escapes = {"\\F\\": "|", "\\S\\": "^", "\\T\\": "&", "\\R\\": "~", "\\E\\": "\\"}
    for escaped, plain in escapes.items():
        fields[2] = fields[2].replace(escaped, plain)
    return fields


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    """Wait until something listens on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")
