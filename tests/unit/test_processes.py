"""deploy.processes: loopback ports for the servers the smoke test, benchmarks and tests start; CPU accounting."""

from __future__ import annotations

import os
import socket
import time

from deploy.processes import cpu_seconds, free_port, free_ports


def test_free_ports_are_distinct_and_can_all_be_bound_at_once() -> None:
    # Picked one at a time, 500 ports repeat in practically every try (the kernel hands out a port released a
    # moment ago again); the smoke test once gave the Prefect server the port of a web worker that way.
    ports = free_ports(500)
    assert len(set(ports)) == 500
    socks = []
    try:
        for port in ports:
            sock = socket.socket()
            socks.append(sock)
            sock.bind(("127.0.0.1", port))
    finally:
        for sock in socks:
            sock.close()


def test_free_port_is_one_bindable_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", free_port()))


def test_cpu_seconds_counts_this_process_and_nothing_for_a_gone_one() -> None:
    before = cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:  # burn CPU that /proc must account to this process
        pass
    assert cpu_seconds(os.getpid()) >= before + 0.15
    assert cpu_seconds(2**22 + 1) == 0.0  # above pid_max's ceiling: no such process
