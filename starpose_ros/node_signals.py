"""How the node's process ends on SIGINT and SIGTERM: Python's handlers, woken inside rclpy's wait."""
from __future__ import annotations

import os
import signal
import threading

from rclpy.node import Node


def interrupt(signum, frame):
    """SIGINT and SIGTERM alike: leave whatever runs (also a long configure) and shut down."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second signal ends the process at once
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise KeyboardInterrupt


def wake_executor_on_signals(node: Node) -> None:
    """Let a signal wake the executor's wait, so Python's handler runs at once (no polling while idle).

    CPython's C-level handler writes the signal number to the wakeup fd even while the main thread
    is blocked inside rclpy's wait; a relay thread turns that into a guard-condition trigger.
    """
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)
    wake = node.create_guard_condition(lambda: None)

    def relay() -> None:
        while os.read(read_fd, 1):
            wake.trigger()
    threading.Thread(target=relay, name='starpose-signal-relay', daemon=True).start()
