"""Python time per relayed chunk on the push path, in process and hot: bytes in at the lean
client's `data_received` (HTTP/1.1 chunked framing, the SSE event, the OpenAI chunk read) to
the gateway's own client sink, which frames the gateway's chunk and writes it to a transport
that only counts bytes. No sockets, no event-loop wake-ups: what the gateway's own Python costs
per chunk, the part bench/gateway_stream.py cannot separate from the kernel and the loop.

    python bench/stream_relay.py [--chunks 200000] [--repeat 5]

Works on earlier commits too (`PYTHONPATH=<their src>`), to compare before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

from quality_gates.gateway._streaming import _ClientSink
from quality_gates.gateway._wire import content_event_frame
from quality_gates.providers._h1 import StreamReply, _Connection
from quality_gates.providers._openai import ChunkReader
from quality_gates.providers._relay import SseItems

try:  # what the provider hands the relay: an object since 1135272, a closure before
    from quality_gates.providers._relay import Delivery as _delivery
except ImportError:
    from quality_gates.providers._base import _delivery  # type: ignore[attr-defined,no-redef]

EVENT = (
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"tok "},"finish_reason":null}]}\n\n'
)
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


class Counting:
    """A transport that keeps nothing."""

    def __init__(self) -> None:
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.bytes += len(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Live:
    """What the gateway's client sink reads of its live stream for a text delta."""

    def __init__(self) -> None:
        self.parts: list[str] = []


def client_sink(out: Counting) -> tuple[Any, Live]:
    """The gateway's own client sink (`_ClientSink`), writing each framed chunk as the lean
    server's `write_chunk` does, to a transport that only counts."""
    live = Live()

    def write_chunk(body: bytes) -> None:
        out.write(b"%x\r\n%s\r\n" % (len(body), body))

    head, tail = content_event_frame("chatcmpl-abc", 1, "model")
    return _ClientSink(live, write_chunk, head, tail), live  # type: ignore[arg-type]


async def per_chunk(chunks: int) -> float:
    """Microseconds per chunk pushed through one connection."""
    conn = _Connection(("http", "upstream", 80))
    conn.connection_made(Counting())  # type: ignore[arg-type]
    conn._reset(asyncio.get_running_loop().create_future(), 0, streaming=True)
    conn.data_received(HEAD)
    items = SseItems(StreamReply(None, conn), ChunkReader("upstream"))  # type: ignore[arg-type]
    sink, live = client_sink(Counting())
    relay = asyncio.ensure_future(items.push(_delivery(sink, [], False)))
    await asyncio.sleep(0)
    piece = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
    feed = conn.data_received
    for _ in range(2000):  # warm: the reader learns the chunk's shape
        feed(piece)
    started = time.perf_counter()
    for _ in range(chunks):
        feed(piece)
    elapsed = time.perf_counter() - started
    relay.cancel()
    if len(live.parts) != chunks + 2000:
        raise SystemExit(f"{len(live.parts)} texts reached the sink, not {chunks + 2000}")
    return elapsed / chunks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = [asyncio.run(per_chunk(args.chunks)) for _ in range(args.repeat)]
    print(f"$ python bench/stream_relay.py --chunks {args.chunks} --repeat {args.repeat}")
    print(
        f"Python per pushed chunk: median {statistics.median(runs):.2f} us, "
        f"best {min(runs):.2f} us ({args.repeat} runs of {args.chunks:,} chunks)"
    )


if __name__ == "__main__":
    main()
