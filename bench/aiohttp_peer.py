#!/usr/bin/env python3
"""Keep-alive GETs with aiohttp, the peer of `corun-bench http`: C coroutines
loop over one ClientSession (TCPConnector(limit=C)) for the duration, after a
short warm-up, and one JSON line with the figures is printed.

usage: bench/aiohttp_peer.py URL [--connections 64] [--duration 5]
                                 [--body-size 1024] [--cacert FILE]
                                 [--proxy http://HOST:PORT]

A response counts when its status is 200 and its body has the expected size
(decoded: aiohttp asks for gzip and deflate and decodes by default);
anything else (another status or size, an exception) counts as an error.
`content_encoding` is the Content-Encoding of the first response
("identity" when none). --proxy sends every request through that proxy.
"""

import argparse
import asyncio
import json
import resource
import ssl
import sys
import time

import aiohttp

WARM_UP_S = 0.5


def cpu_seconds():
    """CPU time (user + system) of this thread, the event loop's."""
    ru = resource.getrusage(resource.RUSAGE_THREAD)
    return ru.ru_utime + ru.ru_stime


async def run(args):
    tls = args.url.startswith("https:")
    ssl_context = ssl.create_default_context(cafile=args.cacert) if tls and args.cacert else None
    connector = aiohttp.TCPConnector(limit=args.connections, ssl=ssl_context if ssl_context else True)
    counts = {"requests": 0, "errors": 0, "first_error": None, "content_encoding": None}

    async def fetch_until(deadline, tally):
        while time.perf_counter() < deadline:
            try:
                async with session.get(args.url, proxy=args.proxy) as r:
                    body = await r.read()
                if counts["content_encoding"] is None and r.status == 200:
                    counts["content_encoding"] = r.headers.get("Content-Encoding", "identity")
                good = r.status == 200 and len(body) == args.body_size
                what = f"status {r.status}, {len(body)} bytes"
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
                good, what = False, f"{type(e).__name__}: {e}"
            if not tally:
                continue
            if good:
                counts["requests"] += 1
            else:
                counts["errors"] += 1
                counts["first_error"] = counts["first_error"] or what

    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(fetch_until(time.perf_counter() + WARM_UP_S, False) for _ in range(args.connections)))
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        deadline = t0 + args.duration
        await asyncio.gather(*(fetch_until(deadline, True) for _ in range(args.connections)))
        seconds = time.perf_counter() - t0
        cpu = cpu_seconds() - cpu0

    out = {
        "case": "aiohttp",
        "url": args.url,
        "connections": args.connections,
        "seconds": round(seconds, 4),
        "requests": counts["requests"],
        "req_per_s": round(counts["requests"] / seconds, 1),
        "cpu_us_per_req": round(cpu * 1e6 / counts["requests"], 2) if counts["requests"] else None,
        "errors": counts["errors"],
        "tls": tls,
        "content_encoding": counts["content_encoding"],
        "aiohttp": aiohttp.__version__,
        "python": sys.version.split()[0],
    }
    if args.proxy:
        out["proxy"] = args.proxy
    if counts["first_error"]:
        out["first_error"] = counts["first_error"]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--body-size", type=int, default=1024)
    parser.add_argument("--cacert", help="PEM file of a CA (or self-signed certificate) to trust")
    parser.add_argument("--proxy", help="send every request through this proxy, http://HOST:PORT")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
