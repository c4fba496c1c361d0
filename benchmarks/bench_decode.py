"""Section 2: decoding, microseconds per object, with `decode_micro`'s candidates.

Our Structs against `json.loads`, orjson and pydantic v2 on the recorded user and video
bodies; repeats interleaved across candidates, the median of the repeats kept.
"""

from __future__ import annotations

from benchmarks import decode_micro
from benchmarks.bench_common import Section, log, median

OURS = "tiktok_async (msgspec Structs, lax)"
JSON = "json.loads (dicts, no validation)"
PYDANTIC = "pydantic v2 models (model_validate_json)"


def run(number: int, repeat: int) -> Section:
    section = Section("decode", "Decoding, µs per object")
    candidates = decode_micro.candidates()
    bodies = {"user": decode_micro.USER_BODY, "video": decode_micro.VIDEO_BODY}
    times: dict[tuple[str, str], list[float]] = {}
    log(f"decode: {repeat} interleaved repeats of {number:,} calls per candidate")
    for n in range(repeat):
        names = list(candidates) if n % 2 == 0 else list(reversed(candidates))
        for name in names:
            for index, (kind, body) in enumerate(bodies.items()):
                us = decode_micro.per_object_us(candidates[name][index], body, number, 1)
                times.setdefault((name, kind), []).append(us)
    for name in candidates:
        section.rows.append({
            "decoder": name,
            "user_us": median(times[(name, "user")]),
            "video_us": median(times[(name, "video")]),
        })
    us = {(row["decoder"], kind): row[f"{kind}_us"] for row in section.rows
          for kind in ("user", "video")}
    for kind in ("user", "video"):
        section.figure(f"tiktok_async {kind}", us[(OURS, kind)], "µs")
        for other, label in ((PYDANTIC, "pydantic v2"), (JSON, "json.loads")):
            if (other, kind) not in us:
                continue
            ratio = us[(other, kind)] / us[(OURS, kind)]
            section.figure(f"{kind}: faster than {label}", ratio, "x", ">= 3x", ratio >= 3)
    return section
