#!/usr/bin/env python3
"""Publishes one file to a JetStream subject with the official NATS Python client (nats-py) and waits for the
stream's publish ack, optionally with a Nats-Msg-Id header; prints the ack as `stream=<s> seq=<n> duplicate=<b>`.
Used by tests/api/jetstream.rs (scripts/nats-py.sh installs the client)."""

import argparse
import asyncio

import nats


async def publish(url: str, subject: str, path: str, msg_id: str | None) -> None:
    client = await nats.connect(url)
    try:
        with open(path, "rb") as file:
            data = file.read()
        headers = {"Nats-Msg-Id": msg_id} if msg_id else None
        ack = await client.jetstream().publish(subject, data, headers=headers)
        print(f"stream={ack.stream} seq={ack.seq} duplicate={bool(ack.duplicate)}")
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--file", required=True)
    parser.add_argument("--msg-id")
    args = parser.parse_args()
    asyncio.run(publish(args.url, args.subject, args.file, args.msg_id))


if __name__ == "__main__":
    main()
