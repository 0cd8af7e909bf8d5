"""Pairing one new device, in a child process of the neonize transport.

neonize never ends the connect of a device that was not paired: when WhatsApp's codes run out its
Go side waits for a session id that never comes (goneonize FetchMe), holding two threads and a
database pool. So pairing runs here, in a process the transport kills when the last code expires
(or the pairing is stopped); once paired, the transport resumes the stored session in its own
process. The child talks JSON lines:

    child -> parent (stdout): {"qr": code} | {"code": pair code} | {"paired": jid, "phone": number}
                              | {"error": text}
    parent -> child (stdin):  {"pair_phone": number}

    python -m sender.transport.neonize_pairing <store address> <registry key>
"""
from __future__ import annotations

import json
import os
import sys
import threading

os.environ.setdefault("NEONIZE_BOT_TAG", "off")   # before neonize is imported, or 1:1 messages carry a bot tag

from neonize.client import NewClient  # noqa: E402
from neonize.events import ConnectedEv, PairStatusEv  # noqa: E402
from neonize.exc import NeonizeError  # noqa: E402
from neonize.proto.waCompanionReg.WAWebProtobufsCompanionReg_pb2 import DeviceProps  # noqa: E402
from neonize.utils.enum import ClientName, ClientType  # noqa: E402

from sender.transport.neonize_events import jid_to_string  # noqa: E402
from sender.transport.neonize_stdio import divert_native_stdout  # noqa: E402


# How the link presents itself. WhatsApp answers 400 to a pair-by-code name that is not a common
# "Browser (OS)" pair or disagrees with the device properties (whatsmeow's PairPhone notes, issues
# 449/450); neonize's defaults are an OS called "Neonize" on Safari, announced as "Firefox (Linux)".
# One identity for both: Chrome on Linux, announced as "Chrome (Linux)".
BROWSER, OPERATING_SYSTEM = ClientType.CHROME, ClientName.LINUX
BROWSER_PROPS = DeviceProps(os=OPERATING_SYSTEM.name, platformType=DeviceProps.CHROME)


class _Pairing:
    def __init__(self, client: NewClient):
        self.client = client
        self.jid = None
        self._out = threading.Lock()

    def say(self, **message):
        with self._out:
            sys.stdout.write(json.dumps(message) + "\n")
            sys.stdout.flush()

    def on_qr(self, _client, data: bytes):
        self.say(qr=data.decode("utf-8", "replace"))

    def on_pair_status(self, _client, ev):
        if ev.Status == PairStatusEv.SUCCESS:
            self.jid = (jid_to_string(ev.ID), ev.ID.User)
        else:
            self.say(error=f"pairing failed: {ev.Error or 'unknown error'}")

    def on_connected(self, _client, _ev):
        if self.jid:      # logged in with the new session: it is stored, the parent resumes it
            self.say(paired=self.jid[0], phone=self.jid[1])
            os._exit(0)   # connect() would block for the whole session

    def read_commands(self):
        """Commands from the parent; its end of stdin closing means it is gone."""
        for line in sys.stdin:
            phone = json.loads(line).get("pair_phone")
            if phone:
                try:
                    self.say(code=self.client.PairPhone(phone, True, client_name=OPERATING_SYSTEM,
                                                        client_type=BROWSER))
                except NeonizeError as exc:
                    self.say(error=f"pairing by code failed: {exc}")
        os._exit(1)


def main(argv=None):
    store, key = (argv or sys.argv[1:])[:2]
    divert_native_stdout()
    client = NewClient(store, uuid=key, new_device=True, props=BROWSER_PROPS)
    pairing = _Pairing(client)
    client.event.qr(pairing.on_qr)
    client.event(PairStatusEv)(pairing.on_pair_status)
    client.event(ConnectedEv)(pairing.on_connected)
    threading.Thread(target=pairing.read_commands, name="parent", daemon=True).start()
    try:
        client.connect()
        pairing.say(error="connection closed before pairing")
    except NeonizeError as exc:
        pairing.say(error=str(exc) or exc.__class__.__name__)
    os._exit(0)


if __name__ == "__main__":
    main()
