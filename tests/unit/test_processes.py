"""Loopback ports for the servers the smoke test, the benchmarks and the integration tests start."""

from __future__ import annotations

import socket

from deploy.processes import free_port, free_ports


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
