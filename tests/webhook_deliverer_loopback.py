"""The webhook deliverer as tests run it: its address policy allows 127.0.0.1 only, for a local
receiver. The one way to loosen the policy is to launch this file (no setting can), so
production cannot enable it by accident.

    python -m tests.webhook_deliverer_loopback
"""
from webhooks import deliverer

deliverer.ADDRESS_POLICY = "127.0.0.1".__eq__
deliverer.main()
