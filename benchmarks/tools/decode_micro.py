"""Decoding (and encoding) one user profile and one video, microseconds per object.

The decode section's candidates (`benchmarks/bench_decode.py`: our Structs, msgspec
strict, `json.loads`, orjson, pydantic v2) on the recorded bodies in `tests/samples`,
the best of several repeats, then the cost of our two ways to write a result out.

    python -m benchmarks.tools.decode_micro [--number 20000] [--repeat 5]
"""

from __future__ import annotations

from benchmarks._common import tool_parser
from benchmarks.bench_decode import USER_BODY, VIDEO_BODY, candidates, per_object_us
from tiktok_async._models import decode_user_profile, decode_video, encode_json, to_builtins


def main() -> None:
    parser = tool_parser(__doc__, "benchmarks.tools.decode_micro")
    parser.add_argument("--number", type=int, default=20_000, help="calls per repeat")
    parser.add_argument("--repeat", type=int, default=5, help="repeats; the best is kept")
    args = parser.parse_args()
    print(f"user body {len(USER_BODY)} B, video body {len(VIDEO_BODY)} B; us per object")
    print(f"{'decoder':52} {'user':>8} {'video':>8}")
    for name, (decode_user, decode_vid) in candidates().items():
        user_us = per_object_us(decode_user, USER_BODY, args.number, args.repeat)
        video_us = per_object_us(decode_vid, VIDEO_BODY, args.number, args.repeat)
        print(f"{name:52} {user_us:8.2f} {video_us:8.2f}")
    profile, video = decode_user_profile(USER_BODY), decode_video(VIDEO_BODY)
    print(f"\n{'output (snake_case keys)':52} {'user':>8} {'video':>8}")
    for name, encode in (("encode_json", encode_json), ("to_builtins", to_builtins)):
        user_us = per_object_us(encode, profile, args.number, args.repeat)
        video_us = per_object_us(encode, video, args.number, args.repeat)
        print(f"{name:52} {user_us:8.2f} {video_us:8.2f}")


if __name__ == "__main__":
    main()
