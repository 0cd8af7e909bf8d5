"""A pairing child for the contract suite: the transport's neonize_pairing program, with the
FakeWhatsApp's core in place of neonize's Go core (tests/fake_whatsmeow.py).

    python -m tests.fake_whatsmeow_child <socket> <store address> <registry key>
"""
import sys

import neonize.client

from tests.fake_whatsmeow import ChildCore


def main():
    address, *args = sys.argv[1:]
    neonize.client.gocode = ChildCore(address)
    from sender.transport import neonize_pairing
    neonize_pairing.main(args)


if __name__ == "__main__":
    main()
