"""Joins the m2m bus as another team's service would, and checks one event.

Connects to the broker, declares its own exclusive queue bound to exchange
`m2m.processing` with routing key `game.submitted`, prints READY (flushed)
once the binding exists, waits for one message, and checks it against the
published contract:

* the body is at most 2,048 bytes (the event refers to the stored game and
  never carries its samples);
* the body is JSON valid against the ProcessingEvent schema (formats
  included), whose `version` const is 2: what a gateway publishes;
* content_type is application/json, the message is persistent, message_id is
  the event's event_id and the `type` header (and property) is
  ProcessingEvent.

On success prints `EVENT_ID <event_id>` and exits 0. A contract violation
exits 1, no message within the timeout exits 2; the reason is on stderr.

Usage: consume_one.py AMQP_URL SCHEMA_PATH [TIMEOUT_S]
"""

import json
import sys
import time

import jsonschema
import pika

EXCHANGE = "m2m.processing"
ROUTING_KEY = "game.submitted"
# The largest a ProcessingEvent may be (docs/api.md, "Events on the bus").
MAX_BODY_BYTES = 2048
# The version a gateway publishes. The schema's `version` const refuses any
# other, so main() checks it was given that version's schema.
VERSION = 2


def fail(code, message):
    print(f"consume_one: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def text(value):
    """A header value as text: pika gives long strings as str or bytes."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def check(properties, body, validator):
    """The event's id and the reasons the message breaks the contract."""
    problems = []
    if len(body) > MAX_BODY_BYTES:
        problems.append(f"the body is {len(body)} bytes, more than {MAX_BODY_BYTES}")
    try:
        event = json.loads(body)
    except ValueError as e:
        return None, problems + [f"the body is not JSON: {e}"]
    for error in sorted(validator.iter_errors(event), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"schema: at {where}: {error.message[:200]}")
    if properties.content_type != "application/json":
        problems.append(f"content_type is {properties.content_type!r}")
    if properties.delivery_mode != 2:
        problems.append(f"delivery_mode is {properties.delivery_mode!r}, not persistent (2)")
    event_id = event.get("event_id") if isinstance(event, dict) else None
    if properties.message_id != event_id:
        problems.append(f"message_id {properties.message_id!r} != event_id {event_id!r}")
    headers = properties.headers or {}
    if text(headers.get("type")) != "ProcessingEvent":
        problems.append(f"the type header is {headers.get('type')!r}")
    if properties.type is not None and properties.type != "ProcessingEvent":
        problems.append(f"the type property is {properties.type!r}")
    return event_id, problems


def main():
    if len(sys.argv) not in (3, 4):
        fail(64, "usage: consume_one.py AMQP_URL SCHEMA_PATH [TIMEOUT_S]")
    url, schema_path = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) == 4 else 30.0

    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    if schema.get("properties", {}).get("version", {}).get("const") != VERSION:
        fail(64, f"{schema_path} is not the schema of version {VERSION}")
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)

    params = pika.URLParameters(url)
    params.socket_timeout = 5
    params.blocked_connection_timeout = 10
    connection = pika.BlockingConnection(params)
    try:
        channel = connection.channel()
        # The exchange belongs to the m2m services: only check it exists.
        channel.exchange_declare(EXCHANGE, passive=True)
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue, EXCHANGE, routing_key=ROUTING_KEY)
        print("READY", flush=True)

        deadline = time.monotonic() + timeout
        for method, properties, body in channel.consume(queue, inactivity_timeout=0.5):
            if method is None:
                if time.monotonic() > deadline:
                    fail(2, f"no message within {timeout} s")
                continue
            channel.basic_ack(method.delivery_tag)
            event_id, problems = check(properties, body, validator)
            if problems:
                fail(1, "the event breaks the contract:\n  " + "\n  ".join(problems))
            print(f"EVENT_ID {event_id}", flush=True)
            return
    finally:
        try:
            connection.close()
        except Exception:  # already closed: nothing to clean up
            pass


if __name__ == "__main__":
    main()
