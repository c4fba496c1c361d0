"""Write the demo's bundled inputs (tiktok_async/demo_data/); deterministic, same files each run.

handles.txt: about 2,000 lines of handles as people paste them (with `@`, as profile URLs,
in other cases), with duplicates, blank lines, comments, invalid lines and missing users.
videos.txt: about 300 video links in the forms seen in the wild, a few `handle,videoId`
lines, and some links this API cannot answer (no handle, short links).
"""

from __future__ import annotations

import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tiktok_async" / "demo_data"
WORDS = (
    "sunny", "dancer", "chef", "lena", "max", "travel", "cat", "dog", "daily", "vibes",
    "music", "art", "studio", "film", "glow", "fit", "coach", "rio", "tokyo", "paris",
    "nova", "zen", "pixel", "mango", "luna", "echo", "kai", "mika", "juno", "atlas",
)
INVALID_HANDLES = (
    "a", "bad handle!", "x" * 31, "@", "名字", "https://tiktok.com.evil.io/@someone",
    "https://vm.tiktok.com/ZMabcdef/", "tiktok.com/@", "user@example.com", "<script>",
)


def make_handle(rng: random.Random) -> str:
    name = rng.choice(WORDS) + rng.choice(("", ".", "_")) + rng.choice(WORDS)
    if rng.random() < 0.5:
        name += str(rng.randrange(1, 9999))
    if rng.random() < 0.05:
        name = rng.choice(("_", ".")) + name
    return name[:30]


def as_pasted(handle: str, rng: random.Random) -> str:
    form = rng.random()
    if form < 0.5:
        return handle
    if form < 0.75:
        return "@" + handle
    if form < 0.9:
        return f"https://www.tiktok.com/@{handle}?lang=en"
    return "  @" + handle.upper() + "  "


def handle_lines(rng: random.Random) -> list[str]:
    unique = sorted({make_handle(rng) for _ in range(2000)})
    unique += [f"missing_demo_{n}" for n in range(30)]
    lines = [as_pasted(h, rng) for h in unique]
    lines += [as_pasted(rng.choice(unique), rng) for _ in range(200)]
    lines += list(INVALID_HANDLES)
    rng.shuffle(lines)
    for n in range(0, len(lines), 400):
        lines.insert(n, "")
        lines.insert(n, f"# batch {n // 400 + 1}")
    return ["# demo input: one TikTok handle or profile link a line", *lines]


def video_id(rng: random.Random) -> str:
    created = rng.randrange(1_577_836_800, 1_767_225_600)  # 2020 to 2025
    return str((created << 32) | rng.getrandbits(32))


def video_lines(rng: random.Random) -> list[str]:
    lines = []
    for _ in range(280):
        handle, vid = make_handle(rng), video_id(rng)
        kind = rng.choice(("video", "video", "video", "photo"))
        lines.append(f"https://www.tiktok.com/@{handle}/{kind}/{vid}?is_from_webapp=1#top")
    lines += [f"{make_handle(rng)},{video_id(rng)}" for _ in range(15)]
    lines += [
        f"https://m.tiktok.com/v/{video_id(rng)}.html",
        f"https://www.tiktok.com/embed/v2/{video_id(rng)}",
        "https://vm.tiktok.com/ZMhvqR7Yx/",
        "https://www.tiktok.com/t/ZTRkdLz4d/",
        "https://www.tiktok.co/@fake/video/123",
    ]
    lines += lines[:10]  # the same links pasted twice
    rng.shuffle(lines)
    return ["# demo input: one TikTok video link (or handle,videoId) a line", *lines]


def main() -> None:
    rng = random.Random(20261126)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "handles.txt").write_text("\n".join(handle_lines(rng)) + "\n", encoding="utf-8")
    (OUT / "videos.txt").write_text("\n".join(video_lines(rng)) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
