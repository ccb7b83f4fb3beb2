"""Unsubscribe tokens in-process: signs and verifies per second on one core.

    .venv/bin/python bench/unsubscribe_tokens.py [--seconds 3]

One process, one thread: each operation runs over 10,000 different people for the given
time, best of three runs. Exit 0 whatever the numbers; PASS/FAIL against TARGET_PER_SECOND.
"""

import argparse
import sys
import time
import uuid

from identity.security.unsubscribe_tokens import UnsubscribeTokens

TARGET_PER_SECOND = 100_000
PEOPLE = 10_000
ROUNDS = 3


def _rate(operation, items, seconds: float) -> float:
    done, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for item in items:
            operation(*item)
        done += len(items)
    return done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    tokens = UnsubscribeTokens("bench secret of more than thirty-two characters", 2)
    people = [(uuid.uuid4(), 1 + n % 5) for n in range(PEOPLE)]
    signed = [(tokens.sign(person, list_id),) for person, list_id in people]
    assert all(
        tokens.verify(token) == person for (token,), person in zip(signed, people, strict=True)
    )
    results = {
        "sign": max(_rate(tokens.sign, people, args.seconds) for _ in range(ROUNDS)),
        "verify": max(_rate(tokens.verify, signed, args.seconds) for _ in range(ROUNDS)),
    }
    print("== unsubscribe tokens, one core, in-process ==")
    for name, rate in results.items():
        verdict = "PASS" if rate >= TARGET_PER_SECOND else "FAIL"
        print(f"  {name:7} {rate:11,.0f} /s   (target >= {TARGET_PER_SECOND:,}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
