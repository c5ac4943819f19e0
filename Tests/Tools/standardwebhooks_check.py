#!/usr/bin/env python3
"""The Standard Webhooks reference library (PyPI `standardwebhooks`) as a command, for the tests
that hold our signing and verifying against it (Tests/DeliveryTests/WebhookVerifierReferenceTests,
Tests/EndToEndTests/ReceiveTestEndToEndTests). `make test` installs the library into .build/pyenv
and passes that interpreter as STANDARDWEBHOOKS_PYTHON.

  standardwebhooks_check.py version
  standardwebhooks_check.py verify --id ID --timestamp SECONDS --signature SIG --body-file PATH
  standardwebhooks_check.py sign   --id ID --timestamp SECONDS --body-file PATH

The secret (whsec_...) comes from the environment variable STANDARDWEBHOOKS_SECRET, never from an
argument (`ps` shows arguments). The body is read from a file, byte for byte.

Exit status: 0 verified (verify) or signed (sign, the header value on stdout); 1 the library
refused the message (its reason on stderr); 2 a usage error; 3 the library cannot be imported.
"""

import argparse
import os
import sys
from datetime import datetime, timezone

try:
    import standardwebhooks
    from standardwebhooks import Webhook, WebhookVerificationError
except ImportError as error:  # the tests must fail, not skip, when make test set this up
    print(f"standardwebhooks is not installed for {sys.executable}: {error}", file=sys.stderr)
    sys.exit(3)


def main() -> int:
    parser = argparse.ArgumentParser(description="Sign or verify with the Standard Webhooks reference library.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version")
    for name in ("verify", "sign"):
        command = commands.add_parser(name)
        command.add_argument("--id", required=True)
        command.add_argument("--timestamp", required=True, type=int)
        command.add_argument("--body-file", required=True)
        if name == "verify":
            command.add_argument("--signature", required=True)
    arguments = parser.parse_args()

    if arguments.command == "version":
        print(standardwebhooks.__version__)
        return 0
    secret = os.environ.get("STANDARDWEBHOOKS_SECRET")
    if not secret:
        print("STANDARDWEBHOOKS_SECRET is not set", file=sys.stderr)
        return 2
    with open(arguments.body_file, "rb") as file:
        body = file.read()
    webhook = Webhook(secret)

    if arguments.command == "sign":
        moment = datetime.fromtimestamp(arguments.timestamp, tz=timezone.utc)
        print(webhook.sign(msg_id=arguments.id, timestamp=moment, data=body.decode("utf-8")))
        return 0

    headers = {
        "webhook-id": arguments.id,
        "webhook-timestamp": str(arguments.timestamp),
        "webhook-signature": arguments.signature,
    }
    try:
        webhook.verify(body, headers, json_parse=False)
    except WebhookVerificationError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main())
