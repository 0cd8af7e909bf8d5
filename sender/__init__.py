"""Sender processes: device leases, the claim -> send -> complete loop, transports."""
