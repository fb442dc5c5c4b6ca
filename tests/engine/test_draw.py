"""The verifiable draw: reproducible from published data alone, tamper-evident, unbiased per grade."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jiliang.engine.draw import DrawError, bundle, canonical_frame, commit, draw, verify

SHARES = {"A": 0.05, "B": 0.2, "C": 0.6, "D": 1.0}


def city_frame(n: int = 400) -> list[dict[str, object]]:
    grades = "AAAABBBCCD"
    return [{"id": f"91440300MA{i:08d}", "grade": grades[i % 10], "weight": 1.0} for i in range(n)]


def published(frame: list[dict[str, object]], secret: bytes = b"s" * 32, beacon: str = "beacon-1") -> dict:
    c = commit(frame=frame, shares=SHARES, secret=secret)
    r = draw(frame=frame, shares=SHARES, secret=secret, beacon=beacon)
    return bundle(commitment=c, result=r, frame=frame, secret=secret, plan="P-2026-01")


def test_counts_per_grade_follow_the_shares() -> None:
    frame = city_frame()
    r = draw(frame=frame, shares=SHARES, secret=b"k" * 32, beacon="x")
    sizes = {g: sum(1 for e in frame if e["grade"] == g) for g in "ABCD"}
    for g, share in SHARES.items():
        assert len(r.by_grade[g]) == math.ceil(share * sizes[g])


def test_frame_order_does_not_matter_but_content_does() -> None:
    frame = city_frame(50)
    assert canonical_frame(frame) == canonical_frame(list(reversed(frame)))
    c1 = commit(frame=frame, shares=SHARES, secret=b"q" * 32)
    changed = [dict(e) for e in frame]
    changed[7]["grade"] = "D" if changed[7]["grade"] != "D" else "C"
    assert commit(frame=changed, shares=SHARES, secret=b"q" * 32).frame_hash != c1.frame_hash
    changed = [dict(e) for e in frame]
    changed[3]["id"] = "91440300MA99999999"
    assert commit(frame=changed, shares=SHARES, secret=b"q" * 32).frame_hash != c1.frame_hash


def test_beacon_changes_the_draw() -> None:
    frame = city_frame()
    a = draw(frame=frame, shares=SHARES, secret=b"k" * 32, beacon="one").selected
    b = draw(frame=frame, shares=SHARES, secret=b"k" * 32, beacon="two").selected
    assert a != b


@pytest.mark.parametrize("tamper", ["frame", "secret", "selected", "beacon", "shares"])
def test_tampering_is_detected(tamper: str) -> None:
    pub = published(city_frame(60))
    assert verify(pub).ok
    if tamper == "frame":
        pub["frame"][0]["grade"] = "A" if pub["frame"][0]["grade"] != "A" else "B"
    elif tamper == "secret":
        pub["secret_hex"] = "00" + pub["secret_hex"][2:]
    elif tamper == "selected":
        pub["selected"] = pub["selected"][1:]
    elif tamper == "beacon":
        pub["beacon"] = "another beacon"
    else:
        pub["commitment"]["shares"]["A"] = 0.5
    assert not verify(pub).ok


def test_verify_in_a_separate_process_without_a_database(tmp_path: Path) -> None:
    """The acceptance check: a separate process, no Django settings, no database."""
    f = tmp_path / "plan.json"
    f.write_text(json.dumps(published(city_frame())), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"   # any database access would fail
    r = subprocess.run([sys.executable, "-m", "jiliang.cli", "draw", "verify", str(f)], capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout
    doc = json.loads(f.read_text(encoding="utf-8"))
    doc["selected"][0] = doc["frame"][-1]["id"] if doc["frame"][-1]["id"] not in doc["selected"] else "X"
    f.write_text(json.dumps(doc), encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "jiliang.cli", "draw", "verify", str(f)], capture_output=True,
                       text=True, env=env, timeout=60, check=False)
    assert r.returncode == 1 and "different targets" in r.stdout + r.stderr


def test_drawn_share_matches_configuration_over_1000_draws() -> None:
    """Each entity's inclusion frequency over 1,000 seeded draws matches k/n within sampling error."""
    frame = city_frame(200)
    shares = {"A": 0.05, "B": 0.2, "C": 0.3, "D": 0.8}
    counts: dict[str, int] = {str(e["id"]): 0 for e in frame}
    for i in range(1000):
        for eid in draw(frame=frame, shares=shares, secret=i.to_bytes(32, "big"), beacon=f"b{i}").selected:
            counts[eid] += 1
    for g, share in shares.items():
        members = [str(e["id"]) for e in frame if e["grade"] == g]
        k = math.ceil(share * len(members))
        p = k / len(members)
        freq = sum(counts[m] for m in members) / (1000 * len(members))
        assert freq == pytest.approx(p, abs=1e-12)  # exactly k per draw
        # every member is drawn about p of the time: a binomial test on the most and least drawn one
        sd = math.sqrt(1000 * p * (1 - p))
        worst = max(abs(counts[m] - 1000 * p) for m in members)
        assert worst < 4.5 * sd + 1, (g, worst, sd)


