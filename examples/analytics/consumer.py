#!/usr/bin/env python3
"""An example analytics consumer: taps every storefront topic and prints each
record as one JSON line, decoded from the Avro schemas in schemas/avro/.

Install and run (any Kafka the storefront writes to; `scripts/up` starts one on
127.0.0.1:9092):

    pip install confluent-kafka fastavro
    python3 examples/analytics/consumer.py --group analytics.my-team
    python3 examples/analytics/consumer.py --topic-prefix t1234abcd. --idle-timeout 5

Every payload is Avro single-object encoded: `C3 01`, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the
binary datum. The fingerprint picks the writer schema among the current and
earlier (schemas/avro/previous/) versions, with no registry; the datum is read
into the current version, so old records come out in today's shape.
Dead letters are not Avro of their own: the refused record as it was, with
`dlq-*` headers saying why and where from; they are printed with the payload
in base64. A record that does not decode is printed with an `error` field.

It joins its own consumer group (never use a service's group: it would take
partitions from the service) and commits what it has printed, so a second run
with the same group goes on where the first stopped.
"""

import argparse
import base64
import io
import json
import os
import sys
import time
from pathlib import Path

import fastavro
from confluent_kafka import Consumer, KafkaError

TOPICS = [
    "page.requested", "user.resolved", "history.fetched", "ads.selected",
    "page.completed", "callback.reported",
    "customers", "credentials", "catalog", "orders", "sessions",
    "dead-letters", "analytics.pages-per-minute",
]
DEAD_LETTERS = "dead-letters"
MAGIC = b"\xc3\x01"
HEADER_LEN = 10
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "avro"


def load_schemas(directory):
    """Maps each single-object header (`C3 01` + fingerprint) to
    (schema file, writer schema, reader schema: the current version)."""
    current, writers = {}, {}
    for path in sorted(directory.glob("*.avsc")) + sorted(directory.glob("previous/*.avsc")):
        raw = json.loads(path.read_text())
        canonical = fastavro.schema.to_parsing_canonical_form(raw)
        fingerprint = bytes.fromhex(fastavro.schema.fingerprint(canonical, "CRC-64-AVRO"))
        parsed = fastavro.parse_schema(raw)
        if path.parent == directory:
            current[parsed["name"]] = parsed
        writers[MAGIC + fingerprint] = (path.relative_to(directory).as_posix(), parsed)
    return {
        header: (file, writer, current.get(writer["name"], writer))
        for header, (file, writer) in writers.items()
    }


def decode(payload, schemas):
    """The datum of a single-object encoded record, and its schema file."""
    if payload is None or payload[:2] != MAGIC or len(payload) < HEADER_LEN:
        raise ValueError("not Avro single-object encoded (no C3 01 marker)")
    known = schemas.get(payload[:HEADER_LEN])
    if known is None:
        raise ValueError(f"unknown schema fingerprint {payload[2:HEADER_LEN].hex()}")
    file, writer, reader = known
    datum = io.BytesIO(payload[HEADER_LEN:])
    value = fastavro.schemaless_reader(datum, writer, None if reader is writer else reader)
    left = len(payload) - HEADER_LEN - datum.tell()
    if left:
        raise ValueError(f"{left} bytes left over after the datum")
    return value, file


def text(raw):
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


def describe(msg, prefix, schemas):
    """One record as a JSON-ready dict."""
    kind, timestamp = msg.timestamp()
    headers = {key: text(value) for key, value in msg.headers() or []}
    out = {
        "topic": msg.topic(),
        "partition": msg.partition(),
        "offset": msg.offset(),
        "timestamp_ms": None if kind == 0 else timestamp,  # 0: TIMESTAMP_NOT_AVAILABLE
        "key": text(msg.key()),
        "headers": headers,
        "event_type": headers.get("event-type"),
    }
    payload = msg.value()
    if msg.topic() == prefix + DEAD_LETTERS:
        # The refused record unchanged: it may not even be Avro.
        out["dead_letter"] = {k: v for k, v in headers.items() if k.startswith("dlq-")}
        out["value_base64"] = base64.b64encode(payload or b"").decode()
        return out
    try:
        out["value"], out["schema"] = decode(payload, schemas)
    except Exception as error:  # noqa: BLE001 - report it and go on
        out["error"] = f"{type(error).__name__}: {error}"
        out["value_base64"] = base64.b64encode(payload or b"").decode()
    return out


def as_json(value):
    """bytes fields (the sealed password) as base64."""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap-servers",
                        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--topic-prefix", default=os.environ.get("STOREFRONT_TOPIC_PREFIX", ""))
    parser.add_argument("--group", help="consumer group: your own, never a service's "
                        "(default: <prefix>analytics.python-tap)")
    parser.add_argument("--client-id", help="the client id every tap shares, so that one broker "
                        "quota bounds them all (default: <prefix>analytics)")
    parser.add_argument("--schemas", type=Path, default=SCHEMAS, help="the schemas/avro directory")
    parser.add_argument("--max-records", type=int, help="stop after this many records")
    parser.add_argument("--idle-timeout", type=float,
                        help="stop after this many seconds without a record")
    args = parser.parse_args()

    schemas = load_schemas(args.schemas)
    consumer = Consumer({
        "bootstrap.servers": args.bootstrap_servers,
        "group.id": args.group or args.topic_prefix + "analytics.python-tap",
        "client.id": args.client_id or args.topic_prefix + "analytics",
        "auto.offset.reset": "earliest",
        # page.completed is written in transactions: read only what was
        # committed (librdkafka's default, said here for readers who copy).
        "isolation.level": "read_committed",
        # At-least-once: an offset is stored once its record is printed, and
        # the stored offsets are committed every 5 s and at close.
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
    })
    last_activity = time.monotonic()

    def on_assign(_consumer, _partitions):
        nonlocal last_activity
        last_activity = time.monotonic()

    consumer.subscribe([args.topic_prefix + t for t in TOPICS], on_assign=on_assign)
    printed = 0
    try:
        while args.max_records is None or printed < args.max_records:
            msg = consumer.poll(0.5)
            if msg is None:
                if args.idle_timeout is not None and time.monotonic() - last_activity >= args.idle_timeout:
                    break
                continue
            if msg.error():
                if msg.error().fatal():
                    raise SystemExit(f"fatal consumer error: {msg.error()}")
                print(f"consumer error: {msg.error()}", file=sys.stderr)
                continue
            last_activity = time.monotonic()
            print(json.dumps(describe(msg, args.topic_prefix, schemas), default=as_json), flush=True)
            consumer.store_offsets(message=msg)
            printed += 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()  # commits the stored offsets and leaves the group


if __name__ == "__main__":
    main()
