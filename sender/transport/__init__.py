"""Transports: how a sender talks to WhatsApp. `sim` (a simulated network) or `neonize` (real)."""
