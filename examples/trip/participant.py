#!/usr/bin/env python3
"""A sagaflow participant in Python (pika): the trip saga's flights, hotels or confirmations.

It keeps the rules of docs/participants.md, in this order for every command:

1. Parse it. What cannot be read is dead-lettered with its original bytes and acked.
2. In one SQLite transaction: look the command up in the barrier (one row per saga, step and
   phase); apply it once (or refuse it, or no-op a compensation without its action); store
   the outcome. The commit is durable (WAL, synchronous=FULL) before anything is answered.
3. Publish the reply with publisher confirms, then ack the command.

A crash anywhere leaves the command unacked (it comes again and the barrier answers it the
same way) or the outcome stored (the redelivery publishes it again). Replies echo the
command's envelope, so a retry (a later attempt) is answered for that attempt.

    participant.py serve --participant flights --namespace sagaflow --data flights.db
    participant.py books --data flights.db        # what the books hold, as JSON
"""

import argparse
import json
import re
import signal
import sqlite3
import sys
import time
import uuid

REASON_MAX = 200
ID = re.compile(r"^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$")

SCHEMA = """
CREATE TABLE IF NOT EXISTS barrier (
    saga_id TEXT NOT NULL, step TEXT NOT NULL, phase TEXT NOT NULL,
    outcome TEXT NOT NULL, reason TEXT, result TEXT,
    PRIMARY KEY (saga_id, step, phase));
CREATE TABLE IF NOT EXISTS bookings (
    ref TEXT PRIMARY KEY, saga_id TEXT NOT NULL, saga_key TEXT NOT NULL, step TEXT NOT NULL,
    kind TEXT NOT NULL, detail TEXT NOT NULL, active INTEGER NOT NULL);
"""


class Unreadable(Exception):
    """A message that is not a command at all: it goes to the dead-letter exchange."""


def open_books(path):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a commit is on disk (fsync of the WAL) before it returns.
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(SCHEMA)
    return db


def parse(body):
    """The command, checked at the edge: every field the barrier and the books rely on."""
    try:
        command = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise Unreadable(f"not JSON: {e}") from e
    if not isinstance(command, dict):
        raise Unreadable("not a JSON object")
    for field in ("sagaId", "saga", "id", "step"):
        if not isinstance(command.get(field), str) or not ID.match(command[field]):
            raise Unreadable(f"{field} is missing or not an id")
    if command.get("phase") not in ("action", "compensation"):
        raise Unreadable("phase is neither action nor compensation")
    if not isinstance(command.get("attempt"), int) or command["attempt"] < 1:
        raise Unreadable("attempt must be a number from 1")
    if not isinstance(command.get("command"), str) or not isinstance(command.get("payload"), dict):
        raise Unreadable("command or payload is missing")
    expected_key = f"{command['sagaId']}/{command['step']}/{command['phase']}"
    if command.get("idempotencyKey") != expected_key:
        raise Unreadable("the idempotency key does not match the saga, step and phase")
    return command


def book(db, command, kind, detail):
    ref = f"{kind[0].upper()}-{uuid.uuid4().hex[:10]}"
    db.execute(
        "INSERT INTO bookings VALUES (?, ?, ?, ?, ?, ?, 1)",
        (ref, command["sagaId"], f"{command['saga']}/{command['id']}", command["step"], kind,
         json.dumps(detail)),
    )
    return ref


def small_int(payload, field, low, high):
    value = payload.get(field)
    return value if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high else None


def act(db, participant, command):
    """The business: (outcome, reason, result). Runs inside the barrier's transaction."""
    name, payload = command["command"], command["payload"]
    travellers = small_int(payload, "travellers", 1, 9)
    if participant == "flights" and name == "bookFlight":
        if travellers is None or not isinstance(payload.get("to"), str):
            return "failed", "invalid_command", None
        ref = book(db, command, "flight", {"from": payload.get("from"), "to": payload["to"],
                                           "travellers": travellers})
        return "succeeded", None, {"flightRef": ref}
    if participant == "hotels" and name == "bookHotel":
        nights = small_int(payload, "nights", 1, 60)
        if travellers is None or nights is None or not isinstance(payload.get("to"), str):
            return "failed", "invalid_command", None
        if payload["to"] == "Atlantis":
            return "failed", "no_rooms", None
        ref = book(db, command, "hotel", {"city": payload["to"], "nights": nights})
        return "succeeded", None, {"hotelRef": ref}
    if participant == "confirmations" and name == "sendConfirmation":
        book(db, command, "confirmation", {"email": str(payload.get("email", ""))[:254],
                                           "flight": payload.get("flightRef"),
                                           "hotel": payload.get("hotelRef")})
        return "succeeded", None, None
    return "failed", "invalid_command", None


def undo(db, command):
    """A compensation: whatever its action booked is cancelled; without one, nothing is."""
    db.execute("UPDATE bookings SET active = 0 WHERE saga_id = ? AND step = ?",
               (command["sagaId"], command["step"]))


