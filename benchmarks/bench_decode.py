"""Section: decoding, microseconds per object.

Our Structs (msgspec, lax mode) against msgspec in strict mode, `json.loads`, orjson and
pydantic v2 (the mirror of the schema in `_baselines`) on the recorded user and video bodies in
`tests/samples`; repeats interleaved across candidates, the median of the repeats kept.
`python -m benchmarks.tools.decode_micro` prints the same candidates (best of the
repeats) and the cost of encoding the output.
"""

from __future__ import annotations

import json
import timeit
from collections.abc import Callable
from functools import partial
from typing import Any

import msgspec
import orjson

from benchmarks._baselines import PUserProfile, PVideo
from benchmarks._common import ROOT, Section, log, median
from tiktok_async._models import UserProfile, Video, decode_user_profile, decode_video

SAMPLES = ROOT / "tests" / "samples"
USER_BODY = (SAMPLES / "user_200" / "body").read_bytes()
VIDEO_BODY = (SAMPLES / "video_200" / "body").read_bytes()
# Strict mode cannot take createTime as epoch text: it gets the same body with RFC 3339.
VIDEO_BODY_RFC3339 = json.dumps(
    {**json.loads(VIDEO_BODY), "createTime": "2023-11-14T08:39:03Z"}
).encode()

OURS = "tiktok_async (msgspec Structs, lax)"
JSON = "json.loads (dicts, no validation)"
PYDANTIC = "pydantic v2 models (model_validate_json)"

#: name -> (decode a user body, decode a video body)
Pair = tuple[Callable[[bytes], Any], Callable[[bytes], Any]]


def candidates() -> dict[str, Pair]:
    """Every decoder compared, by name."""
    user_strict, video_strict = msgspec.json.Decoder(UserProfile), msgspec.json.Decoder(Video)
    return {
        OURS: (decode_user_profile, decode_video),
        "msgspec Structs, strict (createTime as RFC 3339)": (
            user_strict.decode, lambda _body: video_strict.decode(VIDEO_BODY_RFC3339)),
        JSON: (json.loads, json.loads),
        "orjson.loads (dicts, no validation)": (orjson.loads, orjson.loads),
        PYDANTIC: (PUserProfile.model_validate_json, PVideo.model_validate_json),
    }


def per_object_us(function: Callable[[Any], Any], value: Any, number: int, repeat: int) -> float:
    """Microseconds per call of `function(value)`, the best of `repeat` runs of `number`."""
    best = min(timeit.repeat(partial(function, value), number=number, repeat=repeat))
    return best / number * 1e6


def _timed(number: int, repeat: int) -> dict[tuple[str, str], list[float]]:
    """(candidate, "user" | "video") -> us per object of each repeat, interleaved."""
    found = candidates()
    bodies = {"user": USER_BODY, "video": VIDEO_BODY}
    times: dict[tuple[str, str], list[float]] = {}
    for n in range(repeat):
        for name in list(found) if n % 2 == 0 else list(reversed(found)):
            for index, (kind, body) in enumerate(bodies.items()):
                us = per_object_us(found[name][index], body, number, 1)
                times.setdefault((name, kind), []).append(us)
    return times


def run(number: int, repeat: int) -> Section:
    section = Section("decode", "Decoding, µs per object")
    log(f"decode: {repeat} interleaved repeats of {number:,} calls per candidate")
    times = _timed(number, repeat)
    for name in candidates():
        section.rows.append({
            "decoder": name,
            "user_us": median(times[(name, "user")]),
            "video_us": median(times[(name, "video")]),
        })
    us = {key: median(values) for key, values in times.items()}
    for kind in ("user", "video"):
        section.figure(f"tiktok_async {kind}", us[(OURS, kind)], "µs")
        for other, label in ((PYDANTIC, "pydantic v2"), (JSON, "json.loads")):
            ratio = us[(other, kind)] / us[(OURS, kind)]
            section.figure(f"{kind}: faster than {label}", ratio, "x", ">= 3x", ratio >= 3)
    return section
