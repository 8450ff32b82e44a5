"""Places orders one at a time on an idle system and times each step from the saga's history.

usage: one-at-a-time.py [ORDERS]  (the API at http://127.0.0.1:18080, as system.sh starts it)

The history's times are the orchestrator's own (millisecond resolution): the saga started, then
each participant's reply applied. So each gap is one step's round trip: the orchestrator's commit
and publish, the broker, the participant's commit and reply, the broker, the orchestrator again.
"""
import datetime
import json
import statistics
import sys
import time
import urllib.request
import uuid

API = "http://127.0.0.1:18080"
WARM_UP = 5
TERMINAL = ("completed", "compensated", "failed", "stuck")


def call(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(API + path, method=method, data=data,
                                     headers={"content-type": "application/json"})
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read() or b"null")


def seconds(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main():
    orders = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    totals, gaps = [], []
    for i in range(orders):
        order_id = "one-" + uuid.uuid4().hex[:12]
        placed = time.time()
        call("POST", "/orders", {"event": "OrderPlaced", "orderId": order_id, "userId": "u1",
                                 "items": [{"productId": "abc", "quantity": 1}]})
        while (order := call("GET", "/orders/" + order_id))["state"] not in TERMINAL:
            time.sleep(0.002)
        times = [seconds(item["at"]) for item in order["history"]]
        if i >= WARM_UP:
            totals.append((times[-1] - placed) * 1e3)
            gaps.append([(b - a) * 1e3 for a, b in zip(times, times[1:])])
        time.sleep(0.05)
    steps = [item["input"].get("step", item["input"]["type"]) for item in order["history"]]
    print(f"{len(totals)} orders after {WARM_UP} of warm-up, last one {order['state']}: {steps}")
    print(f"POST to the last reply applied: p50 {statistics.median(totals):.1f} ms")
    for k, step in enumerate(steps[1:]):
        print(f"  {step}'s round trip: p50 {statistics.median(g[k] for g in gaps):.1f} ms")


if __name__ == "__main__":
    main()