def test_weights_raise_the_chance() -> None:
    frame = [{"id": f"E{i:03d}", "grade": "C", "weight": 4.0 if i < 10 else 1.0} for i in range(100)]
    heavy = 0
    for i in range(300):
        heavy += sum(1 for e in draw(frame=frame, shares={"C": 0.1}, secret=i.to_bytes(32, "big"),
                                     beacon="w").selected if int(e[1:]) < 10)
    assert heavy / 300 > 2.0  # 10 heavy of 100 would give 1.0 of 10 draws unweighted


@pytest.mark.parametrize("frame", [
    [{"id": "", "grade": "A"}], [{"id": "x", "grade": "E"}], [{"id": "x", "grade": "A", "weight": 0}],
    [{"id": "x", "grade": "A"}, {"id": "x", "grade": "B"}],
])
def test_bad_frames(frame: list[dict[str, object]]) -> None:
    with pytest.raises(DrawError):
        commit(frame=frame, shares=SHARES, secret=b"z" * 32)


def _reference_canonical(frame: list[dict[str, object]]) -> bytes:
    """The protocol's words (docs/draw.md), written the slow, obvious way."""
    import json as _json

    rows = sorted(({"grade": e["grade"], "id": e["id"], "weight": float(e.get("weight", 1.0))} for e in frame),
                  key=lambda r: r["id"])
    return b"".join(_json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    for r in rows)


def _reference_draw(frame: list[dict[str, object]], shares: dict[str, float], secret: bytes, beacon: str) -> list[str]:
    import hashlib as _hashlib
    import hmac as _hmac
    import json as _json
    import math as _math

    canon = _reference_canonical(frame)
    seed = _hashlib.sha256(secret + beacon.encode() + _hashlib.sha256(canon).digest()).digest()
    groups: dict[str, list[tuple[float, str]]] = {}
    for line in canon.splitlines():
        e = _json.loads(line)
        u = (int.from_bytes(_hmac.new(seed, e["id"].encode(), _hashlib.sha256).digest(), "big") + 0.5) / 2**256
        groups.setdefault(e["grade"], []).append((_math.log(u) / e["weight"], e["id"]))
    out = []
    for g, members in groups.items():
        k = _math.ceil(shares.get(g, 0.0) * len(members) - 1e-12)
        members.sort(key=lambda t: (-t[0], t[1]))
        out += [eid for _, eid in members[:k]]
    return sorted(out)


def test_fast_canonical_bytes_and_draw_equal_the_protocol_text() -> None:
    """The optimised frame encoding and HMAC keys must give byte-identical frames and the same targets
    as the protocol written out plainly -- including ids that need JSON escaping."""
    import random as _random

    rng = _random.Random(7)
    odd = ["福田区张三水产店", 'quote"inside', "back\\slash", "tab\tid", "ünïcode", "line\nbreak", "a b", "x/y"]
    for trial in range(20):
        frame = [{"id": rng.choice([f"91440300{rng.randrange(10**9):09d}X", rng.choice(odd) + str(i)]),
                  "grade": rng.choice("ABCD"), "weight": rng.choice([1.0, 0.5, 2.0, 1e-3, 3.3333333333333335, 7])}
                 for i in range(300)]
        frame = list({e["id"]: e for e in frame}.values())
        assert canonical_frame(frame) == _reference_canonical(frame)
        shares = {"A": 0.05, "B": 0.2, "C": 0.6, "D": 1.0}
        secret, beacon = bytes([trial]) * 32, f"beacon {trial}"
        assert draw(frame=frame, shares=shares, secret=secret, beacon=beacon).selected == _reference_draw(
            frame, shares, secret, beacon)
