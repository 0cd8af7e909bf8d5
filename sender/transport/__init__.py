"""Transports: how a sender talks to WhatsApp. `sim` (a simulated network) or `neonize` (real)."""
from common.config import ConfigError, transport_name

# Devices one sender process runs, from scripts/bench_devices.py: a simulated device costs a few kB;
# a neonize client two threads (three while it connects), a database pool in its store and about
# 1 MB, and the process's Go core stays safe with its starts and stops serialised. The pool sizes
# its processes from this figure, and a neonize process's connection budget is derived from it.
DEVICES_PER_PROCESS = {"sim": 5000, "neonize": 1000}


def devices_per_process(name=None) -> int:
    name = name or transport_name()
    if name not in DEVICES_PER_PROCESS:
        raise ConfigError(f"unknown WA_TRANSPORT {name!r}: use sim or neonize")
    return DEVICES_PER_PROCESS[name]


def make_transport(on_event, name=None, capacity=None):
    """The transport named by WA_TRANSPORT (default sim), reporting its events to on_event, for a
    process running at most `capacity` devices."""
    name = name or transport_name()
    if name == "sim":
        from sender.transport.sim import SimTransport
        return SimTransport(on_event)
    if name == "neonize":
        from sender.transport.neonize_transport import NeonizeTransport
        return NeonizeTransport(on_event, capacity=capacity or devices_per_process(name))
    raise ConfigError(f"unknown WA_TRANSPORT {name!r}: use sim or neonize")