def apply(db, participant, command):
    """The barrier: each (saga, step, phase) is applied once; the outcome is kept."""
    saga_id, step, phase = command["sagaId"], command["step"], command["phase"]
    db.execute("BEGIN IMMEDIATE")
    try:
        seen = db.execute(
            "SELECT outcome, reason, result FROM barrier WHERE saga_id=? AND step=? AND phase=?",
            (saga_id, step, phase)).fetchone()
        if seen is None:
            if phase == "action":
                compensated = db.execute(
                    "SELECT 1 FROM barrier WHERE saga_id=? AND step=? AND phase='compensation'",
                    (saga_id, step)).fetchone()
                if compensated:
                    # The action came after its compensation: refused, so nothing is left booked.
                    seen = ("failed", "already_compensated", None)
                else:
                    outcome, reason, result = act(db, participant, command)
                    seen = (outcome, reason, json.dumps(result) if result is not None else None)
            else:
                # Undoes the action if it ran; a compensation without its action is a no-op.
                undo(db, command)
                seen = ("succeeded", None, None)
            db.execute("INSERT INTO barrier VALUES (?, ?, ?, ?, ?, ?)", (saga_id, step, phase) + seen)
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    outcome, reason, result = seen
    reply = {key: command[key] for key in
             ("sagaId", "saga", "id", "step", "phase", "attempt", "idempotencyKey")}
    reply["outcome"] = outcome
    if reason is not None:
        reply["reason"] = reason[:REASON_MAX]
    if result is not None:
        reply["result"] = json.loads(result)
    return reply


def serve(args):
    import pika  # only the serving side needs the broker's client

    db = open_books(args.data)
    queue = f"{args.namespace}.{args.participant}.commands"
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    while not stopping:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
        except pika.exceptions.AMQPConnectionError:
            time.sleep(1)
            continue
        try:
            channel = connection.channel()
            # One instance per queue: a second copy with another store would miss the barrier.
            channel.queue_declare(f"{queue}.lock", exclusive=True, auto_delete=True)
            channel.confirm_delivery()
            channel.basic_qos(prefetch_count=16)

            def on_command(ch, delivery, properties, body):
                headers = dict(properties.headers or {})
                try:
                    reply = apply(db, args.participant, parse(body))
                except Unreadable as why:
                    dead = {"x-sagaflow-reason": str(why)[:REASON_MAX], "x-sagaflow-queue": queue}
                    ch.basic_publish(
                        f"{args.namespace}.dead-letter", "", body,
                        pika.BasicProperties(delivery_mode=2, headers=dead,
                                             message_id=properties.message_id,
                                             correlation_id=properties.correlation_id,
                                             type=properties.type))
                    ch.basic_ack(delivery.delivery_tag)
                    return
                passed = {}
                trace = headers.get("traceparent")
                if isinstance(trace, (str, bytes)) and len(trace) <= 55:
                    passed["traceparent"] = trace
                ch.basic_publish(
                    f"{args.namespace}.replies", "", json.dumps(reply).encode(),
                    pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                         message_id=str(uuid.uuid4()), type="reply",
                                         correlation_id=f"{reply['saga']}/{reply['id']}",
                                         headers=passed))
                ch.basic_ack(delivery.delivery_tag)

            channel.basic_consume(queue, on_command)
            print(f"{args.participant}: consuming {queue}", flush=True)
            channel.start_consuming()
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 405:  # RESOURCE_LOCKED: another instance holds the lock
                print(f"{args.participant}: another instance consumes {queue}", file=sys.stderr, flush=True)
                return 1
            print(f"{args.participant}: channel closed ({e}); reconnecting", file=sys.stderr, flush=True)
            time.sleep(1)
        except pika.exceptions.AMQPError as e:
            print(f"{args.participant}: broker connection lost ({e!r}); reconnecting", file=sys.stderr, flush=True)
            time.sleep(1)
        except KeyboardInterrupt:
            break
        finally:
            try:
                connection.close()
            except Exception:
                pass
    return 0


def books(args):
    db = open_books(args.data)
    rows = db.execute("SELECT ref, saga_id, saga_key, step, kind, detail, active FROM bookings ORDER BY ref")
    print(json.dumps([
        {"ref": r[0], "sagaId": r[1], "key": r[2], "step": r[3], "kind": r[4],
         "detail": json.loads(r[5]), "active": bool(r[6])} for r in rows]))
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    run = sub.add_parser("serve", help="consume the participant's commands")
    run.add_argument("--participant", required=True, choices=["flights", "hotels", "confirmations"])
    run.add_argument("--namespace", default="sagaflow")
    run.add_argument("--amqp-url", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    run.add_argument("--data", required=True, help="the participant's SQLite file")
    show = sub.add_parser("books", help="print the bookings as JSON")
    show.add_argument("--data", required=True)
    args = parser.parse_args()
    return serve(args) if args.what == "serve" else books(args)


if __name__ == "__main__":
    sys.exit(main())
