"""Transports: how a sender talks to WhatsApp. `sim` (a simulated network) or `neonize` (real)."""
from common.config import ConfigError, transport_name


def make_transport(on_event, name=None):
    """The transport named by WA_TRANSPORT (default sim), reporting its events to on_event."""
    name = name or transport_name()
    if name == "sim":
        from sender.transport.sim import SimTransport
        return SimTransport(on_event)
    if name == "neonize":
        from sender.transport.neonize_transport import NeonizeTransport
        return NeonizeTransport(on_event)
    raise ConfigError(f"unknown WA_TRANSPORT {name!r}: use sim or neonize")
