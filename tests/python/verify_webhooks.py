# Verifies webhook deliveries with the Standard Webhooks reference library.
# argv[1]: the whsec_ secret; stdin: a JSON list of {"headers", "body"};
# stdout: a JSON list with "ok" or the error for each.
import json
import sys

from standardwebhooks.webhooks import Webhook

webhook = Webhook(sys.argv[1])
outcomes = []
for delivery in json.load(sys.stdin):
    try:
        webhook.verify(delivery["body"], delivery["headers"])
        outcomes.append("ok")
    except Exception as error:  # noqa: BLE001 - reported to the test
        outcomes.append(f"{type(error).__name__}: {error}")
print(json.dumps(outcomes))
